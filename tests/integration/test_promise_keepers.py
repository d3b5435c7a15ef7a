"""At-risk promises, promise inflation, the stakeholder web, complaint SLAs and contact groups, each
against hand-computed figures at their boundaries (a real ledger store, real DuckDB projections)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.settings import ComplaintTargets
from projections.at_risk import at_risk
from projections.complaint_sla import complaint_sla
from projections.contact_pressure import contact_groups
from projections.inflation import flagged_groups, inflation
from tests.events import event_dict
from tests.integration.projection_helpers import (
    ProjectedLedger,
    at,
    broken,
    kept,
    promise,
    renegotiated,
)

T = "2026-03-08T12:00:00+00:00"
H48 = timedelta(hours=48)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[ProjectedLedger]:
    opened = ProjectedLedger(tmp_path)
    yield opened
    opened.close()


def ask(ledger: ProjectedLedger, question: Any) -> Any:
    con = ledger.projections()
    try:
        return question(con)
    finally:
        con.close()


def test_at_risk_takes_due_dates_after_t_up_to_exactly_the_horizon(ledger: ProjectedLedger) -> None:
    made = "2026-03-01T00:00:00+00:00"
    ledger.seal(
        [
            promise("at-horizon", made, "2026-03-10T12:00:00+00:00"),
            promise("past-horizon", made, "2026-03-10T12:00:01+00:00"),
            promise("due-at-t", made, T),
            promise("one-second-ahead", made, "2026-03-08T12:00:01+00:00", weight=2),
            promise("kept-early", made, "2026-03-09T00:00:00+00:00"),
            kept("kept-early", "2026-03-07T00:00:00+00:00"),
            promise("half-kept", made, "2026-03-09T00:00:00+00:00", on_behalf_of="partner:acme"),
            kept("half-kept", "2026-03-07T00:00:00+00:00", fraction=0.5),
        ]
    )
    rows = ask(ledger, lambda con: at_risk(con, at(T), H48))
    assert [r["promise_id"] for r in rows] == ["one-second-ahead", "half-kept", "at-horizon"]
    first, half, last = rows
    assert first["hours_left"] == 0.0 and first["weight"] == 2
    assert half["kept_so_far"] == 0.5 and half["on_behalf_of"] == "partner:acme"
    assert last["due_at"] == "2026-03-10T12:00:00.000000Z" and last["hours_left"] == 48.0
    assert ask(ledger, lambda con: at_risk(con, at("9999-12-31T00:00:00+00:00"), H48)) == []
    narrowed = ask(
        ledger, lambda con: at_risk(con, at(T), H48, where={"on_behalf_of": "partner:acme"})
    )
    assert [r["promise_id"] for r in narrowed] == ["half-kept"]


def test_risk_is_one_minus_the_teams_on_time_rate_for_the_kind_over_the_90_days_before(
    ledger: ProjectedLedger,
) -> None:
    ledger.seal(
        [
            # billing refunds due in the 90 days before T: 3 kept on time, 1 broken → risk 0.25
            promise("on-time", "2026-01-01T00:00:00+00:00", "2026-01-10T00:00:00+00:00", weight=3),
            kept("on-time", "2026-01-09T00:00:00+00:00"),
            promise("broke", "2026-02-01T00:00:00+00:00", "2026-02-10T00:00:00+00:00"),
            broken("broke", "2026-02-11T00:00:00+00:00"),
            # due 90 days and one second before T: outside the window
            promise("old", "2025-11-01T00:00:00+00:00", "2025-12-08T11:59:59+00:00", weight=9),
            # the same team, another kind: not its history
            promise(
                "price", "2026-02-01T00:00:00+00:00", "2026-02-02T00:00:00+00:00", kind="price"
            ),
            promise("open", "2026-03-01T00:00:00+00:00", "2026-03-09T00:00:00+00:00"),
            promise(
                "newcomer",
                "2026-03-01T00:00:00+00:00",
                "2026-03-09T00:00:00+00:00",
                made_by="new-team",
            ),
        ]
    )
    rows = {r["promise_id"]: r for r in ask(ledger, lambda con: at_risk(con, at(T), H48))}
    assert rows["open"]["risk"] == 0.25
    assert rows["newcomer"]["risk"] is None


def test_an_agreed_renegotiation_moves_a_promise_out_of_the_horizon_and_a_refused_one_breaks_it(
    ledger: ProjectedLedger,
) -> None:
    made = "2026-03-01T00:00:00+00:00"
    ledger.seal(
        [
            promise("moved", made, "2026-03-09T00:00:00+00:00"),
            renegotiated("moved", "2026-03-05T00:00:00+00:00", "2026-03-20T00:00:00+00:00", True),
            promise("refused", made, "2026-03-09T00:00:00+00:00"),
            renegotiated(
                "refused", "2026-03-05T00:00:00+00:00", "2026-03-20T00:00:00+00:00", False
            ),
        ]
    )
    assert ask(ledger, lambda con: at_risk(con, at(T), H48)) == []
    before = ask(
        ledger, lambda con: at_risk(con, at("2026-03-04T12:00:00+00:00"), timedelta(days=5))
    )
    assert {r["promise_id"] for r in before} == {"moved", "refused"}


def test_the_gap_groups_by_the_party_a_promise_was_made_on_behalf_of(
    ledger: ProjectedLedger,
) -> None:
    made, due = "2026-03-01T00:00:00+00:00", "2026-03-02T00:00:00+00:00"
    ledger.seal(
        [
            promise("a", made, due, made_by="partner:acme", on_behalf_of="logistics", weight=2),
            broken("a", "2026-03-03T00:00:00+00:00"),
            promise("b", made, due, made_by="partner:acme", on_behalf_of="logistics"),
            kept("b", "2026-03-01T12:00:00+00:00"),
            promise("c", made, due, made_by="logistics"),
        ]
    )
    rows = ledger.gap("2026-03-31T00:00:00Z", ["made_by", "on_behalf_of"])
    own, partner = rows
    assert (partner["made_by"], partner["on_behalf_of"]) == ("partner:acme", "logistics")
    assert (partner["due"], partner["broken"], partner["kept_on_time"]) == (3, 2, 1)
    assert partner["trust_gap"] == pytest.approx(2 / 3)
    assert (own["on_behalf_of"], own["overdue"]) == (None, 1)


def _month_of_promises(team: str, month: int, made: int, kept_on_time: int) -> list[dict]:
    """``made`` promises made on the 5th of ``month`` (2026), due on the 7th; the first
    ``kept_on_time`` kept on the 6th, the rest never."""
    events = []
    for n in range(made):
        pid = f"{team}-{month}-{n}"
        events.append(
            promise(
                pid,
                f"2026-{month:02d}-05T00:00:00+00:00",
                f"2026-{month:02d}-07T00:00:00+00:00",
                made_by=team,
            )
        )
        if n < kept_on_time:
            events.append(kept(pid, f"2026-{month:02d}-06T00:00:00+00:00"))
    return events


def test_inflation_is_flagged_after_exactly_n_consecutive_months_of_made_outgrowing_kept(
    ledger: ProjectedLedger,
) -> None:
    plan = {1: (2, 2), 2: (2, 2), 3: (2, 2), 4: (4, 2), 5: (6, 2), 6: (6, 3)}
    ledger.seal([e for m, (made, k) in plan.items() for e in _month_of_promises("t", m, made, k)])

    def rows(as_of: str) -> list[dict]:
        return ask(ledger, lambda con: inflation(con, at(as_of), "made_by", 2))

    june = rows("2026-07-01T00:00:00+00:00")
    assert [r["month"] for r in june] == [
        "2026-01",
        "2026-02",
        "2026-03",
        "2026-04",
        "2026-05",
        "2026-06",
    ]
    # 2-month sums of made 4, 4, 6, 10, 12 and of kept on time 4, 4, 4, 4, 5 (Feb…Jun)
    assert [r["inflation_index"] for r in june] == [None, None, 1.0, 1.5, 1.6667, 0.96]
    assert [r["flagged"] for r in june] == [False, False, False, False, True, False]
    april = june[3]
    assert (
        april["made"],
        april["kept_on_time"],
        april["made_growth"],
        april["kept_on_time_growth"],
    ) == (4, 2, 1.0, 0.0)
    assert flagged_groups(june, "made_by") == {"t": False}
    assert flagged_groups(rows("2026-06-01T00:00:00+00:00"), "made_by") == {"t": True}
    # one month of made outgrowing kept (N − 1): not yet
    assert flagged_groups(rows("2026-05-01T00:00:00+00:00"), "made_by") == {"t": False}
    # the month T falls in is not over: left out
    assert rows("2026-06-30T23:59:59+00:00")[-1]["month"] == "2026-05"


TARGETS = ComplaintTargets(
    acknowledge={s: timedelta(hours=4 if s == 5 else 24) for s in range(1, 6)},
    resolve={s: timedelta(days=2) for s in range(1, 6)},
)


def complaint(cid: str, filed: str, severity: int = 5, customer: str = "c1", **kw: Any) -> dict:
    return event_dict(
        "complaint.filed",
        customer_id=customer,
        occurred_at=filed,
        complaint_id=cid,
        severity=severity,
        **kw,
    )


def acknowledged(cid: str, when: str, customer: str = "c1") -> dict:
    return event_dict(
        "complaint.acknowledged", customer_id=customer, occurred_at=when, complaint_id=cid
    )


def resolved(cid: str, when: str, customer: str = "c1", **kw: Any) -> dict:
    return event_dict(
        "complaint.resolved", customer_id=customer, occurred_at=when, complaint_id=cid, **kw
    )


def test_complaint_slas_count_a_deadline_met_to_the_second_and_leave_open_ones_undecided(
    ledger: ProjectedLedger,
) -> None:
    filed = "2026-03-01T00:00:00+00:00"
    ledger.seal(
        [
            promise("p1", "2026-02-01T00:00:00+00:00", "2026-02-10T00:00:00+00:00"),
            broken("p1", "2026-02-11T00:00:00+00:00"),
            promise("p2", "2026-02-01T00:00:00+00:00", "2026-04-10T00:00:00+00:00"),
            promise("p3", "2026-02-01T00:00:00+00:00", "2026-04-10T00:00:00+00:00"),
            promise("p4", "2026-02-01T00:00:00+00:00", "2026-04-10T00:00:00+00:00"),
            complaint("on-time", filed, promise_ids=["p1", "p2"]),
            acknowledged("on-time", "2026-03-01T04:00:00+00:00"),
            resolved("on-time", "2026-03-02T00:00:00+00:00", customer_satisfied=True),
            complaint("a-second-late", filed),
            acknowledged("a-second-late", "2026-03-01T04:00:01+00:00"),
            resolved("a-second-late", "2026-03-03T00:00:01+00:00"),
            complaint("silent", filed),
        ]
    )

    def sla(as_of: str, by: list[str]) -> list[dict]:
        return ask(ledger, lambda con: complaint_sla(con, at(as_of), TARGETS, by))

    (early,) = sla("2026-03-01T03:00:00+00:00", ["severity"])
    assert early["acknowledged_within_target"] is None  # nothing decided yet
    (row,) = sla("2026-03-04T00:00:00+00:00", ["severity"])
    assert row["complaints"] == 3 and row["acknowledged"] == 2
    assert row["acknowledged_within_target"] == round(1 / 3, 4)
    assert row["unacknowledged_past_target"] == 1
    assert row["acknowledge_p50_hours"] == round(4 + 0.5 / 3600, 2)
    assert row["resolved_within_target"] == round(1 / 3, 4)
    assert row["unresolved_past_target"] == 1
    assert row["resolved_satisfied"] == 0.5
    assert row["citing_broken_promise"] == round(1 / 3, 4)
    by_team = {r["made_by"]: r for r in sla("2026-03-04T00:00:00+00:00", ["made_by"])}
    assert (by_team["billing"]["complaints"], by_team["billing"]["promises_made"]) == (1, 4)
    assert by_team["billing"]["per_100_promises"] == 25.0
    assert by_team[None]["complaints"] == 2 and by_team[None]["per_100_promises"] is None


def touch(
    customer: str, when: str, direction: str, automated: bool = False, channel: str = "phone"
) -> dict:
    return event_dict(
        "touchpoint.recorded",
        customer_id=customer,
        occurred_at=when,
        direction=direction,
        automated=automated,
        channel=channel,
    )


def test_contact_groups_compare_saturated_and_machine_only_customers_with_the_rest(
    ledger: ProjectedLedger,
) -> None:
    end = "2026-03-31T00:00:00+00:00"
    ledger.seal(
        [
            *(touch("a", f"2026-03-2{n}T00:00:00+00:00", "outbound") for n in range(3)),
            complaint("ka", "2026-03-25T00:00:00+00:00", customer="a"),
            touch("b", "2026-03-20T00:00:00+00:00", "outbound"),
            touch("b", "2026-03-21T00:00:00+00:00", "outbound"),
            touch("b", "2026-03-22T00:00:00+00:00", "inbound", automated=True, channel="ivr"),
            complaint("kb", "2026-03-23T00:00:00+00:00", customer="b"),
            touch("c", "2026-03-22T00:00:00+00:00", "inbound"),
            touch(
                "d", "2026-03-01T00:00:00+00:00", "outbound"
            ),  # exactly 30 days back: the window before
            touch("d", "2026-02-25T00:00:00+00:00", "outbound"),
            touch("d", "2026-02-20T00:00:00+00:00", "outbound"),
        ]
    )
    rows = {r["group"]: r for r in ask(ledger, lambda con: contact_groups(con, at(end), 3))}
    assert {
        g: (r["customer_windows"], r["complaints"], r["complaints_per_100"])
        for g, r in rows.items()
    } == {
        "all customers": (4, 2, 50.0),
        "saturated": (2, 1, 50.0),
        "not saturated": (2, 1, 50.0),
        "inbound met only machines": (1, 1, 100.0),
        "inbound met a person": (1, 0, 0.0),
    }
    assert rows["all customers"]["customers_last_30_days"] == 4 - 1
    assert rows["saturated"]["customers_last_30_days"] == 1
