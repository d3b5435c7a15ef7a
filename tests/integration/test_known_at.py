"""What the ledger knew when: ``--known-at`` reproduces an earlier answer exactly, and the live views
answer "as of now" exactly as ``gap`` does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from ledger.settings import Settings
from tests.events import event_dict, write_jsonl
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.projection_helpers import ProjectedLedger, broken, kept, promise

T = "2026-05-01T00:00:00Z"


def _first_history() -> list[dict]:
    return [
        promise("p1", "2026-03-01T09:00:00Z", "2026-03-20T00:00:00Z", made_by="billing"),
        kept("p1", "2026-03-18T00:00:00Z"),
        promise("p2", "2026-03-02T09:00:00Z", "2026-04-10T00:00:00Z", customer="c2"),
        promise("p3", "2026-03-05T09:00:00Z", "2026-06-10T00:00:00Z", customer="c3"),
        event_dict("complaint.filed", customer_id="c2", occurred_at="2026-04-12T00:00:00Z"),
    ]


def _late_history() -> list[dict]:
    """Facts that occurred before T but reached the ledger after the first report."""
    return [
        kept("p2", "2026-04-09T00:00:00Z", customer="c2"),
        broken("p3", "2026-04-20T00:00:00Z", customer="c3"),
        promise("p4", "2026-03-10T09:00:00Z", "2026-04-01T00:00:00Z", customer="c4"),
        event_dict("touchpoint.recorded", customer_id="c4", occurred_at="2026-04-02T00:00:00Z"),
    ]


def test_known_at_reproduces_an_earlier_gap_byte_for_byte(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", kek_file=tmp_path / "kek")
    env = cxl_env(settings)
    write_jsonl(tmp_path / "first.jsonl", _first_history())
    assert run_cxl(["ingest", str(tmp_path / "first.jsonl")], env).returncode == 0
    asked = ["gap", "--as-of", T, "--by", "made_by,customer", "--format", "json"]
    first = run_cxl(asked, env)
    assert first.returncode == 0, first.stderr
    reported_at = datetime.now(UTC).isoformat()

    write_jsonl(tmp_path / "late.jsonl", _late_history())
    assert run_cxl(["ingest", str(tmp_path / "late.jsonl")], env).returncode == 0
    now = run_cxl(asked, env)
    assert now.stdout != first.stdout  # the late facts changed the answer for T...
    again = run_cxl([*asked, "--known-at", reported_at], env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout  # ...but not what the ledger knew at the first report

    replayed = tmp_path / "then.duckdb"
    made = run_cxl(["replay", "--as-of", T, "--known-at", reported_at, "--to", str(replayed)], env)
    assert made.returncode == 0 and "were sealed by" in made.stdout, made.stderr
    con = duckdb.connect(str(replayed), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM promises").fetchone() == (3,)
        assert con.execute("SELECT count(*) FROM touchpoints").fetchone() == (0,)
    finally:
        con.close()

    exported = tmp_path / "out"
    done = run_cxl(
        [
            "export",
            "--to",
            str(exported),
            "--format",
            "csv",
            "--as-of",
            T,
            "--known-at",
            reported_at,
        ],
        env,
    )
    assert done.returncode == 0, done.stderr
    assert len((exported / "promises.csv").read_text().splitlines()) == 1 + 3
    columns = (exported / "promise_events.csv").read_text().splitlines()[0].split(",")
    assert "recorded_at" in columns and "occurred_at" in columns
    bad = run_cxl([*asked, "--known-at", "yesterday"], env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --known-at 'yesterday'")


def test_the_live_views_answer_as_of_now_exactly_as_gap(tmp_path: Path) -> None:
    now = datetime.now(UTC)

    def when(days: float) -> str:
        return (now + timedelta(days=days)).isoformat()

    ledger = ProjectedLedger(tmp_path)
    try:
        ledger.seal(
            [
                promise("due", when(-20), when(-5), made_by="billing"),
                kept("due", when(-6)),
                promise("late", when(-20), when(-5), made_by="billing", customer="c2"),
                kept("late", when(3), customer="c2"),  # dated in the future: not kept yet
                promise("later", when(2), when(4), made_by="support", customer="c3"),
                promise("broken", when(-9), when(-1), made_by="support", customer="c4"),
                broken("broken", when(1), customer="c4"),  # future break: overdue for now
            ]
        )
        con = ledger.projections()
        try:
            asked_at = datetime.now(UTC)
            from projections.trust_gap import trust_gap

            expected = trust_gap(con, asked_at, ["made_by"])
            view = con.execute(
                "SELECT made_by, round(made, 9), round(due, 9), round(kept_on_time, 9), "
                "round(kept_late, 9), round(broken, 9), round(overdue, 9), round(pending, 9) "
                "FROM trust_gap_by_team ORDER BY made_by"
            ).fetchall()
            statuses = dict(con.execute("SELECT promise_id, status FROM promise_status").fetchall())
        finally:
            con.close()
    finally:
        ledger.close()
    measures = ("made", "due", "kept_on_time", "kept_late", "broken", "overdue", "pending")
    assert view == [(r["made_by"], *(r[m] for m in measures)) for r in expected]
    assert statuses == {"due": "kept_on_time", "late": "overdue", "broken": "overdue"}
    assert json.dumps(expected)  # plain values only
