from __future__ import annotations

from datetime import UTC, datetime

import orjson
from eventsourcing.application import Application

from ledger.canonical import format_instant
from ledger.chain import GENESIS_HASH
from ledger.contract import ValidEvent
from ledger.relationship import (
    Relationship,
    created_state,
    relationship_id,
    sealed_state,
    stored_timestamp,
)
from ledger.stream_head import StreamHead
from ledger.transcoder import OrjsonTranscoder
from tests.events import valid

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _seal(head: StreamHead, event: ValidEvent) -> list[str]:
    """Fold ``event`` into ``head`` as sealing does; the anomalies it was sealed with."""
    anomalies = head.anomalies_of(event.body)
    head.note(event.body, head.seq + 1, f"{head.seq + 1:064x}")
    return anomalies


def test_outcome_before_its_promise_is_sealed_as_an_anomaly() -> None:
    assert _seal(StreamHead("c1"), valid("promise.kept", customer_id="c1")) == [
        "outcome before promise"
    ]


def test_kept_twice_and_kept_after_broken_are_anomalies() -> None:
    head = StreamHead("c1")
    _seal(head, valid(customer_id="c1"))
    assert _seal(head, valid("promise.kept", customer_id="c1")) == []
    assert _seal(head, valid("promise.kept", customer_id="c1")) == ["kept twice"]
    other = StreamHead("c2")
    _seal(other, valid(customer_id="c2"))
    _seal(other, valid("promise.broken", customer_id="c2"))
    assert _seal(other, valid("promise.kept", customer_id="c2")) == ["kept after broken"]


def test_partial_keeps_are_not_kept_twice() -> None:
    head = StreamHead("c1")
    _seal(head, valid(customer_id="c1"))
    for _ in range(2):
        assert _seal(head, valid("promise.kept", customer_id="c1", fraction=0.5)) == []
    assert _seal(head, valid("promise.kept", customer_id="c1", fraction=0.5)) == ["kept twice"]


def test_complaint_citing_an_unknown_promise_is_an_anomaly() -> None:
    event = valid("complaint.filed", customer_id="c1", promise_ids=["nope"])
    assert _seal(StreamHead("c1"), event) == ["complaint about unknown promise"]


def test_a_stored_head_judges_the_next_event_as_the_live_one_does() -> None:
    live = StreamHead("c1")
    _seal(live, valid(customer_id="c1"))
    _seal(live, valid("promise.kept", customer_id="c1", fraction=0.5))
    _seal(live, valid("complaint.filed", customer_id="c1", promise_ids=["p-1"]))
    stored = StreamHead.stored("c1", live.seq, live.hash, live.facts())
    assert (stored.seq, stored.hash, stored.version, stored.facts()) == (
        live.seq,
        live.hash,
        live.version,
        live.facts(),
    )
    for event in (valid("promise.kept", customer_id="c1"), valid("promise.kept", customer_id="c1")):
        assert _seal(stored, event) == _seal(live, event)


def test_a_new_head_starts_the_chain_at_genesis() -> None:
    head = StreamHead("c1")
    assert (head.seq, head.hash, head.version, head.kid, head.erased) == (
        0,
        GENESIS_HASH,
        1,
        None,
        False,
    )


def test_rows_written_directly_are_the_bytes_the_library_writes_and_reads_back() -> None:
    """The writer builds stored rows without the library's objects; the library must write the
    very same bytes for the same events, and read them back into the same aggregate."""
    event = valid(customer_id="c1")
    recorded_at = format_instant(AT)
    app = Application[object](env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.mapper.transcoder = OrjsonTranscoder()
    created = Relationship.Created(
        originator_id=relationship_id("c1"),
        originator_version=1,
        timestamp=AT,
        originator_topic=Relationship.TOPIC,
        customer_id="c1",
    )
    sealed = Relationship.EventSealed(
        originator_id=relationship_id("c1"),
        originator_version=2,
        timestamp=AT,
        event_id=event.event_id,
        body=orjson.loads(event.canonical),
        seq=1,
        prev_hash=GENESIS_HASH,
        hash="ab" * 32,
        recorded_at=recorded_at,
    )
    timestamp = stored_timestamp(AT)
    assert app.mapper.to_stored_event(created).state == created_state("c1", timestamp)
    direct = sealed_state(
        event.canonical, event.event_id, 1, GENESIS_HASH, "ab" * 32, recorded_at, timestamp
    )
    assert app.mapper.to_stored_event(sealed).state == direct
    replayed = None
    for stored in (app.mapper.to_stored_event(created), app.mapper.to_stored_event(sealed)):
        replayed = app.mapper.to_domain_event(stored).mutate(replayed)
    assert isinstance(replayed, Relationship)
    assert (replayed.head.seq, replayed.head.hash) == (1, "ab" * 32)
