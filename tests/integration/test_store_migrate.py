"""``cxl store migrate``: a store written before stream heads existed is refused by writers until
migrated, then continues every chain exactly where it was, and verifies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ledger.audit import verify_chains
from ledger.errors import StoreError
from ledger.migrations import migrate
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import valid
from tests.integration.conftest import cxl_env, run_cxl


def _as_version_1(path: Path) -> None:
    """What a store sealed before schema version 2 holds: no stream heads, no version."""
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM cxl_stream_heads")
        conn.execute("DELETE FROM cxl_ledger WHERE name = 'schema_version'")


def test_an_unmigrated_store_is_refused_then_migrated_and_its_chains_continue(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path)
    path = Path(settings.store_url)
    with LedgerStore(str(path)) as store:
        store.seal([valid(customer_id="c1", promise_id="p1"), valid(customer_id="c2")])
        store.seal([valid("promise.kept", customer_id="c1", promise_id="p1")])
        before = {c: store.stream(c)[-1].hash for c in ("c1", "c2")}
    _as_version_1(path)

    with pytest.raises(StoreError, match=r"schema version 1.*cxl store migrate"):
        LedgerStore(str(path))
    (tmp_path / "empty.jsonl").write_text("")
    refused = run_cxl(["ingest", str(tmp_path / "empty.jsonl")], cxl_env(settings))
    assert refused.returncode != 0 and "cxl store migrate" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    migrated = run_cxl(["store", "migrate"], cxl_env(settings))
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 2: stream heads" in migrated.stdout
    again = run_cxl(["store", "migrate"], cxl_env(settings))
    assert again.returncode == 0 and "nothing to migrate" in again.stdout

    with LedgerStore(str(path)) as store:
        report = store.seal([valid("promise.kept", customer_id="c1", promise_id="p1")])
        assert report.anomalies == {"kept twice": 1}  # the facts came back with the heads
        c1 = store.stream("c1")
        assert (c1[-1].seq, c1[-1].prev_hash) == (3, before["c1"])
        assert verify_chains(store).events == 4


def test_migrate_names_a_missing_store_and_creates_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    result = run_cxl(["store", "migrate"], cxl_env(settings))
    assert result.returncode != 0
    assert "no ledger store" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not Path(settings.store_url).exists()


def _drop_heads(store_url: str) -> None:
    """Forget the stored heads and the schema version, as a store of version 1 would be."""
    if "://" not in store_url:
        _as_version_1(Path(store_url))
        return
    import psycopg

    url, schema = store_url.split("?schema=")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DELETE FROM "{schema}".cxl_stream_heads')
        conn.execute(f"DELETE FROM \"{schema}\".cxl_ledger WHERE name = 'schema_version'")


def test_migration_folds_interleaved_streams_across_pages_to_the_heads_sealing_stored(
    store_url: str,
) -> None:
    """Streams are folded one at a time in stream order (a keyset walk of the events table's key,
    pages of 5,000 rows): a ledger whose customers' events are interleaved, larger than a page
    and a write chunk, migrates to exactly the heads its sealing had stored."""
    customers = [f"cust-{i:05d}" for i in range(5_200)]
    with LedgerStore(store_url) as store:
        for round_ in range(2):
            store.seal([valid(customer_id=c, promise_id=f"p{round_}") for c in customers[round_:]])
        before = sorted(row for page in store.stream_head_rows() for row in page)
    assert len(before) == len(customers)
    _drop_heads(store_url)
    with pytest.raises(StoreError, match="cxl store migrate"):
        LedgerStore(store_url)
    with LedgerStore(store_url, migrating=True) as store:
        assert migrate(store) == ["2: stream heads (cxl_stream_heads)"]
        after = sorted(row for page in store.stream_head_rows() for row in page)
    assert after == before
    with LedgerStore(store_url) as store:
        assert verify_chains(store).customers == len(customers)


@pytest.mark.parametrize("recorded", ["abc", "0", "-5", "２"])
def test_a_schema_version_no_cx_ledger_writes_is_one_line_naming_the_table(
    tmp_path: Path, recorded: str
) -> None:
    """Writers (``cxl ingest``) and ``cxl store migrate`` refuse it as an altered ledger (exit 4,
    as ``verify`` does), never as an internal error."""
    settings = Settings(home=tmp_path)
    path = Path(settings.store_url)
    with LedgerStore(str(path)) as store:
        store.seal([valid(customer_id="c1")])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE cxl_ledger SET value = ? WHERE name = 'schema_version'", [recorded])
    (tmp_path / "empty.jsonl").write_text("")
    for command in (["store", "migrate"], ["verify"], ["ingest", str(tmp_path / "empty.jsonl")]):
        result = run_cxl(command, cxl_env(settings))
        assert result.returncode == 4, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "cxl_ledger" in result.stderr
