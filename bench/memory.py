"""Memory and restart time against history: a ledger of many customers costs no more to run.

    python -m bench.memory [--customers 100000,1000000] [--load 100000] [--cache N] [--check]

For each customer count, a ledger is sealed with one promise per customer (each with a personal
field, so each customer has a data key), then:

- **resident memory**: a real ``cxl consume`` (one worker) seals ``--load`` events spread over
  every customer (each a cache miss at first) from a Kafka topic; its peak resident set size
  (``ru_maxrss``) is the figure;
- **restart to first seal**: one more event (for an existing customer, not cached by anyone) is
  published, a new ``cxl consume`` is started, and the time from its start until the event is
  sealed (seen in the store's event-id index) is the figure.

Both runs use the same settings: ``--cache`` is ``CXL_STREAM_CACHE`` (default: its default), and
both ledgers should hold more customers than it, as a ledger that outgrew one machine does. The
larger ledger is compared with the smaller one (the raw baseline of the same run). Targets (issue
11): memory within 1.5x, restart time within 2x. ``--check`` exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from bench.figures import Figure, Target
from consumers.broker import EmbeddedBroker
from consumers.kafka_clients import make_producer
from consumers.topics import ensure_topics
from ledger.contract import parse_event
from ledger.keys import KeyStore
from ledger.personal import PersonalCipher
from ledger.store import LedgerStore

MEMORY_TARGET = (Target("<=", 1.5, on="ratio"),)
RESTART_TARGET = (Target("<=", 2.0, on="ratio"),)
_BUILD_BATCH = 5000


def _customer(index: int) -> str:
    return f"cust-{index:08d}"


def promise_event(customer_id: str, promise_id: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": "promise.made",
            "customer_id": customer_id,
            "occurred_at": "2026-03-01T09:00:00Z",
            "source": "bench",
            "data": {
                "promise_id": promise_id,
                "made_by": "billing",
                "channel": "email",
                "kind": "refund",
                "due_at": "2026-03-10T12:00:00Z",
                "description": f"refund for order {promise_id}",
            },
        }
    )


def kept_event(customer_id: str, promise_id: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": "promise.kept",
            "customer_id": customer_id,
            "occurred_at": "2026-03-05T09:00:00Z",
            "source": "bench",
            "data": {"promise_id": promise_id},
        }
    )


def build_ledger(home: Path, customers: int) -> None:
    """One promise per customer, sealed straight into the store (set-up, not measured)."""
    started = time.perf_counter()
    keys = KeyStore(home / "keys.sqlite", home / "kek")
    with LedgerStore(str(home / "ledger.sqlite"), personal=PersonalCipher(keys)) as store:
        for start in range(0, customers, _BUILD_BATCH):
            batch = [
                parse_event(promise_event(_customer(i), f"p-{i}"), "bench")
                for i in range(start, min(start + _BUILD_BATCH, customers))
            ]
            store.seal(batch)
            done = start + len(batch)
            if done % 100_000 < _BUILD_BATCH or done == customers:
                print(
                    f"    built {done:,} customers in {time.perf_counter() - started:,.0f} s",
                    flush=True,
                )


def consume_environment(
    home: Path, bootstrap: str, topic: str, cache: int | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXL_")}
    env.update(
        CXL_HOME=str(home),
        CXL_KEK_FILE=str(home / "kek"),
        CXL_KAFKA_BOOTSTRAP=bootstrap,
        CXL_EVENTS_TOPIC=topic,
        CXL_LEDGER_TOPIC=f"{topic}.ledger",
        CXL_DLQ_TOPIC=f"{topic}.dlq",
        CXL_CHECKPOINTS_TOPIC=f"{topic}.checkpoints",
        CXL_ALERTS_TOPIC=f"{topic}.alerts",
        CXL_INGEST_WORKERS="1",
    )
    if cache is not None:
        env["CXL_STREAM_CACHE"] = str(cache)
    return env


def publish(bootstrap: str, topic: str, values: list[tuple[str, bytes]]) -> None:
    producer = make_producer(bootstrap, 30)
    futures = [producer.send(topic, key=k.encode(), value=v) for k, v in values]
    producer.flush()
    for future in futures:
        future.get(timeout=30)  # every record confirmed before anything is measured
    producer.close()


def peak_rss(pid: int) -> float | None:
    """The process's peak resident set size since it exec'd (``VmHWM``), in MiB. Not
    ``ru_maxrss``: a forked child inherits its parent's high-water mark across exec."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _consume_peak_rss(env: dict[str, str]) -> float:
    """Run ``cxl consume --until-idle``; its peak resident set size in MiB (read until it
    exits)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cxl.cli", "consume", "--until-idle", "--no-relay"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, peak_rss(process.pid) or 0.0)
        time.sleep(0.05)
    if process.returncode != 0:
        problem = process.stderr.read().decode() if process.stderr else ""
        raise RuntimeError(f"cxl consume failed: {problem}")
    return peak


def _restart_to_first_seal(env: dict[str, str], store: Path, event_id: str) -> float:
    """Seconds from starting ``cxl consume`` until ``event_id`` is sealed."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "cxl.cli", "consume", "--no-relay"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        reader = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
        try:
            while True:
                found = reader.execute(
                    "SELECT 1 FROM cxl_event_ids WHERE event_id = ?", [event_id]
                ).fetchone()
                if found:
                    return time.perf_counter() - started
                if process.poll() is not None:
                    raise RuntimeError("cxl consume exited before sealing the event")
                if time.perf_counter() - started > 300:
                    raise RuntimeError("the event was not sealed within 300 s")
                time.sleep(0.02)
        finally:
            reader.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def measure(
    customers: int, load: int, cache: int | None, broker: EmbeddedBroker, root: Path
) -> tuple[float, float]:
    """(peak RSS MiB, restart-to-first-seal s) of ``cxl consume`` on a ledger of ``customers``."""
    home = root / f"ledger-{customers}"
    home.mkdir()
    print(f"  ledger of {customers:,} customers", flush=True)
    build_ledger(home, customers)
    topic = f"cx.events-{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, {topic: 4}, 30)
    stride = max(1, customers // load)
    picks = [(i * stride) % customers for i in range(load)]
    load_events = [(_customer(i), kept_event(_customer(i), f"p-{i}")) for i in picks]
    publish(broker.bootstrap, topic, load_events)
    env = consume_environment(home, broker.bootstrap, topic, cache)
    rss = _consume_peak_rss(env)
    print(f"    cxl consume sealed {load:,} events over the ledger: peak RSS {rss:,.0f} MiB")
    last = customers // 2 + 1
    probe = kept_event(_customer(last), f"p-{last}")
    publish(broker.bootstrap, topic, [(_customer(last), probe)])
    restart = _restart_to_first_seal(env, home / "ledger.sqlite", orjson.loads(probe)["event_id"])
    print(f"    restart to first seal: {restart:.2f} s")
    return rss, restart


def run(
    customer_counts: tuple[int, int] = (100_000, 1_000_000),
    load: int = 100_000,
    cache: int | None = None,
) -> list[Figure]:
    small, large = customer_counts
    print(
        f"cx-ledger memory benchmark · ledgers of {small:,} and {large:,} customers · "
        f"{load:,} events sealed by cxl consume · CXL_STREAM_CACHE "
        f"{'default' if cache is None else f'{cache:,}'}"
    )
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        small_rss, small_restart = measure(small, load, cache, broker, Path(tmp))
        large_rss, large_restart = measure(large, load, cache, broker, Path(tmp))
    rss_base = Figure(f"cxl consume peak RSS, ledger of {small:,} customers", "MiB", small_rss)
    restart_base = Figure(
        f"restart to first seal, ledger of {small:,} customers", "s", small_restart
    )
    figures = [
        rss_base,
        Figure(
            f"cxl consume peak RSS, ledger of {large:,} customers",
            "MiB",
            large_rss,
            baseline=rss_base,
            targets=MEMORY_TARGET,
        ),
        restart_base,
        Figure(
            f"restart to first seal, ledger of {large:,} customers",
            "s",
            large_restart,
            baseline=restart_base,
            targets=RESTART_TARGET,
        ),
    ]
    for figure in figures[1::2]:
        print(
            f"  {figure.name}: {figure.value:,.2f} {figure.unit}, "
            f"{figure.ratio or 0:.2f} x the smaller ledger — "
            f"{'met' if figure.met else 'MISSED'}"
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--customers", default="100000,1000000", help="SMALL,LARGE")
    parser.add_argument("--load", type=int, default=100_000)
    parser.add_argument("--cache", type=int, default=None, help="CXL_STREAM_CACHE of both runs")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    small, large = (int(n) for n in args.customers.split(","))
    figures = run((small, large), args.load, args.cache)
    if args.check and not all(f.met for f in figures if f.targets):
        sys.exit(1)


if __name__ == "__main__":
    main()
