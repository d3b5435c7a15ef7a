"""``cxl store migrate``: a store written before stream heads existed is refused by writers until
migrated, then continues every chain exactly where it was, and verifies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ledger.audit import verify_chains
from ledger.errors import StoreError
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
