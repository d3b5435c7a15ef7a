"""One behaviour suite for the ledger store, run against a SQLite file and the PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.persistence import Tracking

from ledger.contract import parse_event
from ledger.errors import StoreError
from ledger.store import LedgerStore, SealReport
from tests.events import event_dict, raw, valid


def test_a_batch_for_many_customers_is_sealed_with_its_position(store: LedgerStore) -> None:
    events = [valid(customer_id=f"c{i % 7}", promise_id=f"p{i}") for i in range(50)]
    report = store.seal(events, Tracking("kafka:t:0:0", 49))
    assert (report.sealed, report.duplicates) == (50, 0)
    assert store.position("kafka:t:0:0") == 49
    sealed = [e for page in store.read() for e in page]
    assert sorted(e.event_id for e in sealed) == sorted(e.event_id for e in events)
    assert [e.position for e in sealed] == sorted({e.position for e in sealed})
    for customer in {e.customer_id for e in events}:
        arrived = [e.event_id for e in events if e.customer_id == customer]
        assert [e.event_id for e in sealed if e.customer_id == customer] == arrived
    assert [e.seq for e in store.stream("c3")] == list(range(1, 8))


def test_offset_zero_is_a_recorded_position(store: LedgerStore) -> None:
    assert store.position("kafka:t:1:0") is None
    store.seal([valid()], Tracking("kafka:t:1:0", 0))
    assert store.position("kafka:t:1:0") == 0


def test_redelivered_batch_seals_nothing(store: LedgerStore) -> None:
    events = [valid(customer_id="c1", promise_id=f"p{i}") for i in range(5)]
    store.seal(events, Tracking("kafka:t:0:0", 4))
    again = store.seal(events, Tracking("kafka:t:0:0", 4))
    assert again.already_done and again.sealed == 0
    assert store.max_position() > 0
    assert len(store.stream("c1")) == 5


def test_duplicates_are_detected_after_the_writer_restarts(store_url: str) -> None:
    event = event_dict(customer_id="c9")
    with LedgerStore(store_url) as first:
        first.seal([parse_event(raw(event), "a")])
    with LedgerStore(store_url) as second:
        report = second.seal(
            [parse_event(raw(event), "b"), valid("promise.kept", customer_id="c9")]
        )
        assert (report.sealed, report.duplicates) == (1, 1)
        assert [e.seq for e in second.stream("c9")] == [1, 2]


def test_reused_event_id_with_other_content_is_refused_not_sealed(store: LedgerStore) -> None:
    event = event_dict(customer_id="c1")
    store.seal([parse_event(raw(event), "a")])
    changed = {**event, "data": {**event["data"], "made_by": "sales"}}
    report = store.seal([parse_event(raw(changed), "b")])
    assert report.sealed == 0
    assert [r.reason for r in report.rejected] == ["event_id reused with different content"]
    assert len(store.stream("c1")) == 1


def test_a_batch_of_only_rejects_still_records_its_position(store: LedgerStore) -> None:
    store.record_position(Tracking("kafka:t:2:0", 17))
    assert store.position("kafka:t:2:0") == 17


def test_a_failure_before_commit_writes_nothing_and_forgets_nothing(store: LedgerStore) -> None:
    events = [valid(customer_id="c1", promise_id="p1")]

    def fail(_: SealReport) -> None:
        raise RuntimeError("dead-letter topic unreachable")

    with pytest.raises(RuntimeError):
        store.seal(events, Tracking("kafka:t:0:0", 0), before_commit=fail)
    assert store.position("kafka:t:0:0") is None
    assert store.stream("c1") == []
    report = store.seal(events, Tracking("kafka:t:0:0", 0))
    assert report.sealed == 1
    assert [e.seq for e in store.stream("c1")] == [1]


def test_a_batch_that_fails_halfway_through_its_chain_leaves_no_head_advanced(
    store: LedgerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ledger.store

    store.seal([valid(customer_id="a", promise_id="p1"), valid(customer_id="b", promise_id="p2")])
    real, calls = ledger.store.seal_hash, []

    def fails_on_the_second(*args: object) -> str:
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("halfway")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger.store, "seal_hash", fails_on_the_second)
    with pytest.raises(RuntimeError):
        store.seal(
            [
                valid("promise.kept", customer_id="a", promise_id="p1"),
                valid("promise.kept", customer_id="b", promise_id="p2"),
            ]
        )
    monkeypatch.undo()
    # a's head was advanced in memory before the failure: it must not be sealed onto.
    store.seal([valid("touchpoint.recorded", customer_id="a")])
    assert [e.seq for e in store.stream("a")] == [1, 2]
    from ledger.audit import verify_chains

    assert verify_chains(store).events == 3


def test_out_of_order_facts_are_sealed_and_counted_as_anomalies(store: LedgerStore) -> None:
    report = store.seal([valid("promise.kept", customer_id="c1"), valid(customer_id="c1")])
    assert report.sealed == 2
    assert report.anomalies == {"outcome before promise": 1}


def test_a_writer_that_lost_a_race_rereads_the_stream_and_retries(store_url: str) -> None:
    with LedgerStore(store_url) as first, LedgerStore(store_url) as second:
        first.seal([valid(customer_id="c1", promise_id="a")])  # first caches c1 at seq 1
        second.seal(
            [valid(customer_id="c1", promise_id="b")]
        )  # second appends seq 2 behind its back
        report = first.seal([valid(customer_id="c1", promise_id="c")])
        assert report.sealed == 1
        assert [e.seq for e in first.stream("c1")] == [1, 2, 3]
        from ledger.audit import verify_chains

        assert verify_chains(first).events == 3


def test_an_event_sealed_by_another_writer_after_this_one_decided_is_a_duplicate(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``first`` decides its batch before taking the write lock (its head of c1 is cached); the
    # other writer seals the same event in between. The insert's key refuses the decision, and
    # the batch decided again from the store finds the event sealed: a duplicate, sealed once.
    late = valid("promise.kept", customer_id="c1", promise_id="a")
    with LedgerStore(store_url) as first, LedgerStore(store_url) as second:
        first.seal([valid(customer_id="c1", promise_id="a")])
        guess = first.recorder.known_events

        def guess_then_another_writer_seals(event_ids: list[str]) -> object:
            known = guess(event_ids)
            second.seal([late])
            return known

        monkeypatch.setattr(first.recorder, "known_events", guess_then_another_writer_seals)
        report = first.seal([late])
        assert (report.sealed, report.duplicates) == (0, 1)
        assert [e.seq for e in first.stream("c1")] == [1, 2]
        from ledger.audit import verify_chains

        assert verify_chains(first).events == 2


def test_an_event_id_reused_under_another_customer_is_a_conflict(store_url: str) -> None:
    event = event_dict(customer_id="alice")
    elsewhere = {**event, "customer_id": "bob"}
    with LedgerStore(store_url) as first:
        first.seal([parse_event(raw(event), "a")])
    with LedgerStore(store_url) as second:  # another writer, nothing cached
        report = second.seal([parse_event(raw(elsewhere), "b")])
        assert report.sealed == 0
        assert [r.reason for r in report.rejected] == ["event_id reused with different content"]
        assert second.stream("bob") == []
        assert [e.event_id for page in second.read() for e in page] == [event["event_id"]]


def test_an_event_id_repeated_within_one_batch_is_sealed_once(store: LedgerStore) -> None:
    event = event_dict(customer_id="alice")
    elsewhere = {**event, "customer_id": "bob"}
    report = store.seal(
        [
            parse_event(raw(event), "a"),
            parse_event(raw(event), "b"),
            parse_event(raw(elsewhere), "c"),
        ]
    )
    assert (report.sealed, report.duplicates, len(report.rejected)) == (1, 1, 1)


def test_library_settings_in_the_environment_change_nothing(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXL_COMPRESSOR_TOPIC", "eventsourcing.compressor:ZlibCompressor")
    monkeypatch.setenv("COMPRESSOR_TOPIC", "eventsourcing.compressor:ZlibCompressor")
    monkeypatch.setenv("CXL_PERSISTENCE_MODULE", "eventsourcing.popo")
    with LedgerStore(store_url) as store:
        store.seal([valid(customer_id="c1")])
        rows = [row for page in store.rows() for row in page]
    assert len(rows) == 2
    assert all(row.state.startswith(b"{") for row in rows)


def test_a_store_written_compressed_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate

    path = tmp_path / "compressed.sqlite"
    foreign = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path),
            "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
        }
    )
    foreign.save(Aggregate())
    foreign.close()
    with pytest.raises(StoreError) as caught:
        LedgerStore(str(path))
    assert "not plain JSON" in str(caught.value)
