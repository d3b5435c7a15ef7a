"""``cxl verify`` catches history that was altered in the store itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from ledger.audit import verify_chains
from ledger.errors import ChainBrokenError, LedgerTamperedError
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import valid
from tests.integration.conftest import cxl_env, run_cxl


def _seal_history(path: Path) -> None:
    with LedgerStore(str(path)) as store:
        store.seal([valid(customer_id=f"c{i % 3}", promise_id=f"p{i}") for i in range(30)])


def _tamper(path: Path, customer_seq: int, change: dict) -> None:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT rowid, state FROM stored_events ORDER BY rowid").fetchall()
        for rowid, state in rows:
            decoded = orjson.loads(state)
            if decoded.get("seq") == customer_seq and decoded["body"]["customer_id"] == "c1":
                decoded["body"]["data"].update(change)
                conn.execute(
                    "UPDATE stored_events SET state=? WHERE rowid=?", (orjson.dumps(decoded), rowid)
                )
                return
    raise AssertionError("event to tamper with not found")


def test_an_untouched_ledger_verifies(tmp_path: Path) -> None:
    _seal_history(tmp_path / "l.sqlite")
    with LedgerStore(str(tmp_path / "l.sqlite")) as store:
        report = verify_chains(store)
    assert (report.events, report.customers) == (30, 3)


def test_an_edited_event_is_reported_with_customer_and_seq(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    _seal_history(path)
    _tamper(path, 4, {"made_by": "someone-else"})
    with LedgerStore(str(path), read_only=True) as store, pytest.raises(ChainBrokenError) as caught:
        verify_chains(store)
    assert (caught.value.customer_id, caught.value.seq, caught.value.what) == ("c1", 4, "hash")
    assert caught.value.expected != caught.value.found


def test_a_deleted_event_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    _seal_history(path)
    with sqlite3.connect(path) as conn:
        for rowid, state in conn.execute("SELECT rowid, state FROM stored_events").fetchall():
            decoded = orjson.loads(state)
            if decoded.get("seq") == 2 and decoded["body"]["customer_id"] == "c2":
                conn.execute("DELETE FROM stored_events WHERE rowid=?", (rowid,))
    # Events of several customers interleave in a batch (arrival order): the first row after the
    # gap is another customer's, whose Merkle leaf is one off.
    with (
        LedgerStore(str(path), read_only=True) as store,
        pytest.raises(LedgerTamperedError) as caught,
    ):
        verify_chains(store)
    assert "leaf 5 is not the one recomputed from the sealed events" in str(caught.value)


def test_cli_verify_prints_ok_or_the_first_break_with_exit_code(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    _seal_history(Path(settings.store_url))
    ok = run_cxl(["verify"], cxl_env(settings))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok 30 events, 3 customers")
    _tamper(Path(settings.store_url), 7, {"kind": "delivery"})
    broken = run_cxl(["verify"], cxl_env(settings))
    assert broken.returncode == 4
    assert "customer 'c1' seq 7: hash expected" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_verify_recomputes_chains_on_either_backend(store: LedgerStore) -> None:
    store.seal([valid(customer_id=f"c{i % 4}", promise_id=f"p{i}") for i in range(40)])
    store.seal([valid("promise.kept", customer_id="c1", promise_id="p1")])
    report = verify_chains(store)
    assert (report.events, report.customers) == (41, 4)
    assert len(report.head_digest) == 64


def test_the_index_and_heads_are_read_whole_in_pages_on_either_backend(
    store: LedgerStore,
) -> None:
    """``verify`` reads the event-id index and the stream heads by keyset pages in the table's
    own key order (an index walk, not a sort per page): every row once, whatever the customer
    ids' characters and the database's collation."""
    customers = ["a", "A", "a-b", "ab", "a b", "Ä", "z", "Z", "_", "0", "é", "e", "a.b", "ab-"]
    store.seal([valid(customer_id=c, promise_id=f"p{i}") for i, c in enumerate(customers * 3)])
    heads = [row[0] for page in store.stream_head_rows(page=3) for row in page]
    assert sorted(heads) == sorted(customers)
    ids = [row[0] for page in store.event_id_rows(page=4) for row in page]
    assert len(ids) == len(set(ids)) == len(customers) * 3
