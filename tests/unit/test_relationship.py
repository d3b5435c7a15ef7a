from __future__ import annotations

from ledger.chain import GENESIS_HASH, seal_hash
from ledger.contract import parse_event
from ledger.relationship import Relationship, SealOutcome
from tests.events import event_dict, raw, valid


def _sealed_events(relationship: Relationship) -> list[Relationship.EventSealed]:
    return [e for e in relationship.collect_events() if isinstance(e, Relationship.EventSealed)]


def test_sealing_numbers_events_and_links_their_hashes() -> None:
    rel = Relationship(customer_id="c1")
    first = rel.seal(valid(customer_id="c1"))
    second = rel.seal(valid("promise.kept", customer_id="c1"))
    assert (first.outcome, first.seq, second.seq) == (SealOutcome.SEALED, 1, 2)
    one, two = _sealed_events(rel)
    assert one.prev_hash == GENESIS_HASH
    assert two.prev_hash == one.hash
    assert two.hash == seal_hash(one.hash, two.body, 2, two.recorded_at)


def test_repeated_event_with_same_content_is_a_duplicate_not_sealed() -> None:
    rel = Relationship(customer_id="c1")
    event = event_dict(customer_id="c1")
    rel.seal(parse_event(raw(event), "a"))
    assert rel.seal(parse_event(raw(event), "b")).outcome is SealOutcome.DUPLICATE
    assert rel.last_seq == 1


def test_reused_event_id_with_other_content_is_a_conflict() -> None:
    rel = Relationship(customer_id="c1")
    event = event_dict(customer_id="c1")
    rel.seal(parse_event(raw(event), "a"))
    changed = {**event, "data": {**event["data"], "kind": "delivery"}}
    assert rel.seal(parse_event(raw(changed), "b")).outcome is SealOutcome.CONFLICT
    assert rel.last_seq == 1


def test_outcome_before_its_promise_is_sealed_as_an_anomaly() -> None:
    rel = Relationship(customer_id="c1")
    result = rel.seal(valid("promise.kept", customer_id="c1"))
    assert result.outcome is SealOutcome.SEALED
    assert result.anomalies == ["outcome before promise"]


def test_kept_twice_and_kept_after_broken_are_anomalies() -> None:
    rel = Relationship(customer_id="c1")
    rel.seal(valid(customer_id="c1"))
    assert rel.seal(valid("promise.kept", customer_id="c1")).anomalies == []
    assert rel.seal(valid("promise.kept", customer_id="c1")).anomalies == ["kept twice"]
    other = Relationship(customer_id="c2")
    other.seal(valid(customer_id="c2"))
    other.seal(valid("promise.broken", customer_id="c2"))
    assert other.seal(valid("promise.kept", customer_id="c2")).anomalies == ["kept after broken"]


def test_partial_keeps_are_not_kept_twice() -> None:
    rel = Relationship(customer_id="c1")
    rel.seal(valid(customer_id="c1"))
    assert rel.seal(valid("promise.kept", customer_id="c1", fraction=0.5)).anomalies == []
    assert rel.seal(valid("promise.kept", customer_id="c1", fraction=0.5)).anomalies == []
    assert rel.seal(valid("promise.kept", customer_id="c1", fraction=0.5)).anomalies == [
        "kept twice"
    ]


def test_complaint_citing_an_unknown_promise_is_an_anomaly() -> None:
    rel = Relationship(customer_id="c1")
    result = rel.seal(valid("complaint.filed", customer_id="c1", promise_ids=["nope"]))
    assert result.anomalies == ["complaint about unknown promise"]


def test_replaying_stored_events_rebuilds_the_same_state() -> None:
    rel = Relationship(customer_id="c1")
    event = event_dict(customer_id="c1")
    rel.seal(parse_event(raw(event), "a"))
    rel.seal(valid("promise.kept", customer_id="c1"))
    replayed = None
    for stored in rel.collect_events():
        replayed = stored.mutate(replayed)
    assert replayed is not None
    assert (replayed.last_seq, replayed.head_hash) == (rel.last_seq, rel.head_hash)
    assert replayed.seal(parse_event(raw(event), "again")).outcome is SealOutcome.DUPLICATE
