"""Whatever passes the contract seals, projects, queries, exports and reports — unaltered.

Hypothesis generates contract-valid histories with edge values (bounds of every number, instants at
the ends of the range in far-off offsets, identifiers and texts of any Unicode). Each is sealed into
a real SQLite store and projected into a real DuckDB file; then the trust gap under every grouping,
every view, both exports and the HTML report must work, and the projected values must equal the
sealed ones. Replay a failure with the printed ``@reproduce_failure`` blob or ``--hypothesis-seed``.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.contract import EARLIEST, IDENT_PATTERN, LATEST, TEXT_PATTERN, parse_event
from ledger.store import LedgerStore
from projections.export import export_all
from projections.live import open_caught_up
from projections.report import write_report
from projections.trust_gap import trust_gap
from projections.views import VIEWS
from tests.events import raw

# Every character the contract accepts in an identifier or a text (its own patterns decide).
_ident_chars = st.characters(blacklist_categories=("Cs",)).filter(
    lambda c: re.fullmatch(IDENT_PATTERN, c) is not None
)
_text_chars = st.characters(blacklist_categories=("Cs",)).filter(
    lambda c: re.fullmatch(TEXT_PATTERN, c) is not None
)
ident = st.text(_ident_chars, min_size=1, max_size=128)
text = st.text(_text_chars, min_size=1, max_size=300) | st.just("é" * 4000)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)
instants = st.datetimes(
    min_value=EARLIEST.replace(tzinfo=None), max_value=LATEST.replace(tzinfo=None)
) | st.sampled_from([EARLIEST.replace(tzinfo=None), LATEST.replace(tzinfo=None)])
weights = st.floats(min_value=5e-324, max_value=1e6) | st.sampled_from([1e6, 5e-324, 0.1, 3])
fractions = st.floats(min_value=5e-324, max_value=1.0) | st.just(1.0)
durations = st.floats(min_value=0.0, max_value=1e7) | st.sampled_from([0.0, 1e7])


@st.composite
def instant_text(draw: Any, not_before: datetime | None = None) -> str:
    utc = draw(instants).replace(tzinfo=UTC)
    if not_before is not None and utc < not_before:
        utc = not_before
    return utc.astimezone(draw(offsets)).isoformat()


@st.composite
def event(draw: Any, customer: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(DATA)))
    occurred = draw(instant_text())
    data = draw(DATA[kind](datetime.fromisoformat(occurred)))
    return {
        "event_id": "",
        "type": kind,
        "customer_id": customer,
        "occurred_at": occurred,
        "source": draw(ident),
        "data": data,
    }


def _optional(strategy: Any) -> Any:
    return st.none() | strategy


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


DATA: dict[str, Any] = {
    "touchpoint.recorded": lambda _: st.fixed_dictionaries(
        {
            "channel": st.sampled_from(["phone", "email", "chat", "app"]),
            "direction": st.sampled_from(["inbound", "outbound"]),
            "automated": st.booleans(),
            "purpose": st.sampled_from(["service", "sales", "billing"]),
            "outcome": _optional(text),
            "duration_s": _optional(durations),
        }
    ).map(_drop_none),
    "promise.made": lambda occurred: st.fixed_dictionaries(
        {
            "promise_id": st.sampled_from(["p1", "p2"]) | ident,
            "made_by": ident,
            "channel": st.sampled_from(["phone", "email"]),
            "kind": st.sampled_from(["delivery", "refund", "fix"]),
            "due_at": instant_text(not_before=occurred),
            "weight": weights,
            "description": _optional(text),
            "on_behalf_of": _optional(ident),
        }
    ).map(_drop_none),
    "promise.kept": lambda _: st.fixed_dictionaries(
        {"promise_id": st.sampled_from(["p1", "p2"]), "fraction": fractions}
    ),
    "promise.broken": lambda _: st.fixed_dictionaries(
        {"promise_id": st.sampled_from(["p1", "p2"]), "reason": text}
    ),
    "promise.renegotiated": lambda _: st.fixed_dictionaries(
        {
            "promise_id": st.sampled_from(["p1", "p2"]),
            "new_due_at": instant_text(),
            "agreed_by_customer": st.booleans(),
        }
    ),
    "complaint.filed": lambda _: st.fixed_dictionaries(
        {
            "complaint_id": st.sampled_from(["k1"]) | ident,
            "channel": st.sampled_from(["chat", "letter"]),
            "category": ident,
            "severity": st.integers(1, 5),
            "promise_ids": st.lists(st.sampled_from(["p1", "p2"]) | ident, max_size=100),
            "text": _optional(text),
        }
    ).map(_drop_none),
    "complaint.acknowledged": lambda _: st.fixed_dictionaries({"complaint_id": st.just("k1")}),
    "complaint.resolved": lambda _: st.fixed_dictionaries(
        {"complaint_id": st.just("k1"), "resolution": text, "customer_satisfied": st.booleans()}
    ),
}


@st.composite
def history(draw: Any) -> list[dict[str, Any]]:
    customers = draw(st.lists(ident, min_size=1, max_size=3, unique=True))
    events = [draw(event(draw(st.sampled_from(customers)))) for _ in range(draw(st.integers(1, 8)))]
    for index, generated in enumerate(events):  # event ids are the publisher's promise: unique
        generated["event_id"] = str(uuid.UUID(int=index + 1))
    return events


def _instant(value: Any) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@settings(
    max_examples=20,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(history())
def test_contract_valid_histories_seal_project_query_export_and_report(
    events: list[dict[str, Any]],
) -> None:
    valid = [parse_event(raw(e), f"gen:{i}") for i, e in enumerate(events)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with LedgerStore(str(root / "ledger.sqlite")) as store:
            report = store.seal(valid)
            assert (report.sealed, report.rejected) == (len(valid), [])
            con = open_caught_up(root / "projections.duckdb", store)
        try:
            end = max(datetime.fromisoformat(e.body["occurred_at"]) for e in valid)
            for by in ([], ["made_by"], ["channel", "kind"], ["due_month"], ["customer"]):
                for as_of in (end, LATEST):
                    rows = trust_gap(con, as_of, by)
                    for row in rows:
                        parts = ("kept_on_time", "kept_late", "broken", "overdue")
                        assert abs(row["due"] - sum(row[p] for p in parts)) <= 1e-9 * max(
                            1.0, row["due"]
                        )
            for view in VIEWS:
                con.execute(f"SELECT * FROM {view}").fetchall()
            export_all(con, root / "csv", "csv")
            export_all(con, root / "parquet", "parquet")
            write_report(con, end, root / "report.html")
            assert (root / "report.html").stat().st_size > 0
            _assert_projected_unaltered(con, valid)
        finally:
            con.close()


def _assert_projected_unaltered(con: Any, valid: list[Any]) -> None:
    bodies = {e.event_id: e.body for e in valid}
    for event_id, occurred, customer in con.execute(
        "SELECT event_id, occurred_at, customer_id FROM ledger_events"
    ).fetchall():
        assert _instant(occurred) == bodies[event_id]["occurred_at"]
        assert customer == bodies[event_id]["customer_id"]
    made = sorted(
        (b["customer_id"], b["data"]["promise_id"], b["data"]["weight"], b["data"]["due_at"])
        for b in bodies.values()
        if b["type"] == "promise.made"
    )
    projected_made = sorted(
        (customer, pid, weight, _instant(due_at))
        for customer, pid, weight, due_at in con.execute(
            "SELECT customer_id, promise_id, weight, due_at FROM promise_events "
            "WHERE type = 'promise.made'"
        ).fetchall()
    )
    assert projected_made == made
    durations = sorted(
        b["data"]["duration_s"]
        for b in bodies.values()
        if b["type"] == "touchpoint.recorded" and b["data"]["duration_s"] is not None
    )
    projected = con.execute(
        "SELECT duration_s FROM touchpoints WHERE duration_s IS NOT NULL ORDER BY duration_s"
    ).fetchall()
    assert [d for (d,) in projected] == durations
