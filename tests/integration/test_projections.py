"""Projections are disposable: incremental equals rebuilt, and as-of answers equal an auditor's replay."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pytest

from cxl.synthetic import HistoryGenerator
from ledger.contract import parse_event
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections import follower
from projections.live import open_caught_up, replay
from projections.schema import applied_position, connect
from projections.trust_gap import trust_gap
from projections.views import TABLES
from tests.events import event_dict, raw
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.projection_helpers import ProjectedLedger, at, broken, kept, promise

ORDER = {
    "ledger_events": "position",
    "promise_events": "position",
    "complaint_events": "position",
    "touchpoints": "position",
    "promises": "customer_id, promise_id",
}


def _rows(path: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY {ORDER[table]}").fetchall()
    finally:
        con.close()


@pytest.fixture
def random_history(tmp_path: Path) -> tuple[LedgerStore, list[dict]]:
    events = HistoryGenerator(customers=150, seed=random.randrange(10_000)).events()
    store = LedgerStore(str(tmp_path / "ledger.sqlite"))
    return store, events


def test_incremental_projection_equals_a_rebuild_on_a_random_history(
    tmp_path: Path, random_history: tuple[LedgerStore, list[dict]]
) -> None:
    store, events = random_history
    rng = random.Random(len(events))
    live = tmp_path / "live.duckdb"
    i = 0
    while i < len(events):  # seal in uneven chunks, catching up after each: many small transactions
        step = rng.randint(1, 400)
        store.seal([parse_event(raw(e), "t") for e in events[i : i + step]])
        open_caught_up(live, store).close()
        i += step
    rebuilt = tmp_path / "rebuilt.duckdb"
    con = connect(rebuilt)
    follower.catch_up(con, store)
    con.close()
    for table in TABLES:
        assert _rows(live, table) == _rows(rebuilt, table), table
    assert len(_rows(live, "promises")) > 100
    store.close()


def test_gap_as_of_t_agrees_with_a_replay_to_t(
    tmp_path: Path, random_history: tuple[LedgerStore, list[dict]]
) -> None:
    store, events = random_history
    store.seal([parse_event(raw(e), "t") for e in events])
    con = open_caught_up(tmp_path / "live.duckdb", store)
    for as_of in ("2026-01-15T00:00:00+00:00", "2026-06-30T23:59:59+02:00", "2026-12-31T00:00:00Z"):
        instant = at(as_of)
        replayed = tmp_path / f"replay-{instant.timestamp():.0f}.duckdb"
        replay(store, instant, replayed)
        rcon = connect(replayed, read_only=True)
        for by in ([], ["made_by"], ["made_by", "due_month"], ["channel", "kind"], ["customer"]):
            assert trust_gap(con, instant, by) == trust_gap(rcon, instant, by), (as_of, by)
        occurred = rcon.execute("SELECT max(occurred_at) FROM ledger_events").fetchone()[0]
        assert occurred is None or occurred <= instant
        rcon.close()
    con.close()
    store.close()


def test_a_failed_batch_is_rolled_back_and_counts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = ProjectedLedger(tmp_path)
    ledger.seal([promise("p1", "2026-03-01T09:00:00Z", "2026-03-10T12:00:00Z")])
    ledger.projections().close()
    ledger.seal([kept("p1", "2026-03-02T00:00:00Z")])

    def crash(*_: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(follower, "_refold", crash)
    with pytest.raises(RuntimeError):
        ledger.projections()
    monkeypatch.undo()
    con = connect(ledger.path)
    assert applied_position(con) < ledger.store.max_position()
    assert con.execute("SELECT count(*) FROM promise_events").fetchone()[0] == 1
    con.close()
    assert ledger.gap("2026-04-01T00:00:00Z")[0]["kept_on_time"] == 1
    ledger.close()


def test_complaints_report_handling_times_and_links_to_broken_promises(tmp_path: Path) -> None:
    ledger = ProjectedLedger(tmp_path)
    ledger.seal(
        [
            promise("p1", "2026-03-01T09:00:00Z", "2026-03-10T12:00:00Z"),
            broken("p1", "2026-03-11T00:00:00Z"),
            event_dict(
                "complaint.filed",
                customer_id="c1",
                occurred_at="2026-03-11T06:00:00Z",
                complaint_id="k1",
                promise_ids=["p1"],
            ),
            event_dict(
                "complaint.acknowledged",
                customer_id="c1",
                occurred_at="2026-03-11T08:30:00Z",
                complaint_id="k1",
            ),
            event_dict(
                "complaint.resolved",
                customer_id="c1",
                occurred_at="2026-03-13T06:00:00Z",
                complaint_id="k1",
            ),
            event_dict(
                "complaint.filed",
                customer_id="c1",
                occurred_at="2026-03-12T00:00:00Z",
                complaint_id="k2",
            ),
        ]
    )
    con = ledger.projections()
    rows = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT complaint_id, hours_to_acknowledge, hours_to_resolve, linked_to_broken_promise FROM complaints"
        ).fetchall()
    }
    assert rows == {"k1": (2.5, 48.0, True), "k2": (None, None, False)}
    con.close()
    ledger.close()


def test_contact_pressure_counts_directions_per_customer_window(tmp_path: Path) -> None:
    ledger = ProjectedLedger(tmp_path)
    touch = [("outbound", True), ("outbound", True), ("outbound", False), ("inbound", False)]
    ledger.seal(
        [
            event_dict(
                "touchpoint.recorded",
                customer_id="c1",
                occurred_at=f"2026-03-0{i + 1}T10:00:00Z",
                direction=d,
                automated=a,
            )
            for i, (d, a) in enumerate(touch)
        ]
    )
    con = ledger.projections()
    assert con.execute(
        "SELECT inbound, outbound, automated_share FROM contact_pressure"
    ).fetchall() == [(1, 3, 0.5)]
    con.close()
    ledger.close()


def test_anomalies_appear_and_resolve_when_the_missing_fact_arrives(tmp_path: Path) -> None:
    ledger = ProjectedLedger(tmp_path)
    ledger.seal(
        [
            kept("p1", "2026-03-05T00:00:00Z"),
            promise("p2", "2026-03-01T09:00:00Z", "2026-03-10T12:00:00Z"),
            kept("p2", "2026-03-02T00:00:00Z"),
            kept("p2", "2026-03-03T00:00:00Z"),
            promise("p3", "2026-03-01T09:00:00Z", "2026-03-10T12:00:00Z"),
            broken("p3", "2026-03-04T00:00:00Z"),
            kept("p3", "2026-03-05T00:00:00Z"),
            event_dict(
                "complaint.filed",
                customer_id="c1",
                occurred_at="2026-03-06T00:00:00Z",
                complaint_id="k1",
                promise_ids=["p9"],
            ),
        ]
    )

    def anomalies() -> set[tuple[str, str]]:
        con = ledger.projections()
        try:
            return set(con.execute("SELECT anomaly, subject FROM anomalies").fetchall())
        finally:
            con.close()

    assert anomalies() == {
        ("outcome before promise", "p1"),
        ("kept twice", "p2"),
        ("kept after broken", "p3"),
        ("complaint about unknown promise", "k1"),
    }
    ledger.seal(
        [
            promise("p1", "2026-03-01T09:00:00Z", "2026-03-10T12:00:00Z"),
            promise("p9", "2026-03-01T09:00:00Z", "2026-03-10T12:00:00Z"),
        ]
    )
    assert anomalies() == {("kept twice", "p2"), ("kept after broken", "p3")}
    ledger.close()


def test_cli_gap_sql_export_and_replay(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    env = cxl_env(settings)
    with LedgerStore(settings.store_url) as store:
        store.seal(
            [
                parse_event(raw(e), "t")
                for e in [
                    promise("a", "2026-03-01T09:00:00Z", "2026-03-10T12:00:00Z", made_by="billing"),
                    promise(
                        "b",
                        "2026-03-01T09:00:00Z",
                        "2026-03-10T12:00:00Z",
                        made_by="support",
                        weight=3,
                    ),
                    kept("a", "2026-03-02T00:00:00Z"),
                ]
            ]
        )
    result = run_cxl(
        ["gap", "--as-of", "2026-04-01T00:00:00Z", "--by", "made_by", "--format", "json"], env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "made_by": "billing",
            "made": 1.0,
            "due": 1.0,
            "kept_on_time": 1.0,
            "kept_late": 0.0,
            "broken": 0.0,
            "overdue": 0.0,
            "pending": 0.0,
            "trust_gap": 0.0,
        },
        {
            "made_by": "support",
            "made": 3.0,
            "due": 3.0,
            "kept_on_time": 0.0,
            "kept_late": 0.0,
            "broken": 0.0,
            "overdue": 3.0,
            "pending": 0.0,
            "trust_gap": 1.0,
        },
    ]
    assert run_cxl(["gap", "--by", "team"], env).returncode == 2
    naive = run_cxl(["gap", "--as-of", "2026-04-01T00:00:00"], env)
    assert naive.returncode == 2 and "needs a UTC offset" in naive.stderr

    counted = run_cxl(["sql", "SELECT count(*) AS n FROM promises", "--format", "json"], env)
    assert json.loads(counted.stdout) == [{"n": 2}]
    refused = run_cxl(["sql", "DELETE FROM promises"], env)
    assert refused.returncode == 2 and "read-only" in refused.stderr.lower()

    exported = run_cxl(["export", "--format", "parquet", "--to", str(tmp_path / "out")], env)
    assert exported.returncode == 0, exported.stderr
    con = duckdb.connect()
    assert con.execute(
        f"SELECT count(*) FROM '{tmp_path / 'out' / 'promises.parquet'}'"
    ).fetchone() == (2,)
    assert (tmp_path / "out" / "trust_gap_by_team.parquet").exists()
    assert (
        run_cxl(["export", "--format", "csv", "--to", str(tmp_path / "csv")], env).returncode == 0
    )
    assert (tmp_path / "csv" / "complaints.csv").read_text().startswith("customer_id,complaint_id")

    target = tmp_path / "audit.duckdb"
    replayed = run_cxl(["replay", "--as-of", "2026-03-01T23:00:00Z", "--to", str(target)], env)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 2 events" in replayed.stdout
    again = run_cxl(["replay", "--as-of", "2026-03-01T23:00:00Z", "--to", str(target)], env)
    assert again.returncode == 2 and "--force" in again.stderr
    audit = run_cxl(
        [
            "sql",
            "--db",
            str(target),
            "SELECT status, count(*) AS n FROM promise_status GROUP BY 1",
            "--format",
            "json",
        ],
        env,
    )
    assert json.loads(audit.stdout) == [{"status": "pending", "n": 2}]
