"""Every stored byte of a sealed event is inside its hash or checked by ``cxl verify``.

Each test edits one thing in a real SQLite store, the way someone with write access to the file
could, and ``verify`` must report it (one line, exit code 4 through the CLI).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from eventsourcing.persistence import Tracking

from ledger.audit import verify_chains
from ledger.canonical import canonical_json
from ledger.chain import seal_hash
from ledger.errors import CxlError, LedgerTamperedError
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import valid
from tests.integration.conftest import cxl_env, run_cxl


def _sealed_store(path: Path) -> None:
    with LedgerStore(str(path)) as store:
        store.seal(
            [
                valid(customer_id="c1", promise_id="p1", description="call back tomorrow"),
                valid("promise.kept", customer_id="c1", promise_id="p1", fraction=0.5),
                valid("complaint.filed", customer_id="c2", promise_ids=["p9"], text="late"),
            ]
        )
        store.seal(
            [valid("touchpoint.recorded", customer_id="c2", duration_s=12.5)],
            Tracking("kafka:t:0:0", 17),
            mark="topic-id fingerprint",
        )


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if value is None:
        return "x"
    if isinstance(value, list):
        return ["x"]
    return str(value) + "x"


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def _rows(path: Path) -> list[tuple[int, str, int, str, bytes]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
        ).fetchall()


def _edits(path: Path) -> Iterator[tuple[str, str, tuple[Any, ...]]]:
    """(description, SQL, parameters) of every single-field edit of every stored row."""
    for rowid, originator_id, version, topic, state in _rows(path):
        decoded = orjson.loads(state)
        for leaf, value in _leaves(decoded):
            edited = orjson.loads(state)
            _set(edited, leaf, _changed(value))
            yield (
                f"row {rowid} state {'.'.join(map(str, leaf))}",
                "UPDATE stored_events SET state = ? WHERE rowid = ?",
                (orjson.dumps(edited), rowid),
            )
        yield (
            f"row {rowid} state re-spaced",
            "UPDATE stored_events SET state = ? WHERE rowid = ?",
            (orjson.dumps(decoded, option=orjson.OPT_INDENT_2), rowid),
        )
        other = "0" * 32 if originator_id != "0" * 32 else "1" * 32
        yield (
            f"row {rowid} originator_id",
            "UPDATE stored_events SET originator_id = ? WHERE rowid = ?",
            (other, rowid),
        )
        yield (
            f"row {rowid} originator_version",
            "UPDATE stored_events SET originator_version = ? WHERE rowid = ?",
            (version + 100, rowid),
        )
        yield (
            f"row {rowid} topic",
            "UPDATE stored_events SET topic = ? WHERE rowid = ?",
            (topic + "x", rowid),
        )
        yield (f"row {rowid} deleted", "DELETE FROM stored_events WHERE rowid = ?", (rowid,))
    yield (
        "event-id row customer",
        "UPDATE cxl_event_ids SET customer_id = 'c2' WHERE customer_id = 'c1'",
        (),
    )
    yield ("event-id row digest", "UPDATE cxl_event_ids SET digest = '00' || digest", ())
    yield ("event-id row deleted", "DELETE FROM cxl_event_ids WHERE rowid = 1", ())
    yield (
        "event-id row added",
        "INSERT INTO cxl_event_ids VALUES ('9b2c0bbd-0000-4000-8000-000000000000', 'c1', 'ab')",
        (),
    )
    yield (
        "event-id row renamed",
        "UPDATE cxl_event_ids SET event_id = '9b2c0bbd-0000-4000-8000-000000000000' "
        "WHERE rowid = 1",
        (),
    )
    yield ("position moved", "UPDATE tracking SET notification_id = 5000", ())
    yield ("position added", "INSERT INTO tracking VALUES ('kafka:t:1:0', 3)", ())
    yield ("position deleted", "DELETE FROM tracking", ())
    yield ("mark moved", "UPDATE cxl_source_marks SET position = 16", ())
    yield ("mark added", "INSERT INTO cxl_source_marks VALUES ('kafka:t:1:0', 3, 'x y')", ())
    yield ("mark deleted", "DELETE FROM cxl_source_marks", ())
    yield (
        "position and mark moved together, mark renamed",
        "UPDATE cxl_source_marks SET name = 'kafka:t:0:1'",
        (),
    )


def test_verify_catches_an_edit_of_any_stored_field(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine.sqlite"
    _sealed_store(pristine)
    with LedgerStore(str(pristine)) as store:
        assert verify_chains(store).events == 4
    missed = []
    edits = list(_edits(pristine))
    assert len(edits) > 60  # every leaf of 6 rows, plus columns and the index
    for index, (what, statement, params) in enumerate(edits):
        copy = tmp_path / f"edit-{index}.sqlite"
        copy.write_bytes(pristine.read_bytes())
        with sqlite3.connect(copy) as conn:
            conn.execute(statement, params)
        try:
            with LedgerStore(str(copy)) as store:
                verify_chains(store)
        except CxlError as caught:
            assert caught.exit_code in (4, 1), what
            assert "\n" not in str(caught), what
        else:
            missed.append(what)
        copy.unlink()
    assert missed == []


def test_recorded_at_running_backwards_along_the_ledger_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    late = iter(["2026-06-01T00:00:00+00:00", "2026-05-01T00:00:00+00:00"])

    with LedgerStore(str(path), clock=lambda: datetime.fromisoformat(next(late))) as store:
        store.seal([valid(customer_id="a")])
        store.seal([valid(customer_id="b")])
        sealed = [e for page in store.read() for e in page]
    # The writer never goes back: the second seal took the store's last instant.
    assert [e.recorded_at for e in sealed] == ["2026-06-01T00:00:00.000000Z"] * 2


def test_a_cached_stream_sealed_by_a_clock_behind_the_store_takes_the_stores_last_instant(
    tmp_path: Path,
) -> None:
    # The second seal extends a cached stream: decided before the write lock at the clock's
    # (earlier) instant, then decided again under it, because the store's last seal is later.
    times = ["2026-06-01T00:00:00+00:00", "2026-05-01T00:00:00+00:00"]

    def clock() -> datetime:
        return datetime.fromisoformat(times.pop(0) if len(times) > 1 else times[0])

    with LedgerStore(str(tmp_path / "l.sqlite"), clock=clock) as store:
        store.seal([valid(customer_id="a", promise_id="p1")])
        store.seal([valid("promise.kept", customer_id="a", promise_id="p1")])
        sealed = [e for page in store.read() for e in page]
        assert verify_chains(store).events == 2
    assert [e.recorded_at for e in sealed] == ["2026-06-01T00:00:00.000000Z"] * 2
    assert [e.seq for e in sealed] == [1, 2]


def test_a_rehashed_chain_that_backdates_an_event_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    clock = iter(["2026-06-01T00:00:00+00:00", "2026-06-02T00:00:00+00:00"])
    with LedgerStore(str(path), clock=lambda: datetime.fromisoformat(next(clock))) as store:
        store.seal([valid(customer_id="a")])
        store.seal([valid(customer_id="b")])
    earlier = "2026-05-01T00:00:00.000000Z"
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT rowid, state FROM stored_events ORDER BY rowid").fetchall()
        for rowid, state in rows[2:]:  # b's creation row and its one sealed event
            decoded = orjson.loads(state)
            decoded["timestamp"]["_data_"] = datetime.fromisoformat(earlier).isoformat()
            if "body" in decoded:
                decoded["recorded_at"] = earlier
                decoded["hash"] = seal_hash(
                    decoded["prev_hash"], canonical_json(decoded["body"]), 1, earlier
                )
            conn.execute(
                "UPDATE stored_events SET state = ? WHERE rowid = ?", (orjson.dumps(decoded), rowid)
            )
    with LedgerStore(str(path), read_only=True) as store, pytest.raises(CxlError) as caught:
        verify_chains(store)
    assert "runs backwards" in str(caught.value)


def test_cli_verify_reports_a_deleted_creation_row_in_one_line(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    _sealed_store(Path(settings.store_url))
    with sqlite3.connect(settings.store_url) as conn:
        conn.execute("DELETE FROM stored_events WHERE originator_version = 1 AND rowid = 1")
    result = run_cxl(["verify"], cxl_env(settings))
    assert result.returncode == 4
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no creation row" in result.stderr


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE cxl_stream_heads SET seq = seq + 1",
        "UPDATE cxl_stream_heads SET facts = replace(facts, '\"erased\":false', '\"erased\":true')",
        "DELETE FROM cxl_stream_heads",
        "INSERT INTO cxl_stream_heads VALUES ('nobody', 1, 'x', '{}')",
    ],
    ids=["seq", "facts", "deleted", "added"],
)
def test_verify_catches_any_edit_of_the_stored_stream_heads(tmp_path: Path, edit: str) -> None:
    """A writer seals a customer's next event from their stored head, so every head row is
    accounted for: it must be what the customer's sealed events fold to."""
    path = tmp_path / "l.sqlite"
    _sealed_store(path)
    with sqlite3.connect(path) as conn:
        conn.execute(edit)
    with (
        LedgerStore(str(path), read_only=True) as store,
        pytest.raises(LedgerTamperedError) as caught,
    ):
        verify_chains(store)
    assert "stream heads" in str(caught.value)


