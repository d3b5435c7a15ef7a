"""Kafka in and out against a real broker: publish → consume → seal, dead letters, relay."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from consumers.ingest import IngestConsumer
from consumers.relay import LedgerRelay
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import event_dict, raw, write_jsonl
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.kafka_helpers import produce, read_all


def _relay(settings: Settings, store: LedgerStore) -> LedgerRelay:
    assert settings.kafka_bootstrap
    return LedgerRelay.for_settings(
        store, settings.kafka_bootstrap, settings.model_copy(update={"batch_size": 200})
    )


def _consume(settings: Settings, store: LedgerStore, relay: bool = False) -> IngestConsumer:
    assert settings.kafka_bootstrap
    ledger_relay = _relay(settings, store) if relay else None
    consumer = IngestConsumer(settings, store, settings.kafka_bootstrap, relay=ledger_relay)
    consumer.run(until_idle=True)
    if ledger_relay:
        ledger_relay.close()
    return consumer


def test_publish_then_consume_seals_every_valid_event_once(
    settings: Settings, tmp_path: Path
) -> None:
    events = [event_dict(customer_id=f"c{i % 10}", promise_id=f"p{i}") for i in range(300)]
    write_jsonl(tmp_path / "e.jsonl", [*events, event_dict(kind="bribe")])
    env = cxl_env(settings)
    published = run_cxl(["publish", str(tmp_path / "e.jsonl")], env)
    assert published.returncode == 3, published.stderr
    assert "e.jsonl:301: data.kind" in published.stderr
    assert "sent 300" in published.stdout

    consumed = run_cxl(["consume", "--until-idle", "--no-relay", "--format", "json"], env)
    assert consumed.returncode == 0, consumed.stderr
    summary = json.loads(consumed.stdout)[0]
    assert (summary["consumed"], summary["sealed"], summary["dead_lettered"]) == (300, 300, 0)

    again = run_cxl(["consume", "--until-idle", "--no-relay", "--format", "json"], env)
    assert json.loads(again.stdout)[0]["consumed"] == 0
    with LedgerStore(settings.store_url) as store:
        assert sum(len(p) for p in store.read()) == 300


def test_poison_records_are_dead_lettered_with_reason_and_origin(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.kafka_bootstrap
    good = [raw(event_dict(customer_id=f"c{i}")) for i in range(20)]
    poison = [
        b"{broken",
        raw(event_dict(customer_id="c1", severity=3, type_="complaint.filed") | {"extra": 1}),
    ]
    produce(settings.kafka_bootstrap, settings.events_topic, [*good[:10], *poison, *good[10:]])
    with LedgerStore(str(tmp_path / "l.sqlite")) as store:
        consumer = _consume(settings, store)
        assert consumer.stats.sealed == 20
        assert consumer.stats.dead_lettered == 2
    letters = read_all(settings.kafka_bootstrap, settings.dlq_topic)
    assert sorted(r.value for r in letters) == sorted(poison)
    by_value = {r.value: dict(r.headers) for r in letters}
    assert b"not valid JSON" in by_value[b"{broken"][("cxl-reason")]
    assert by_value[poison[1]]["cxl-reason"].startswith(b"extra: unknown field")
    headers = by_value[b"{broken"]
    assert headers["cxl-origin-topic"] == settings.events_topic.encode()
    assert int(headers["cxl-origin-offset"]) >= 0


@pytest.mark.parametrize("reused_by", ["c1", "c2"], ids=["same-customer", "another-customer"])
def test_reused_event_id_with_other_content_is_dead_lettered(
    settings: Settings, tmp_path: Path, reused_by: str
) -> None:
    assert settings.kafka_bootstrap
    event = event_dict(customer_id="c1")
    changed = {**event, "customer_id": reused_by, "data": {**event["data"], "kind": "delivery"}}
    produce(
        settings.kafka_bootstrap,
        settings.events_topic,
        [raw(event), raw(event), raw(changed)],
        keys=[b"c1", b"c1", reused_by.encode()],
    )
    with LedgerStore(str(tmp_path / "l.sqlite")) as store:
        consumer = _consume(settings, store)
        sealed = [e for page in store.read() for e in page]
    # Whichever version reached the ledger first is the fact; every other is a duplicate of it or
    # refused (partitions are consumed in no particular order relative to each other).
    assert [e.event_id for e in sealed] == [event["event_id"]]
    stats = consumer.stats
    assert (stats.sealed, stats.duplicates + stats.dead_lettered) == (1, 2)
    letters = read_all(settings.kafka_bootstrap, settings.dlq_topic)
    assert len(letters) == stats.dead_lettered >= 1
    assert {dict(r.headers)["cxl-reason"] for r in letters} == {
        b"event_id reused with different content"
    }


def test_relay_publishes_every_sealed_event_in_ledger_order_and_resumes(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.kafka_bootstrap
    events = [event_dict(customer_id=f"c{i % 9}", promise_id=f"p{i}") for i in range(450)]
    produce(
        settings.kafka_bootstrap,
        settings.events_topic,
        [raw(e) for e in events],
        keys=[e["customer_id"].encode() for e in events],
    )
    with LedgerStore(str(tmp_path / "l.sqlite")) as store:
        _consume(settings, store, relay=True)
        relayed = read_all(settings.kafka_bootstrap, settings.ledger_topic)
        assert len(relayed) == 450
        decoded = [orjson.loads(r.value) for r in relayed]
        assert {d["event_id"] for d in decoded} == {e["event_id"] for e in events}
        per_customer: dict[str, list[int]] = defaultdict(list)
        for d, record in zip(decoded, relayed, strict=True):
            assert record.key == d["customer_id"].encode()
            per_customer[d["customer_id"]].append(d["seq"])
        assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in per_customer.values())

        positions = sorted(d["position"] for d in decoded)
        restarted = _relay(settings, store)
        resume = restarted.resume_position()
        assert positions[0] < resume <= positions[-1]  # only the last batch is sent again
        resent = restarted.publish_pending()
        restarted.close()
        assert resent == sum(1 for p in positions if p >= resume)
        after = [
            orjson.loads(r.value)["position"]
            for r in read_all(settings.kafka_bootstrap, settings.ledger_topic)
        ]
        assert sorted(set(after)) == positions
        assert len(after) == 450 + resent


def test_consume_into_a_postgresql_store_seals_exactly_once(
    settings: Settings, postgres_url: str
) -> None:
    assert settings.kafka_bootstrap
    events = [event_dict(customer_id=f"c{i % 7}", promise_id=f"p{i}") for i in range(120)]
    produce(
        settings.kafka_bootstrap,
        settings.events_topic,
        [raw(e) for e in events] + [raw(events[0])],
        keys=[e["customer_id"].encode() for e in events] + [b"c0"],
    )
    with LedgerStore(postgres_url) as store:
        consumer = _consume(settings, store)
        assert (consumer.stats.sealed, consumer.stats.duplicates) == (120, 1)
    with LedgerStore(postgres_url) as reopened:
        again = _consume(settings, reopened)
        assert again.stats.consumed == 0
        assert sum(len(page) for page in reopened.read()) == 120
