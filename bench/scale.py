"""Scale: a large load through the group-mode pipeline on PostgreSQL, at 1, 2 and 3 processes.

    python -m bench.scale [--events 2000000] [--customers 500000] [--processes 1,2,3]
                          [--partitions 6]

The load (about four events per customer: a promise with a personal description, its outcome,
two touchpoints, sometimes a complaint) is published once to a topic of ``--partitions`` partitions.
Then, for each process count, a fresh PostgreSQL schema is filled by that many ``cxl consume
--group`` processes (one worker each, ``--until-idle``, the test broker's group timing) and the
figures are: throughput (all events sealed, from the first process's start to the last one's
exit), the peak resident memory of a process, the restart time of one process on the full ledger
(start to its first seal) and the projection catch-up over the whole ledger (``cxl gap`` on a
new projections file). Every figure is printed and returned; nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import psycopg

from bench.figures import Figure, rate
from bench.memory import consume_environment, kept_event, peak_rss, promise_event, publish
from consumers.broker import EmbeddedBroker
from consumers.kafka_clients import make_producer
from consumers.topics import ensure_topics

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
GROUP_TIMING = {
    "CXL_GROUP_SESSION_TIMEOUT_S": "6",
    "CXL_GROUP_HEARTBEAT_S": "0.5",
    "CXL_GROUP_MAX_POLL_INTERVAL_S": "60",
}


def _event(kind: str, customer_id: str, data: dict[str, object]) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": kind,
            "customer_id": customer_id,
            "occurred_at": "2026-03-02T09:00:00Z",
            "source": "bench",
            "data": data,
        }
    )


def generate(events: int, customers: int, seed: int = 5) -> list[tuple[str, bytes]]:
    """(key, value) records, each customer's in order, customers interleaved."""
    rng = random.Random(seed)
    per_customer: list[list[bytes]] = []
    for index in range(customers):
        customer = f"cust-{index:08d}"
        promise = f"p-{index}"
        own = [promise_event(customer, promise)]
        own.append(
            kept_event(customer, promise)
            if rng.random() < 0.7
            else _event("promise.broken", customer, {"promise_id": promise, "reason": "late"})
        )
        own.append(
            _event(
                "touchpoint.recorded",
                customer,
                {
                    "channel": "phone",
                    "direction": "inbound",
                    "automated": False,
                    "purpose": "service",
                },
            )
        )
        own.append(
            _event(
                "touchpoint.recorded",
                customer,
                {
                    "channel": "email",
                    "direction": "outbound",
                    "automated": True,
                    "purpose": "information",
                },
            )
        )
        if rng.random() < 0.3:
            own.append(
                _event(
                    "complaint.filed",
                    customer,
                    {
                        "complaint_id": f"k-{index}",
                        "channel": "chat",
                        "category": "delay",
                        "severity": 3,
                        "promise_ids": [promise],
                    },
                )
            )
        per_customer.append(own)
    records: list[tuple[str, bytes]] = []
    round_ = 0
    while len(records) < events:
        added = False
        for index, own in enumerate(per_customer):
            if round_ < len(own):
                records.append((f"cust-{index:08d}", own[round_]))
                added = True
                if len(records) == events:
                    break
        if not added:
            break
        round_ += 1
    return records


def _env(home: Path, bootstrap: str, topic: str, store: str) -> dict[str, str]:
    """``bench.memory``'s environment, on PostgreSQL and in a consumer group of its own."""
    return {
        **consume_environment(home, bootstrap, topic, None),
        "CXL_STORE": store,
        "CXL_CONSUMER_GROUP": f"bench-{uuid.uuid4().hex[:6]}",
        **GROUP_TIMING,
    }


def _sealed(store: str) -> int:
    url, schema = store.split("?schema=")
    with psycopg.connect(url) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".cxl_event_ids').fetchone()
    return int(row[0]) if row else 0


