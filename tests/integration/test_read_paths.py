"""Read paths cannot write: `cxl sql` only reads its file; outputs never land on the ledger's files."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import duckdb
import psycopg
import pytest

from ledger.contract import parse_event
from ledger.errors import ConfigError, StoreError
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections import follower, live
from projections.errors import ProjectionsError, QueryError
from projections.export import export_all
from projections.live import open_caught_up, replay
from projections.report import write_report
from projections.sql import run_read_only
from projections.targets import protected_files
from tests.events import raw
from tests.integration.conftest import POSTGRES_ADMIN, cxl_env, run_cxl
from tests.integration.projection_helpers import at, kept, promise

HISTORY = [
    promise("a", "2026-03-01T09:00:00Z", "2026-03-10T12:00:00Z"),
    promise("b", "2026-03-01T09:00:00Z", "2026-03-10T12:00:00Z", made_by="support"),
    kept("a", "2026-03-02T00:00:00Z"),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    """A CXL_HOME with a sealed history, its live projections built, and a replay file beside it."""
    settings = Settings(home=tmp_path / "home")
    with LedgerStore(settings.store_url) as store:
        store.seal([parse_event(raw(e), "t") for e in HISTORY])
        open_caught_up(settings.projections_path, store).close()
        replay(store, at("2026-03-05T00:00:00Z"), tmp_path / "home" / "audit.duckdb")
    return settings


ATTEMPTS = [
    "COPY promises TO '{tmp}/x.csv'",
    "COPY (SELECT 1) TO '{store}'",
    "COPY (SELECT 1) TO '{tmp}/x.parquet' (FORMAT parquet)",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('{store}')",
    "SELECT * FROM glob('{tmp}/*')",
    "ATTACH '{tmp}/other.duckdb' AS other",
    "ATTACH '{store}' AS ledger (TYPE sqlite)",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 1",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET temp_directory",
    "PRAGMA enable_profiling",
    "PRAGMA threads = 1",
    "CREATE TABLE stolen AS SELECT 1 AS x",
    "INSERT INTO promises SELECT * FROM promises",
    "DELETE FROM promises",
    "DROP VIEW promise_status",
    "EXPORT DATABASE '{tmp}/dump'",
    "CHECKPOINT; COPY promises TO '{tmp}/y.csv'",
    "PRAGMA version",
    "PRAGMA database_list",
    "CALL pragma_version()",
    "CHECKPOINT",
    "VACUUM",
    "ANALYZE",
    "BEGIN",
    "CREATE TEMP TABLE t AS SELECT 1 AS x",
    "PREPARE p AS SELECT 1",
    "SELECT 1; SET threads = 1",
]


@pytest.mark.parametrize("database", ["projections.duckdb", "audit.duckdb"])
def test_sql_refuses_every_attempt_to_write_read_other_files_or_change_settings(
    home: Settings, database: str
) -> None:
    root = home.home.parent
    before = _snapshot(root)
    for attempt in ATTEMPTS:
        query = attempt.format(tmp=root, store=home.store_url)
        with pytest.raises(QueryError) as refused:
            run_read_only(home.home / database, query)
        assert refused.value.exit_code == 2, query
        assert "\n" not in str(refused.value), query
    assert _snapshot(root) == before


def test_sql_still_answers_selects_against_tables_and_views(home: Settings) -> None:
    rows = run_read_only(
        home.projections_path, "SELECT made_by, trust_gap FROM trust_gap_by_team ORDER BY 1"
    )
    assert rows == [
        {"made_by": "billing", "trust_gap": 0.0},
        {"made_by": "support", "trust_gap": 1.0},
    ]


def test_cli_sql_refusals_are_one_line_and_leave_every_file_unchanged(home: Settings) -> None:
    env = cxl_env(home)
    root = home.home.parent
    before = _snapshot(root)
    for args in (
        ["sql", f"COPY (SELECT 1) TO '{home.store_url}'"],
        ["sql", "SELECT * FROM read_csv('/etc/passwd')"],
        ["sql", "--db", str(home.home / "audit.duckdb"), f"COPY promises TO '{root}/x.csv'"],
    ):
        result = run_cxl(args, env)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    ok = run_cxl(["sql", "SELECT count(*) AS n FROM promises", "--format", "csv"], env)
    assert (ok.returncode, ok.stdout) == (0, "n\n2\n")
    assert _snapshot(root) == before


def test_sql_on_a_file_that_is_not_duckdb_is_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.duckdb"
    bogus.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ProjectionsError, match=r"bogus\.duckdb"):
        run_read_only(bogus, "SELECT 1")


def _refusals(settings: Settings, root: Path) -> list[list[str]]:
    store, projections = Path(settings.store_url), settings.projections_path
    link = root / "innocent.duckdb"
    link.symlink_to(store)
    dotted = root / "elsewhere" / ".." / "home" / projections.name
    (root / "elsewhere").mkdir()
    as_of = ["--as-of", "2026-04-01T00:00:00Z"]
    return [
        ["replay", *as_of, "--to", str(store), "--force"],
        ["replay", *as_of, "--to", str(projections), "--force"],
        ["replay", *as_of, "--to", str(link), "--force"],
        ["replay", *as_of, "--to", str(dotted), "--force"],
        ["replay", *as_of, "--to", f"{store}-wal", "--force"],
        ["report", "--to", str(store)],
        ["report", "--to", str(dotted)],
        ["report", "--to", str(link)],
    ]


def test_replay_and_report_refuse_the_store_and_the_live_projections(home: Settings) -> None:
    root = home.home.parent
    env = cxl_env(home)
    refusals = _refusals(home, root)
    before = _snapshot(home.home)
    for args in refusals:
        result = run_cxl(args, env)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert args[args.index("--to") + 1] in result.stderr
    assert _snapshot(home.home) == before


def test_export_refuses_a_directory_where_an_output_would_be_the_store(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", store=str(tmp_path / "out" / "promises.csv"))
    with LedgerStore(settings.store_url) as store:
        store.seal([parse_event(raw(e), "t") for e in HISTORY])
    before = _snapshot(tmp_path / "out")
    result = run_cxl(
        ["export", "--format", "csv", "--to", str(tmp_path / "out")], cxl_env(settings)
    )
    assert result.returncode == 2 and "promises.csv" in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert _snapshot(tmp_path / "out") == before


def test_the_ledger_store_path_is_protected_even_when_not_passed(home: Settings) -> None:
    with LedgerStore(home.store_url) as store, pytest.raises(ConfigError):
        replay(store, at("2026-04-01T00:00:00Z"), Path(home.store_url), overwrite=True)
    assert Path(home.store_url).read_bytes().startswith(b"SQLite format 3")


def test_a_replay_that_fails_mid_build_leaves_the_previous_file_intact(
    home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = home.home / "audit.duckdb"
    before = target.read_bytes()

    def power_cut(*_: object, **__: object) -> int:
        raise RuntimeError("power cut")

    monkeypatch.setattr(live, "catch_up", power_cut)
    with LedgerStore(home.store_url) as store, pytest.raises(RuntimeError):
        replay(store, at("2026-04-01T00:00:00Z"), target, overwrite=True)
    assert target.read_bytes() == before
    assert sorted(p.name for p in home.home.iterdir()) == [
        "audit.duckdb",
        "ledger.sqlite",
        "projections.duckdb",
    ]
    monkeypatch.undo()
    with LedgerStore(home.store_url) as store:
        assert replay(store, at("2026-04-01T00:00:00Z"), target, overwrite=True) == 3
    con = duckdb.connect(str(target), read_only=True)
    assert con.execute("SELECT count(*) FROM promise_events").fetchone() == (3,)
    con.close()


def test_a_replay_that_fails_in_a_batch_leaves_the_previous_file_intact(
    home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = home.home / "audit.duckdb"
    before = target.read_bytes()

    def crash(*_: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(follower, "_refold", crash)
    with LedgerStore(home.store_url) as store, pytest.raises(RuntimeError):
        replay(store, at("2026-04-01T00:00:00Z"), target, overwrite=True)
    assert target.read_bytes() == before
    assert not [p for p in home.home.iterdir() if p.name.startswith(".")]


def test_a_report_or_export_that_fails_leaves_previous_files_intact(
    home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, exported = tmp_path / "report.html", tmp_path / "exported"
    report.write_text("previous report")
    exported.mkdir()
    (exported / "promises.csv").write_text("previous export")
    with LedgerStore(home.store_url) as store:
        con = open_caught_up(home.projections_path, store)
    con.execute("DROP VIEW anomalies")  # the last output: the earlier ones succeed, this one fails
    try:
        with pytest.raises(ProjectionsError, match=r"anomalies\.csv"):
            export_all(con, exported, "csv")
        assert (exported / "promises.csv").read_text().startswith("customer_id")
        assert not (exported / "anomalies.csv").exists()
        assert not [p for p in exported.iterdir() if p.name.startswith(".")]

        def broken_chart(*_: object) -> tuple[str, list[dict[str, object]]]:
            raise RuntimeError("matplotlib fell over")

        monkeypatch.setattr("projections.report._contact_pressure", broken_chart)
        with pytest.raises(RuntimeError):
            write_report(con, at("2026-04-01T00:00:00Z"), report)
        assert report.read_text() == "previous report"
    finally:
        con.close()


def test_outputs_in_a_missing_directory_fail_with_one_line_naming_it(home: Settings) -> None:
    env = cxl_env(home)
    missing = home.home.parent / "missing" / "deeper"
    for args in (
        ["report", "--to", str(missing / "r.html")],
        ["replay", "--as-of", "2026-04-01T00:00:00Z", "--to", str(missing / "a.duckdb")],
        ["export", "--to", str(missing / "out")],
    ):
        result = run_cxl(args, env)
        assert result.returncode == 1, result.stderr
        assert len(result.stderr.splitlines()) == 1 and str(missing.parent) in result.stderr


def test_protected_files_cover_sqlite_and_duckdb_companions(tmp_path: Path) -> None:
    files = protected_files(str(tmp_path / "l.sqlite"), tmp_path / "p.duckdb")
    assert tmp_path / "l.sqlite-wal" in files and tmp_path / "p.duckdb.wal" in files
    assert protected_files("postgresql://u@h/db", tmp_path / "p.duckdb") == [
        Path(f"{tmp_path / 'p.duckdb'}{s}") for s in ("", "-wal", "-shm", "-journal", ".wal")
    ]
    assert os.sep in str(files[0])


def test_reading_commands_create_no_ledger_and_alter_no_other_database(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE unrelated (x)")
    before = _snapshot(tmp_path)
    for store in (str(tmp_path / "missing.sqlite"), str(other)):
        with pytest.raises(StoreError, match="sealed there"):
            LedgerStore(store, read_only=True)
    assert _snapshot(tmp_path) == before


def test_reading_a_postgres_schema_without_a_ledger_creates_nothing(postgres_url: str) -> None:
    schema = postgres_url.rsplit("=", 1)[1]
    with pytest.raises(StoreError, match="holds no ledger"):
        LedgerStore(postgres_url, read_only=True)
    with psycopg.connect(POSTGRES_ADMIN) as connection:
        found = connection.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", [schema]
        ).fetchone()
    assert found == (0,)
