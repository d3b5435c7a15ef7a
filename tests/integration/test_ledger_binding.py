"""Projections are bound to their ledger: a replaced or truncated store is rebuilt from, never skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from ledger.contract import parse_event
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.ledger_binding import first_event_hash, recorded_mark
from projections.live import open_caught_up
from projections.trust_gap import trust_gap
from tests.events import raw
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.projection_helpers import at, broken, kept, promise

AS_OF = at("2026-06-01T00:00:00Z")


def _seal(path: Path, events: list[dict]) -> None:
    with LedgerStore(str(path)) as store:
        report = store.seal([parse_event(raw(e), "test") for e in events])
        assert not report.rejected


def _promises(count: int, *, made_by: str) -> list[dict]:
    return [
        promise(f"p{i}", "2026-03-01T09:00:00Z", "2026-03-10T12:00:00Z", made_by=made_by)
        for i in range(count)
    ]


class LiveHome:
    """A store path and live projections under one directory, opened as the CLI opens them."""

    def __init__(self, root: Path) -> None:
        self.store_path = root / "ledger.sqlite"
        self.projections = root / "projections.duckdb"
        self.rebuilds: list[str] = []

    def gap(self, by: list[str] | None = None) -> list[dict]:
        with LedgerStore(str(self.store_path)) as store:
            con = open_caught_up(self.projections, store, on_rebuild=self.rebuilds.append)
        try:
            return trust_gap(con, AS_OF, by or ["made_by"])
        finally:
            con.close()

    def replace_store(self, other: Path) -> None:
        for suffix in ("-wal", "-shm"):
            Path(f"{self.store_path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(other, self.store_path)

    def sealed_positions(self) -> list[int]:
        with LedgerStore(str(self.store_path)) as store:
            return [e.position for page in store.read(1) for e in page]

    def projected_positions(self) -> list[int]:
        con = duckdb.connect(str(self.projections), read_only=True)
        try:
            return [
                r[0]
                for r in con.execute("SELECT position FROM ledger_events ORDER BY 1").fetchall()
            ]
        finally:
            con.close()


def test_a_store_replaced_by_another_of_the_same_length_is_rebuilt_from(tmp_path: Path) -> None:
    home = LiveHome(tmp_path)
    _seal(home.store_path, _promises(3, made_by="billing"))
    assert [r["made_by"] for r in home.gap()] == ["billing"]
    _seal(tmp_path / "other.sqlite", _promises(3, made_by="support"))

    home.replace_store(tmp_path / "other.sqlite")
    rows = home.gap()

    assert [(r["made_by"], r["made"]) for r in rows] == [("support", 3.0)]
    assert len(home.rebuilds) == 1 and "first event" in home.rebuilds[0]
    assert home.projected_positions() == home.sealed_positions()


def test_a_store_replaced_by_a_longer_one_is_rebuilt_from_with_every_event(tmp_path: Path) -> None:
    home = LiveHome(tmp_path)
    _seal(home.store_path, _promises(2, made_by="billing"))
    home.gap()
    longer = [*_promises(5, made_by="support"), kept("p0", "2026-03-02T00:00:00Z")]
    _seal(tmp_path / "other.sqlite", longer)

    home.replace_store(tmp_path / "other.sqlite")
    rows = home.gap()

    assert [(r["made_by"], r["made"], r["kept_on_time"]) for r in rows] == [("support", 5.0, 1.0)]
    assert len(home.rebuilds) == 1
    assert home.projected_positions() == home.sealed_positions()


def test_a_truncated_store_is_rebuilt_from(tmp_path: Path) -> None:
    history = _promises(4, made_by="billing")
    home = LiveHome(tmp_path)
    _seal(home.store_path, history[:2])
    shutil.copyfile(home.store_path, tmp_path / "shorter.sqlite")  # the same first events, fewer
    _seal(home.store_path, history[2:])
    assert home.gap()[0]["made"] == 4.0

    home.replace_store(tmp_path / "shorter.sqlite")
    rows = home.gap()

    assert rows[0]["made"] == 2.0
    assert len(home.rebuilds) == 1 and "no event at position" in home.rebuilds[0]
    assert home.projected_positions() == home.sealed_positions()


def test_a_store_that_shares_its_first_event_but_not_its_tail_is_rebuilt_from(
    tmp_path: Path,
) -> None:
    first = _promises(1, made_by="billing")
    home = LiveHome(tmp_path)
    _seal(home.store_path, first)
    shutil.copyfile(home.store_path, tmp_path / "fork.sqlite")
    _seal(home.store_path, [broken("p0", "2026-03-05T00:00:00Z")])
    assert home.gap()[0]["broken"] == 1.0
    _seal(tmp_path / "fork.sqlite", [kept("p0", "2026-03-05T00:00:00Z")])

    home.replace_store(tmp_path / "fork.sqlite")
    rows = home.gap()

    assert (rows[0]["broken"], rows[0]["kept_on_time"]) == (0.0, 1.0)
    assert len(home.rebuilds) == 1 and "is not the one projected" in home.rebuilds[0]


def test_normal_catch_up_stays_incremental(tmp_path: Path) -> None:
    home = LiveHome(tmp_path)
    _seal(home.store_path, _promises(3, made_by="billing"))
    home.gap()
    _seal(home.store_path, [kept("p1", "2026-03-02T00:00:00Z")])
    rows = home.gap()
    home.gap()

    assert home.rebuilds == []
    assert rows[0]["kept_on_time"] == 1.0
    assert home.projected_positions() == home.sealed_positions()


def test_the_mark_names_the_ledger_and_the_hash_at_the_last_position(tmp_path: Path) -> None:
    home = LiveHome(tmp_path)
    _seal(home.store_path, _promises(3, made_by="billing"))
    home.gap()
    with LedgerStore(str(home.store_path)) as store:
        last = [e for page in store.read(1) for e in page][-1]
        first = first_event_hash(store)
    con = duckdb.connect(str(home.projections), read_only=True)
    try:
        mark = recorded_mark(con)
    finally:
        con.close()
    assert (mark.position, mark.position_hash, mark.first_hash) == (last.position, last.hash, first)


def test_projections_without_a_mark_are_rebuilt_once(tmp_path: Path) -> None:
    home = LiveHome(tmp_path)
    _seal(home.store_path, _promises(2, made_by="billing"))
    home.gap()
    con = duckdb.connect(str(home.projections))
    con.execute("UPDATE projection_position SET position_hash = NULL, first_hash = NULL")
    con.close()

    assert home.gap()[0]["made"] == 2.0
    home.gap()

    assert len(home.rebuilds) == 1 and "older version" in home.rebuilds[0]


def test_the_cli_says_in_one_line_why_it_rebuilds(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    home = LiveHome(settings.home)
    _seal(home.store_path, _promises(2, made_by="billing"))
    env = cxl_env(settings)
    assert run_cxl(["gap"], env).stderr == ""
    _seal(tmp_path / "other.sqlite", _promises(1, made_by="support"))
    home.replace_store(tmp_path / "other.sqlite")

    result = run_cxl(["gap", "--by", "made_by", "--format", "csv"], env)

    assert result.returncode == 0
    assert result.stderr.startswith("rebuilding the projections from the ledger: ")
    assert len(result.stderr.splitlines()) == 1
    assert "support" in result.stdout and "billing" not in result.stdout
