from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ledger.canonical import format_instant
from ledger.chain import GENESIS_HASH, body_bytes, seal_hash
from ledger.contract import ValidEvent
from ledger.relationship import Relationship, SealResult
from tests.events import valid

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _open(customer_id: str) -> Relationship:
    return Relationship.open(customer_id, AT)


def _seal(rel: Relationship, event: ValidEvent) -> SealResult:
    return rel.seal(event.body, body_bytes(event.body), format_instant(AT), AT)


def _sealed_events(relationship: Relationship) -> list[Any]:
    return [e for e in relationship.collect_events() if isinstance(e, Relationship.EventSealed)]


def test_sealing_numbers_events_and_links_their_hashes() -> None:
    rel = _open("c1")
    first = _seal(rel, valid(customer_id="c1"))
    second = _seal(rel, valid("promise.kept", customer_id="c1"))
    assert (first.seq, second.seq) == (1, 2)
    one, two = _sealed_events(rel)
    assert one.prev_hash == GENESIS_HASH
    assert two.prev_hash == one.hash
    assert two.hash == seal_hash(one.hash, body_bytes(two.body), 2, two.recorded_at)


def test_every_stored_event_is_stamped_with_the_seal_instant() -> None:
    rel = _open("c1")
    _seal(rel, valid(customer_id="c1"))
    assert {e.timestamp for e in rel.collect_events()} == {AT}


def test_outcome_before_its_promise_is_sealed_as_an_anomaly() -> None:
    result = _seal(_open("c1"), valid("promise.kept", customer_id="c1"))
    assert result.anomalies == ["outcome before promise"]


def test_kept_twice_and_kept_after_broken_are_anomalies() -> None:
    rel = _open("c1")
    _seal(rel, valid(customer_id="c1"))
    assert _seal(rel, valid("promise.kept", customer_id="c1")).anomalies == []
    assert _seal(rel, valid("promise.kept", customer_id="c1")).anomalies == ["kept twice"]
    other = _open("c2")
    _seal(other, valid(customer_id="c2"))
    _seal(other, valid("promise.broken", customer_id="c2"))
    assert _seal(other, valid("promise.kept", customer_id="c2")).anomalies == ["kept after broken"]


def test_partial_keeps_are_not_kept_twice() -> None:
    rel = _open("c1")
    _seal(rel, valid(customer_id="c1"))
    assert _seal(rel, valid("promise.kept", customer_id="c1", fraction=0.5)).anomalies == []
    assert _seal(rel, valid("promise.kept", customer_id="c1", fraction=0.5)).anomalies == []
    assert _seal(rel, valid("promise.kept", customer_id="c1", fraction=0.5)).anomalies == [
        "kept twice"
    ]


def test_complaint_citing_an_unknown_promise_is_an_anomaly() -> None:
    result = _seal(_open("c1"), valid("complaint.filed", customer_id="c1", promise_ids=["nope"]))
    assert result.anomalies == ["complaint about unknown promise"]


def test_replaying_stored_events_rebuilds_the_same_state() -> None:
    rel = _open("c1")
    _seal(rel, valid(customer_id="c1"))
    _seal(rel, valid("promise.kept", customer_id="c1"))
    replayed = None
    for stored in rel.collect_events():
        replayed = stored.mutate(replayed)
    assert replayed is not None
    assert (replayed.last_seq, replayed.head_hash) == (rel.last_seq, rel.head_hash)
    assert _seal(replayed, valid("promise.kept", customer_id="c1")).anomalies == ["kept twice"]
