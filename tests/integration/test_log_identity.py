"""A reset log is noticed by identity, whatever its length: nothing is skipped."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest

from consumers.broker import EmbeddedBroker, free_port
from consumers.ingest import IngestConsumer
from consumers.topics import delete_topics, ensure_topics
from ledger.errors import LedgerTamperedError, LogResetError
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import event_dict, raw
from tests.integration.conftest import EXTERNAL_KAFKA
from tests.integration.kafka_helpers import produce


def _events(prefix: str, count: int) -> list[dict]:
    # One customer: every record on one partition, so offsets line up across the two logs.
    return [event_dict(customer_id="c1", promise_id=f"{prefix}{i}") for i in range(count)]


def _produce(settings: Settings, events: list[dict]) -> None:
    produce(
        settings.kafka_bootstrap or "",
        settings.events_topic,
        [raw(e) for e in events],
        keys=[e["customer_id"].encode() for e in events],
    )


def _sealed_ids(store: LedgerStore) -> set[str]:
    return {e.event_id for page in store.read() for e in page}


@pytest.mark.skipif(bool(EXTERNAL_KAFKA), reason="restarts the embedded broker itself")
@pytest.mark.parametrize("second_log", [10, 30, 50], ids=["shorter", "equal", "longer"])
def test_a_restarted_broker_is_a_new_log_whatever_its_length(
    tmp_path: Path, second_log: int
) -> None:
    port = free_port()
    suffix = uuid.uuid4().hex[:6]
    settings = Settings(
        home=tmp_path,
        kafka_bootstrap=f"127.0.0.1:{port}",
        partitions=1,
        events_topic=f"r-{suffix}",
        ledger_topic=f"r-{suffix}.l",
        dlq_topic=f"r-{suffix}.d",
    )
    first, second = _events("a", 30), _events("b", second_log)
    with LedgerStore(settings.store_url) as store:
        with EmbeddedBroker(port=port, log_dir=tmp_path):
            ensure_topics(settings.kafka_bootstrap or "", settings.topics, 10)
            _produce(settings, first)
            IngestConsumer(settings, store, settings.kafka_bootstrap or "").run(until_idle=True)
        with EmbeddedBroker(port=port, log_dir=tmp_path):
            ensure_topics(settings.kafka_bootstrap or "", settings.topics, 10)
            _produce(settings, second)
            with pytest.raises(LogResetError) as caught:
                IngestConsumer(settings, store, settings.kafka_bootstrap or "").run(until_idle=True)
            assert caught.value.resume_at == 29
            assert _sealed_ids(store) == {e["event_id"] for e in first}
            resumed = IngestConsumer(
                settings, store, settings.kafka_bootstrap or "", accept_reset=True
            )
            resumed.run(until_idle=True)
            assert resumed.stats.sealed == second_log
        assert _sealed_ids(store) == {e["event_id"] for e in first + second}


def test_a_topic_recreated_while_consuming_is_read_again_from_its_start(
    settings: Settings,
) -> None:
    bootstrap = settings.kafka_bootstrap or ""
    first, second = _events("a", 40), _events("b", 60)
    ensure_topics(bootstrap, settings.topics, 10)
    _produce(settings, first)
    with LedgerStore(settings.store_url) as store:
        consumer = IngestConsumer(settings, store, bootstrap, accept_reset=True)
        worker = threading.Thread(target=consumer.run)
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while consumer.stats.sealed < len(first) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert consumer.stats.sealed == len(first)
            delete_topics(bootstrap, [settings.events_topic], 10)
            time.sleep(1)
            ensure_topics(bootstrap, settings.topics, 10)
            _produce(settings, second)
            deadline = time.monotonic() + 60
            while consumer.stats.sealed < len(first + second) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            consumer.stop()
            worker.join(timeout=30)
            assert not worker.is_alive(), "ingest did not stop when asked"
        assert consumer.stats.resets >= 1
        assert _sealed_ids(store) == {e["event_id"] for e in first + second}


def test_a_position_moved_by_hand_stops_ingest_instead_of_skipping(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap or ""
    ensure_topics(bootstrap, settings.topics, 10)
    _produce(settings, _events("a", 5))
    with LedgerStore(settings.store_url) as store:
        IngestConsumer(settings, store, bootstrap).run(until_idle=True)
    with sqlite3.connect(settings.store_url) as conn:
        conn.execute("UPDATE tracking SET notification_id = notification_id + 1000")
    _produce(settings, _events("b", 5))
    with LedgerStore(settings.store_url) as store:
        with pytest.raises(LedgerTamperedError, match="source position kafka:") as caught:
            IngestConsumer(settings, store, bootstrap).run(until_idle=True)
        assert caught.value.exit_code == 4
        assert len(_sealed_ids(store)) == 5
