"""Crashes and resets lose nothing and duplicate nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from consumers.broker import EmbeddedBroker, free_port
from consumers.ingest import IngestConsumer
from ledger.audit import verify_chains
from ledger.errors import LogResetError
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import event_dict, raw
from tests.integration.conftest import EXTERNAL_KAFKA, cxl_env, run_cxl
from tests.integration.kafka_helpers import produce


def _sealed_count(path: str) -> int:
    if not Path(path).exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(
                "SELECT COUNT(*) FROM stored_events WHERE topic LIKE '%EventSealed%'"
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigkill_in_the_middle_of_ingest_then_restart_seals_every_event_exactly_once(
    settings: Settings,
) -> None:
    assert settings.kafka_bootstrap
    total = 40_000
    events = [event_dict(customer_id=f"c{i % 2000}", promise_id=f"p{i}") for i in range(total)]
    produce(
        settings.kafka_bootstrap,
        settings.events_topic,
        [raw(e) for e in events],
        keys=[e["customer_id"].encode() for e in events],
    )
    env = cxl_env(settings, CXL_BATCH_SIZE="2000")
    process = subprocess.Popen(
        [sys.executable, "-m", "cxl.cli", "consume", "--no-relay"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while _sealed_count(settings.store_url) < total // 4:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    at_kill = _sealed_count(settings.store_url)
    assert 0 < at_kill < total, "the kill must land while ingest is under way"

    resumed = run_cxl(["consume", "--until-idle", "--no-relay"], env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    with LedgerStore(settings.store_url) as store:
        sealed = [e.event_id for page in store.read() for e in page]
        assert len(sealed) == total
        assert set(sealed) == {e["event_id"] for e in events}
        assert verify_chains(store).events == total


@pytest.mark.skipif(bool(EXTERNAL_KAFKA), reason="restarts the embedded broker itself")
def test_broker_restart_is_detected_and_nothing_published_after_it_is_lost(tmp_path: Path) -> None:
    port = free_port()
    suffix = uuid.uuid4().hex[:6]
    settings = Settings(
        home=tmp_path,
        kafka_bootstrap=f"127.0.0.1:{port}",
        partitions=2,
        events_topic=f"r-{suffix}",
        ledger_topic=f"r-{suffix}.l",
        dlq_topic=f"r-{suffix}.d",
        kafka_timeout_s=10,
    )
    before = [event_dict(customer_id=f"c{i % 5}", promise_id=f"a{i}") for i in range(200)]
    after = [event_dict(customer_id=f"c{i % 5}", promise_id=f"b{i}") for i in range(40)]
    with LedgerStore(settings.store_url) as store:
        with EmbeddedBroker(port=port, log_dir=tmp_path):
            produce(
                settings.kafka_bootstrap,
                settings.events_topic,
                [raw(e) for e in before],
                keys=[e["customer_id"].encode() for e in before],
            )
            IngestConsumer(settings, store, settings.kafka_bootstrap).run(until_idle=True)
        with EmbeddedBroker(port=port, log_dir=tmp_path):  # a brand-new, empty cluster
            produce(
                settings.kafka_bootstrap,
                settings.events_topic,
                [raw(e) for e in after],
                keys=[e["customer_id"].encode() for e in after],
            )
            with pytest.raises(LogResetError) as caught:
                IngestConsumer(settings, store, settings.kafka_bootstrap).run(until_idle=True)
            assert caught.value.resume_at == len(before) // 2 - 1 or caught.value.resume_at > 0
            assert "--accept-reset" in str(caught.value)

            resumed = IngestConsumer(settings, store, settings.kafka_bootstrap, accept_reset=True)
            resumed.run(until_idle=True)
            assert resumed.stats.sealed == len(after)
            assert resumed.stats.resets >= 1
        sealed = {e.event_id for page in store.read() for e in page}
        assert sealed == {e["event_id"] for e in before + after}


def test_unreachable_broker_is_reported_in_seconds_not_minutes(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    result = run_cxl(["consume", "--until-idle"], cxl_env(settings), timeout=60)
    assert result.returncode == 5
    assert "no Kafka broker answers at 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30


def test_publish_without_a_configured_broker_says_how_to_run_one(tmp_path: Path) -> None:
    env = cxl_env(Settings(home=tmp_path))
    env.pop("CXL_KAFKA_BOOTSTRAP", None)
    (tmp_path / "x.jsonl").write_text("")
    result = run_cxl(["publish", str(tmp_path / "x.jsonl")], env)
    assert result.returncode == 2
    assert "cxl broker" in result.stderr


@pytest.mark.skipif(bool(EXTERNAL_KAFKA), reason="restarts the embedded broker itself")
def test_a_reset_seen_by_an_ingest_worker_stops_the_cli_with_its_exit_code(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        home=tmp_path, kafka_bootstrap=f"127.0.0.1:{port}", partitions=2, ingest_workers=2
    )
    env = cxl_env(settings, CXL_INGEST_WORKERS="2")
    first = [event_dict(customer_id=f"c{i % 6}", promise_id=f"a{i}") for i in range(120)]
    later = [event_dict(customer_id=f"c{i % 6}", promise_id=f"b{i}") for i in range(12)]
    with EmbeddedBroker(port=port, log_dir=tmp_path):
        produce(
            settings.kafka_bootstrap or "",
            settings.events_topic,
            [raw(e) for e in first],
            keys=[e["customer_id"].encode() for e in first],
        )
        assert run_cxl(["consume", "--until-idle", "--no-relay"], env).returncode == 0
    with EmbeddedBroker(port=port, log_dir=tmp_path):
        produce(
            settings.kafka_bootstrap or "",
            settings.events_topic,
            [raw(e) for e in later],
            keys=[e["customer_id"].encode() for e in later],
        )
        stopped = run_cxl(["consume", "--until-idle", "--no-relay"], env)
        assert stopped.returncode == 6, stopped.stderr
        assert "was reset" in stopped.stderr and "--accept-reset" in stopped.stderr
        accepted = run_cxl(
            ["consume", "--until-idle", "--no-relay", "--accept-reset", "--format", "json"], env
        )
        assert accepted.returncode == 0, accepted.stderr
    with LedgerStore(settings.store_url) as store:
        assert {e.event_id for page in store.read() for e in page} == {
            e["event_id"] for e in first + later
        }