def test_a_writer_refuses_a_store_whose_event_id_index_lost_rows(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    event = valid(customer_id="c1", promise_id="p1")
    with LedgerStore(str(path)) as store:
        store.seal([event])
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM cxl_event_ids")
    with pytest.raises(LedgerTamperedError, match="index lacks 1 of the last 1 sealed events"):
        LedgerStore(str(path))
    with LedgerStore(str(path), read_only=True) as store:
        assert sum(len(page) for page in store.read()) == 1


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (
            "UPDATE cxl_tree_leaves SET hash = 'ab' WHERE leaf = (SELECT MAX(leaf) FROM "
            "cxl_tree_leaves)",
            "last leaf is not the newest sealed event",
        ),
        ("DELETE FROM stored_events WHERE originator_version > 1", "for no sealed event"),
    ],
    ids=["last leaf edited", "events deleted under the tree"],
)
def test_a_writer_refuses_a_store_whose_tree_does_not_end_at_its_newest_event(
    tmp_path: Path, edit: str, reason: str
) -> None:
    path = tmp_path / "l.sqlite"
    _sealed_store(path)
    with sqlite3.connect(path) as conn:
        conn.execute(edit)
    with pytest.raises(LedgerTamperedError, match=reason):
        LedgerStore(str(path))


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE cxl_stream_heads SET hash = replace(hash, substr(hash, 1, 1), 'x') "
        "WHERE customer_id = 'c1'",
        "UPDATE cxl_stream_heads SET seq = seq - 1 WHERE customer_id = 'c1'",
        "DELETE FROM cxl_stream_heads WHERE customer_id = 'c1'",
    ],
    ids=["hash", "seq", "deleted"],
)
def test_a_writer_seals_nothing_onto_an_edited_stream_head(tmp_path: Path, edit: str) -> None:
    """The head row is outside every hash: a writer checks it against the stream's last row
    before sealing onto it, rather than break the chain for good."""
    path = tmp_path / "l.sqlite"
    _sealed_store(path)
    with sqlite3.connect(path) as conn:
        conn.execute(edit)
    with LedgerStore(str(path)) as store, pytest.raises(LedgerTamperedError, match="c1"):
        store.seal([valid("promise.kept", customer_id="c1", promise_id="p1")])
    with LedgerStore(str(path)) as store:  # other customers seal on
        assert store.seal([valid("touchpoint.recorded", customer_id="c2")]).sealed == 1