def run_processes(
    processes: int, records: int, bootstrap: str, topic: str, root: Path
) -> tuple[list[Figure], str, dict[str, str]]:
    schema = f"bench_scale_{uuid.uuid4().hex[:8]}"
    store = f"{POSTGRES}?schema={schema}"
    home = root / f"home-{processes}"
    home.mkdir()
    env = _env(home, bootstrap, topic, store)
    started = time.perf_counter()
    members = [
        subprocess.Popen(
            [sys.executable, "-m", "cxl.cli", "consume", "--until-idle", "--no-relay"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    peak = 0.0
    while any(member.poll() is None for member in members):
        for member in members:
            peak = max(peak, peak_rss(member.pid) or 0.0)
        time.sleep(0.2)
    for member in members:
        if member.returncode != 0:
            raise RuntimeError(member.stderr.read().decode() if member.stderr else "")
    elapsed = time.perf_counter() - started
    sealed = _sealed(store)
    if sealed != records:
        raise RuntimeError(f"{sealed:,} sealed of {records:,}")
    label = f"{processes} process{'es' if processes > 1 else ''}"
    figures = [
        rate(f"group-mode ingest on PostgreSQL, {label}", sealed, elapsed),
        Figure(f"  peak RSS of one process, {label}", "MiB", peak),
    ]
    print(f"    peak RSS of one process: {peak:,.0f} MiB", flush=True)
    return figures, store, env


def restart_and_catch_up(
    store: str, env: dict[str, str], bootstrap: str, topic: str, root: Path
) -> list[Figure]:
    probe = kept_event("cust-00000001", "p-1")
    publish(bootstrap, topic, [("cust-00000001", probe)])
    event_id = orjson.loads(probe)["event_id"]
    url, schema = store.split("?schema=")
    started = time.perf_counter()
    # A join the coordinator never completes ends the process with the broker error (exit 5)
    # after CXL_GROUP_JOIN_TIMEOUT_S; it is then started again, as a supervisor would, and the
    # figure counts every attempt.
    restart_env = {**env, "CXL_GROUP_JOIN_TIMEOUT_S": "60"}
    attempts = 0
    with psycopg.connect(url, autocommit=True) as conn:

        def sealed() -> bool:
            query = f'SELECT 1 FROM "{schema}".cxl_event_ids WHERE event_id = %s'
            return conn.execute(query, [event_id]).fetchone() is not None

        while not sealed():
            attempts += 1
            if attempts > 3:
                raise RuntimeError("the restarted process did not seal the probe")
            with tempfile.TemporaryFile() as err:
                member = subprocess.Popen(
                    [sys.executable, "-m", "cxl.cli", "consume", "--no-relay"],
                    env=restart_env,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
                try:
                    while member.poll() is None and not sealed():
                        if time.perf_counter() - started > 600:
                            raise RuntimeError("the restarted process did not seal the probe")
                        time.sleep(0.05)
                finally:
                    member.terminate()
                    member.wait(timeout=120)
                err.seek(0)
                last = err.read().decode().strip().splitlines()[-1:] or ["(no output)"]
            if member.returncode not in (0, -15):
                print(f"    restart attempt {attempts} exited {member.returncode}: {last[0]}")
        restart = time.perf_counter() - started
    print(
        f"    restart to first seal on the full ledger: {restart:.2f} s "
        f"({attempts} attempt{'s' if attempts > 1 else ''})",
        flush=True,
    )
    fresh = root / "projections-home"
    fresh.mkdir()
    project_env = {**env, "CXL_HOME": str(fresh)}
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cxl.cli",
            "gap",
            "--as-of",
            "2027-01-01T00:00:00Z",
            "--format",
            "json",
        ],
        env=project_env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    catch_up = time.perf_counter() - started
    sealed = _sealed(store)
    return [
        Figure("restart to first seal, full ledger (one process)", "s", restart),
        rate("projection catch-up over the full ledger (cxl gap, new file)", sealed, catch_up),
    ]


def run(
    events: int = 2_000_000,
    customers: int = 500_000,
    processes: tuple[int, ...] = (1, 2, 3),
    partitions: int = 6,
) -> list[Figure]:
    print(
        f"cx-ledger scale benchmark · {events:,} events, {customers:,} customers · "
        f"{partitions} partitions · group mode on PostgreSQL at {processes} processes",
        flush=True,
    )
    started = time.perf_counter()
    records = generate(events, customers)
    print(
        f"  generated {len(records):,} events in {time.perf_counter() - started:.0f} s", flush=True
    )
    figures: list[Figure] = []
    schemas: list[str] = []
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = f"cx.events-{uuid.uuid4().hex[:6]}"
        ensure_topics(broker.bootstrap, {topic: partitions}, 30)
        producer = make_producer(broker.bootstrap, 30)
        started = time.perf_counter()
        for start in range(0, len(records), 50_000):
            futures = [
                producer.send(topic, key=k.encode(), value=v)
                for k, v in records[start : start + 50_000]
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=60)
        producer.close()
        figures.append(rate("publish (acks=all)", len(records), time.perf_counter() - started))
        last: tuple[str, dict[str, str]] | None = None
        try:
            for count in processes:
                print(f"  {count} process(es)", flush=True)
                run_figures, store, env = run_processes(
                    count, len(records), broker.bootstrap, topic, Path(tmp)
                )
                schemas.append(store.split("?schema=")[1])
                figures += run_figures
                last = (store, env)
            if last is not None:
                figures += restart_and_catch_up(*last, broker.bootstrap, topic, Path(tmp))
        finally:
            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--customers", type=int, default=500_000)
    parser.add_argument("--processes", default="1,2,3")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    counts = tuple(int(n) for n in args.processes.split(","))
    run(args.events, args.customers, counts, args.partitions)


if __name__ == "__main__":
    main()
