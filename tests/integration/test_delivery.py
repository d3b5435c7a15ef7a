"""Every produce is confirmed: nothing is reported sent, or committed past, unless it was delivered."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

import consumers.ingest
from consumers.broker import EmbeddedBroker
from consumers.dead_letters import TRUNCATED_BYTES, DeadLetterError
from consumers.ingest import IngestConsumer, tracking_name
from consumers.kafka_clients import make_admin, make_producer
from consumers.topics import ensure_topics
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import event_dict, raw, write_jsonl
from tests.integration.conftest import EXTERNAL_KAFKA, cxl_env, run_cxl
from tests.integration.kafka_helpers import produce, read_all

TWO_MB = 2 * 1024 * 1024


def _oversized_line(customer_id: str = "c-big") -> bytes:
    """A 2 MB JSON object: over the 1 MiB default ``max_request_size`` and invalid by contract."""
    event = event_dict(customer_id=customer_id)
    event["data"]["description"] = "x" * TWO_MB
    return raw(event)


def _records_on(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            return 0
        consumer.assign(tps)
        consumer.seek_to_end()
        return sum(consumer.position(tp) or 0 for tp in tps)
    finally:
        consumer.close()


def test_publish_reports_a_line_the_client_refuses_by_file_and_line_and_delivers_the_rest(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.kafka_bootstrap
    events = [event_dict(customer_id=f"c{i % 5}", promise_id=f"p{i}") for i in range(40)]
    path = tmp_path / "e.jsonl"
    write_jsonl(path, [*events[:20], _oversized_line(), *events[20:]])

    published = run_cxl(["publish", "--no-validate", str(path)], cxl_env(settings))

    assert published.returncode == 3, published.stderr
    assert re.search(
        rf"{re.escape(str(path))}:21: not delivered: MessageSizeTooLarge", published.stderr
    )
    assert "sent 40 " in published.stdout
    assert "not delivered 1" in published.stdout
    letters = read_all(settings.kafka_bootstrap, settings.events_topic)
    assert sorted(r.value for r in letters) == sorted(raw(e) for e in events)


@pytest.mark.skipif(bool(EXTERNAL_KAFKA), reason="stops a broker of its own")
def test_publish_when_the_broker_dies_mid_run_exits_5_with_the_confirmed_count(
    tmp_path: Path,
) -> None:
    total = 150_000
    path = tmp_path / "big.jsonl"
    template = event_dict(customer_id="c0")
    with open(path, "wb") as handle:
        for i in range(total):
            event = {**template, "event_id": str(uuid.UUID(int=i + 1)), "customer_id": f"c{i % 97}"}
            handle.write(orjson.dumps(event) + b"\n")
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        settings = Settings(home=tmp_path / "home", kafka_bootstrap=broker.bootstrap, partitions=2)
        env = cxl_env(settings, CXL_KAFKA_TIMEOUT_S="3")
        process = subprocess.Popen(
            [sys.executable, "-m", "cxl.cli", "publish", str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen = 0
        while seen < 5_000:
            assert process.poll() is None, process.communicate()
            time.sleep(0.2)
            seen = _records_on(broker.bootstrap, settings.events_topic)
        broker.stop()
        out, err = process.communicate(timeout=120)

    assert process.returncode == 5, err
    found = re.search(r"([\d,]+) of ([\d,]+) records sent were confirmed delivered", err)
    assert found, err
    confirmed = int(found.group(1).replace(",", ""))
    assert confirmed < total
    assert "may or may not have been delivered" in err
    assert f"sent {total:,}" not in out


def _run_ingest(settings: Settings, store: LedgerStore) -> IngestConsumer:
    assert settings.kafka_bootstrap
    consumer = IngestConsumer(settings, store, settings.kafka_bootstrap)
    consumer.run(until_idle=True)
    return consumer


def _produce_with_big_records(settings: Settings, values: list[bytes], keys: list[bytes]) -> None:
    assert settings.kafka_bootstrap
    # A real Kafka refuses records over the topic's max.message.bytes (1 MB by default); the test
    # broker enforces no topic configuration.
    admin = make_admin(settings.kafka_bootstrap, 10)
    try:
        admin.create_topics(
            [
                NewTopic(
                    settings.events_topic,
                    settings.partitions,
                    1,
                    topic_configs={"max.message.bytes": str(8 * 1024 * 1024)},
                )
            ],
            timeout_ms=10_000,
        )
    finally:
        admin.close()
    ensure_topics(settings.kafka_bootstrap, settings.topics, 10)
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        max_request_size=4 * 1024 * 1024,
    )
    try:
        futures = [
            producer.send(settings.events_topic, key=k, value=v)
            for k, v in zip(keys, values, strict=True)
        ]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close(timeout=10)


def test_an_oversized_invalid_record_is_dead_lettered_truncated_with_its_size_and_digest(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.kafka_bootstrap
    settings = settings.model_copy(update={"partitions": 1})
    assert settings.kafka_bootstrap
    good = [event_dict(customer_id=f"c{i % 3}", promise_id=f"p{i}") for i in range(30)]
    big = _oversized_line("c1")
    values = [raw(e) for e in good[:15]] + [big] + [raw(e) for e in good[15:]]
    keys = (
        [e["customer_id"].encode() for e in good[:15]]
        + [b"c1"]
        + [e["customer_id"].encode() for e in good[15:]]
    )
    _produce_with_big_records(settings, values, keys)

    with LedgerStore(str(tmp_path / "l.sqlite")) as store:
        consumer = _run_ingest(settings, store)
        assert (consumer.stats.sealed, consumer.stats.dead_lettered) == (30, 1)
        assert store.position(tracking_name(settings.events_topic, 0, 0)) == len(values) - 1
        assert {e.event_id for page in store.read() for e in page} == {e["event_id"] for e in good}

    letters = read_all(settings.kafka_bootstrap, settings.dlq_topic)
    assert len(letters) == 1
    letter = letters[0]
    headers = dict(letter.headers)
    assert letter.value == big[:TRUNCATED_BYTES]
    assert letter.key == b"c1"
    assert headers["cxl-truncated"] == b"true"
    assert int(headers["cxl-original-size"]) == len(big)
    assert headers["cxl-original-sha256"] == hashlib.sha256(big).hexdigest().encode()
    assert headers["cxl-reason"]
    assert headers["cxl-origin-topic"] == settings.events_topic.encode()
    assert int(headers["cxl-origin-offset"]) == 15


def test_a_dead_letter_that_cannot_be_delivered_stops_ingest_before_committing_the_batch(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.kafka_bootstrap
    settings = settings.model_copy(update={"partitions": 1, "kafka_timeout_s": 2})
    assert settings.kafka_bootstrap
    good = [event_dict(customer_id="c1", promise_id=f"p{i}") for i in range(10)]
    poison = b"{not json"
    ensure_topics(settings.kafka_bootstrap, settings.topics, 10)
    produce(
        settings.kafka_bootstrap,
        settings.events_topic,
        [raw(e) for e in good[:5]] + [poison] + [raw(e) for e in good[5:]],
        keys=[b"c1"] * 11,
    )
    doomed = EmbeddedBroker(log_dir=tmp_path)

    def producer_whose_broker_is_gone(bootstrap: str, timeout_s: float, **overrides: Any) -> Any:
        # Ingest's producer (used for dead letters only) connects to a broker that then stops.
        doomed.start()
        producer = make_producer(doomed.bootstrap, timeout_s, **overrides)
        doomed.stop()
        return producer

    name = tracking_name(settings.events_topic, 0, 0)
    with LedgerStore(str(tmp_path / "l.sqlite")) as store:
        with monkeypatch.context() as patched:
            patched.setattr(consumers.ingest, "make_producer", producer_whose_broker_is_gone)
            with pytest.raises(DeadLetterError) as caught:
                _run_ingest(settings, store)
        assert caught.value.exit_code == 5
        assert f"{settings.events_topic}/0@5" in str(caught.value)
        position = store.position(name)
        assert position is None or position < 5
        assert sum(len(page) for page in store.read()) == (0 if position is None else position + 1)

        resumed = _run_ingest(settings, store)
        assert resumed.stats.dead_lettered == 1
        assert store.position(name) == 10
        assert {e.event_id for page in store.read() for e in page} == {e["event_id"] for e in good}
    assert [r.value for r in read_all(settings.kafka_bootstrap, settings.dlq_topic)] == [poison]
