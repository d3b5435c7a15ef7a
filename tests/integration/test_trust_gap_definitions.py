"""Each definition of DESIGN.md "Trust gap, as of instant T", with hand-computed expectations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.projection_helpers import (
    ProjectedLedger,
    broken,
    kept,
    promise,
    renegotiated,
)

MADE = "2026-03-01T09:00:00+00:00"
DUE = "2026-03-10T12:00:00+00:00"
MEASURES = ("made", "due", "kept_on_time", "kept_late", "broken", "overdue", "pending")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[ProjectedLedger]:
    opened = ProjectedLedger(tmp_path)
    yield opened
    opened.close()


def measures(row: dict) -> tuple:
    return tuple(row[m] for m in MEASURES)


def test_a_keep_exactly_at_the_due_date_is_on_time(ledger: ProjectedLedger) -> None:
    ledger.seal([promise("p1", MADE, DUE, weight=2), kept("p1", DUE)])
    (row,) = ledger.gap(DUE)
    assert measures(row) == (2, 2, 2, 0, 0, 0, 0)
    assert row["trust_gap"] == 0


def test_a_keep_one_second_after_the_due_date_is_late(ledger: ProjectedLedger) -> None:
    ledger.seal([promise("p1", MADE, DUE), kept("p1", "2026-03-10T12:00:01+00:00")])
    (row,) = ledger.gap("2026-03-31T00:00:00Z")
    assert measures(row) == (1, 1, 0, 1, 0, 0, 0)
    assert row["trust_gap"] == 1


def test_events_after_t_do_not_count_and_events_exactly_at_t_do(ledger: ProjectedLedger) -> None:
    ledger.seal([promise("p1", MADE, DUE), kept("p1", "2026-03-05T00:00:00+00:00")])
    assert measures(ledger.gap("2026-03-04T23:59:59.999999+00:00")[0]) == (1, 0, 0, 0, 0, 0, 1)
    assert measures(ledger.gap("2026-03-05T00:00:00+00:00")[0]) == (1, 1, 1, 0, 0, 0, 0)
    assert measures(ledger.gap("2026-03-01T08:59:59+00:00")[0]) == (0, 0, 0, 0, 0, 0, 0)


def test_an_unkept_promise_is_pending_until_due_then_overdue(ledger: ProjectedLedger) -> None:
    ledger.seal([promise("p1", MADE, DUE)])
    assert measures(ledger.gap("2026-03-10T11:59:59+00:00")[0]) == (1, 0, 0, 0, 0, 0, 1)
    assert measures(ledger.gap(DUE)[0]) == (1, 1, 0, 0, 0, 1, 0)


def test_partial_keeps_wait_until_due_then_split_on_time_and_late(ledger: ProjectedLedger) -> None:
    ledger.seal(
        [
            promise("p1", MADE, DUE, weight=4),
            kept("p1", "2026-03-05T00:00:00+00:00", fraction=0.25),
            kept("p1", "2026-03-12T00:00:00+00:00", fraction=0.5),
        ]
    )
    assert measures(ledger.gap("2026-03-06T00:00:00+00:00")[0]) == (4, 0, 0, 0, 0, 0, 4)
    assert measures(ledger.gap("2026-03-11T00:00:00+00:00")[0]) == (4, 4, 1, 0, 0, 3, 0)
    row = ledger.gap("2026-03-13T00:00:00+00:00")[0]
    assert measures(row) == (4, 4, 1, 2, 0, 1, 0)
    assert row["trust_gap"] == 0.75


def test_the_remainder_of_a_partially_kept_broken_promise_is_broken(
    ledger: ProjectedLedger,
) -> None:
    ledger.seal(
        [
            promise("p1", MADE, DUE),
            kept("p1", "2026-03-05T00:00:00+00:00", fraction=0.5),
            broken("p1", "2026-03-06T00:00:00+00:00"),
        ]
    )
    # Broken before its due date: settled, hence due at once.
    assert measures(ledger.gap("2026-03-07T00:00:00+00:00")[0]) == (1, 1, 0.5, 0, 0.5, 0, 0)


def test_kept_fractions_are_capped_at_one(ledger: ProjectedLedger) -> None:
    ledger.seal(
        [
            promise("p1", MADE, DUE),
            kept("p1", "2026-03-02T00:00:00+00:00", fraction=0.7),
            kept("p1", "2026-03-11T00:00:00+00:00", fraction=0.7),
        ]
    )
    row = ledger.gap("2026-03-31T00:00:00+00:00")[0]
    assert measures(row) == (1, 1, 0.7, 0.3, 0, 0, 0)


def test_an_agreed_renegotiation_moves_the_due_date_and_the_due_month(
    ledger: ProjectedLedger,
) -> None:
    ledger.seal(
        [
            promise("p1", MADE, DUE),
            renegotiated(
                "p1", "2026-03-09T00:00:00+00:00", "2026-04-05T00:00:00+00:00", agreed=True
            ),
            kept("p1", "2026-04-01T00:00:00+00:00"),
        ]
    )
    assert measures(ledger.gap("2026-03-20T00:00:00+00:00")[0]) == (1, 0, 0, 0, 0, 0, 1)
    (row,) = ledger.gap("2026-04-30T00:00:00+00:00", ["due_month"])
    assert row["due_month"] == "2026-04"
    assert measures(row) == (1, 1, 1, 0, 0, 0, 0)


def test_the_latest_agreed_renegotiation_wins(ledger: ProjectedLedger) -> None:
    ledger.seal(
        [
            promise("p1", MADE, DUE),
            renegotiated(
                "p1", "2026-03-05T00:00:00+00:00", "2026-05-01T00:00:00+00:00", agreed=True
            ),
            renegotiated(
                "p1", "2026-03-06T00:00:00+00:00", "2026-03-20T00:00:00+00:00", agreed=True
            ),
            kept("p1", "2026-03-25T00:00:00+00:00"),
        ]
    )
    assert measures(ledger.gap("2026-04-01T00:00:00+00:00")[0]) == (1, 1, 0, 1, 0, 0, 0)


def test_a_renegotiation_not_agreed_by_the_customer_breaks_the_promise_at_that_moment(
    ledger: ProjectedLedger,
) -> None:
    ledger.seal(
        [
            promise("p1", MADE, DUE, weight=3),
            renegotiated(
                "p1", "2026-03-05T00:00:00+00:00", "2026-04-30T00:00:00+00:00", agreed=False
            ),
        ]
    )
    assert measures(ledger.gap("2026-03-04T23:59:59+00:00")[0]) == (3, 0, 0, 0, 0, 0, 3)
    assert measures(ledger.gap("2026-03-05T00:00:00+00:00")[0]) == (3, 3, 0, 0, 3, 0, 0)


def test_weights_and_groups_add_up(ledger: ProjectedLedger) -> None:
    ledger.seal(
        [
            promise("a", MADE, DUE, weight=2, made_by="billing"),
            promise("b", MADE, DUE, weight=0.5, made_by="billing"),
            promise("c", MADE, "2026-06-01T00:00:00+00:00", weight=1, made_by="logistics"),
            kept("a", "2026-03-02T00:00:00+00:00"),
            broken("b", "2026-03-11T00:00:00+00:00"),
        ]
    )
    rows = {r["made_by"]: r for r in ledger.gap("2026-04-01T00:00:00+00:00", ["made_by"])}
    assert measures(rows["billing"]) == (2.5, 2.5, 2, 0, 0.5, 0, 0)
    assert rows["billing"]["trust_gap"] == 0.2
    assert measures(rows["logistics"]) == (1, 0, 0, 0, 0, 0, 1)
    assert rows["logistics"]["trust_gap"] is None
    for row in rows.values():
        assert row["due"] == row["kept_on_time"] + row["kept_late"] + row["broken"] + row["overdue"]
        assert row["made"] == row["due"] + row["pending"]


def test_no_grouping_gives_exactly_one_row_even_with_no_promises(ledger: ProjectedLedger) -> None:
    assert ledger.gap("2026-03-01T00:00:00Z") == [
        {
            "made": 0,
            "due": 0,
            "kept_on_time": 0,
            "kept_late": 0,
            "broken": 0,
            "overdue": 0,
            "pending": 0,
            "trust_gap": None,
        }
    ]


def test_an_outcome_arriving_before_its_promise_counts_once_the_promise_arrives(
    ledger: ProjectedLedger,
) -> None:
    ledger.seal([kept("p1", "2026-03-05T00:00:00+00:00")])
    assert measures(ledger.gap("2026-04-01T00:00:00Z")[0]) == (0, 0, 0, 0, 0, 0, 0)
    ledger.seal([promise("p1", MADE, DUE)])
    assert measures(ledger.gap("2026-04-01T00:00:00Z")[0]) == (1, 1, 1, 0, 0, 0, 0)
