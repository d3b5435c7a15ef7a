"""Faults injected while events flow: nothing lost, nothing sealed twice, nothing forged.

Each test publishes a realistic synthetic history concurrently (``cxl publish`` of several chunks,
one after the other, in a thread) while ``cxl consume`` runs as a user would run it, and injects a
fault: SIGKILL of the whole consume process group, a broker restart, PostgreSQL connections
terminated. The end state is checked against what was published, never against timings.

Moments are random; the seed is printed and replayed with ``CXL_FAULT_SEED=<seed>``. The CI size
is ~20k events; ``-m slow`` runs the 100k variant (``CXL_FAULT_EVENTS`` overrides both).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
import pytest

from consumers.broker import EmbeddedBroker, free_port
from cxl.synthetic import HistoryGenerator
from ledger.errors import StoreError
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import event_dict
from tests.integration.conftest import EXTERNAL_KAFKA, POSTGRES_ADMIN, cxl_env, run_cxl
from tests.integration.kafka_helpers import read_all

FAR_FUTURE = "2100-01-01T00:00:00Z"


def _seed() -> int:
    seed = int(os.environ.get("CXL_FAULT_SEED") or random.SystemRandom().randrange(1, 2**31))
    print(f"fault seed: {seed} (replay with CXL_FAULT_SEED={seed})")
    return seed


@dataclass
class Load:
    """A history split into JSON-lines chunks, with the ids that must be sealed exactly once."""

    chunks: list[Path]
    valid_ids: set[str]
    invalid: list[bytes]
    results: list[subprocess.CompletedProcess[str]] = field(default_factory=list)


def make_load(root: Path, events: int, seed: int, chunks: int = 8) -> Load:
    customers = max(100, events * 2000 // 31_000)
    history = HistoryGenerator(customers=customers, seed=seed).events()
    while len(history) < events:
        history += HistoryGenerator(customers=customers, seed=seed + len(history)).events()
    history = history[:events]
    # A few records no contract accepts: they must reach the dead-letter topic, not the ledger.
    invalid = [b"{not json " + str(i).encode() for i in range(5)] + [
        orjson.dumps(event_dict(customer_id=f"bad{i}") | {"unexpected": i}) for i in range(5)
    ]
    lines = [orjson.dumps(e) for e in history]
    step = len(history) // 5
    for i, bad in enumerate(invalid):
        lines.insert(1 + i * step // 2, bad)
    size = -(-len(lines) // chunks)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(chunks):
        path = root / f"chunk-{i}.jsonl"
        path.write_bytes(b"\n".join(lines[i * size : (i + 1) * size]) + b"\n")
        paths.append(path)
    return Load(paths, {e["event_id"] for e in history}, invalid)


@dataclass
class Publisher:
    """Publishes the chunks one after the other with ``cxl publish`` in a background thread."""

    load: Load
    env: dict[str, str]
    thread: threading.Thread | None = None

    def start(self) -> Publisher:
        def publish_all() -> None:
            for chunk in self.load.chunks:
                self.load.results.append(
                    run_cxl(["publish", "--no-validate", str(chunk)], self.env, timeout=300)
                )

        self.thread = threading.Thread(target=publish_all, daemon=True)
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=600)
        for result in self.load.results:
            assert result.returncode == 0, result.stderr


def start_consume(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``cxl consume`` in its own process group (its ingest workers included)."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "cxl.cli", "consume", *args],
            env=env,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def assert_sealed_exactly_once(store_url: str, load: Load) -> set[int]:
    """Every valid published event sealed once; returns the ledger positions."""
    with LedgerStore(store_url) as store:
        sealed = [(e.event_id, e.position) for page in store.read() for e in page]
    ids = [event_id for event_id, _ in sealed]
    assert len(ids) == len(set(ids)), "an event was sealed twice"
    assert set(ids) == load.valid_ids
    return {position for _, position in sealed}


def assert_projections_equal_a_fresh_replay(env: dict[str, str], root: Path) -> None:
    gap = run_cxl(["gap", "--as-of", FAR_FUTURE, "--by", "made_by", "--format", "json"], env)
    assert gap.returncode == 0, gap.stderr
    assert json.loads(gap.stdout)
    replayed = root / "replay.duckdb"
    replay = run_cxl(["replay", "--as-of", FAR_FUTURE, "--to", str(replayed)], env)
    assert replay.returncode == 0, replay.stderr
    counts = (
        "SELECT (SELECT count(*) FROM ledger_events) AS ledger_events, "
        "(SELECT count(*) FROM promise_events) AS promise_events, "
        "(SELECT count(*) FROM complaint_events) AS complaint_events, "
        "(SELECT count(*) FROM touchpoints) AS touchpoints, "
        "(SELECT count(*) FROM promises) AS promises, "
        "(SELECT sum(weight) FROM promises) AS weight, "
        "(SELECT sum(kept_on_time_fraction * weight) FROM promises) AS kept_on_time"
    )
    live = run_cxl(["sql", "--format", "json", counts], env)
    fresh = run_cxl(["sql", "--format", "json", "--db", str(replayed), counts], env)
    assert live.returncode == 0, live.stderr
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(live.stdout) == json.loads(fresh.stdout)


def fault_sizes() -> Iterator[object]:
    override = os.environ.get("CXL_FAULT_EVENTS")
    if override:
        yield int(override)
        return
    yield 20_000
    yield pytest.param(100_000, marks=pytest.mark.slow)


@pytest.mark.parametrize("events", list(fault_sizes()))
def test_sigkill_of_consume_at_random_moments_under_load_loses_and_duplicates_nothing(
    settings: Settings, tmp_path: Path, events: int
) -> None:
    assert settings.kafka_bootstrap
    seed = _seed()
    rng = random.Random(seed)
    load = make_load(tmp_path, events, seed)
    env = cxl_env(settings, CXL_INGEST_WORKERS="2")
    publisher = Publisher(load, env).start()
    log = tmp_path / "consume.log"
    kills = 0
    while kills < 5 or publisher.running:
        process = start_consume(env, log)
        time.sleep(rng.uniform(0.5, 4.0))
        assert process.poll() is None, log.read_text()
        kill_group(process)
        kills += 1
        if kills >= 12:
            break
    publisher.join()
    print(f"killed cxl consume {kills} times")

    final = run_cxl(["consume", "--until-idle", "--format", "json"], env, timeout=600)
    assert final.returncode == 0, final.stderr

    positions = assert_sealed_exactly_once(settings.store_url, load)
    verified = run_cxl(["verify", "--format", "json"], env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)[0]["events"] == len(load.valid_ids)
    relayed = {
        orjson.loads(r.value)["position"]
        for r in read_all(settings.kafka_bootstrap, settings.ledger_topic, timeout_s=120)
    }
    assert relayed == positions
    dead = {r.value for r in read_all(settings.kafka_bootstrap, settings.dlq_topic)}
    assert set(load.invalid) <= dead
    assert_projections_equal_a_fresh_replay(env, tmp_path)


def _sealed_so_far(store_url: str) -> int:
    with LedgerStore(store_url) as store:
        return sum(len(page) for page in store.read())


@pytest.mark.skipif(bool(EXTERNAL_KAFKA), reason="restarts a broker of its own")
def test_broker_restarted_while_consume_runs_loses_nothing_published_after_it(
    tmp_path: Path,
) -> None:
    """A mid-stream restart: the consumer is running (relay on) when the broker comes back empty.

    Whether the running consume survives it or stops with a clear error (and is restarted, as a
    supervisor would, with ``--accept-reset``), everything published before and after is sealed.
    """
    seed = _seed()
    port = free_port()
    suffix = uuid.uuid4().hex[:6]
    settings = Settings(
        home=tmp_path / "home",
        kafka_bootstrap=f"127.0.0.1:{port}",
        events_topic=f"m-{suffix}",
        ledger_topic=f"m-{suffix}.l",
        dlq_topic=f"m-{suffix}.d",
        partitions=2,
        batch_size=500,
    )
    before = make_load(tmp_path / "before", 3_000, seed, chunks=2)
    after = make_load(tmp_path / "after", 3_000, seed + 1, chunks=2)
    env = cxl_env(settings, CXL_INGEST_WORKERS="1", CXL_KAFKA_TIMEOUT_S="5")
    log = tmp_path / "consume.log"
    with EmbeddedBroker(port=port, log_dir=tmp_path):
        Publisher(before, env).start().join()
        process = start_consume(env, log, "--accept-reset")
        deadline = time.monotonic() + 120
        while _sealed_so_far(settings.store_url) < len(before.valid_ids):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the first load was not sealed"
            time.sleep(0.5)
    with EmbeddedBroker(port=port, log_dir=tmp_path):  # a brand-new, empty cluster
        Publisher(after, env).start().join()
        expected = len(before.valid_ids) + len(after.valid_ids)
        # Some seeds leave the running consume waiting on the new cluster (noted in the issue
        # log); the final consume below must then seal everything, which is what is asserted.
        deadline = time.monotonic() + 60
        while _sealed_so_far(settings.store_url) < expected and time.monotonic() < deadline:
            if process.poll() is not None:
                print(f"consume stopped (exit {process.returncode}); restarting it")
                process = start_consume(env, log, "--accept-reset")
            time.sleep(0.5)
        kill_group(process)
        print(log.read_text()[-2000:])
        final = run_cxl(["consume", "--until-idle", "--accept-reset"], env, timeout=300)
        assert final.returncode == 0, final.stderr
        both = Load([], before.valid_ids | after.valid_ids, [])
        positions = assert_sealed_exactly_once(settings.store_url, both)
        relayed = {
            orjson.loads(r.value)["position"]
            for r in read_all(settings.kafka_bootstrap or "", settings.ledger_topic)
        }
        assert relayed == positions


def _terminate_connections(database: str) -> int:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def _ledger_length(store_url: str) -> int:
    """The ledger's length, 0 until ingest has created the store's tables.

    Opening a fresh PostgreSQL store creates its tables; doing that while ingest does the same
    fails with "tuple concurrently updated", so this waits for them to exist first.
    """
    with psycopg.connect(store_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    if not row or row[0] < 2:
        return 0
    try:
        with LedgerStore(store_url) as store:
            return store.max_position()
    except StoreError:  # the same race, on DDL the store runs after creating its tables
        return 0


def test_postgresql_connections_killed_mid_load_are_reconnected_and_everything_sealed_once(
    settings: Settings, tmp_path: Path, postgres_database: str
) -> None:
    assert settings.kafka_bootstrap
    seed = _seed()
    rng = random.Random(seed)
    store_url = POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{postgres_database}"
    load = make_load(tmp_path, 12_000, seed, chunks=6)
    env = cxl_env(settings, CXL_STORE=store_url, CXL_INGEST_WORKERS="2")
    publisher = Publisher(load, env).start()
    log = tmp_path / "consume.log"
    process = start_consume(env, log, "--no-relay")
    terminated = 0
    deadline = time.monotonic() + 90
    for _ in range(3):
        threshold = _ledger_length(store_url) + rng.randrange(500, 3000)
        while _ledger_length(store_url) < threshold and process.poll() is None:
            assert time.monotonic() < deadline, (
                f"ingest made no progress after {terminated} terminated connections "
                f"({_ledger_length(store_url)} rows): {log.read_text()[-3000:]}"
            )
            time.sleep(0.2)
        if process.poll() is not None:
            break
        terminated += _terminate_connections(postgres_database)
    publisher.join()
    while process.poll() is None and time.monotonic() < deadline:
        if _sealed_so_far(store_url) >= len(load.valid_ids):
            break
        time.sleep(0.5)
    survived = process.poll() is None
    kill_group(process)
    first_run = log.read_text()
    print(f"terminated {terminated} connections; consume survived: {survived}")
    print(first_run[-3000:])
    assert terminated > 0
    # Pooled connections are checked before use and a lost one only retries the batch.
    assert survived, first_run[-3000:]

    resumed = run_cxl(["consume", "--until-idle", "--no-relay"], env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert_sealed_exactly_once(store_url, load)
    verified = run_cxl(["verify"], env)
    assert verified.returncode == 0, verified.stderr
