"""Follows the ledger's notification log into the DuckDB projections, incrementally and exactly once.

Each transaction appends the facts of a run of sealed events, re-folds the promises they touch, and
moves ``projection_position`` to the last position applied; a crash rolls all of it back, so nothing
is counted twice. A full rebuild (``rebuild``) runs the same code from position 0, optionally
keeping only events with ``occurred_at <= as_of`` — the auditors' replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from ledger.store import LedgerStore, SealedEvent
from projections.promise_fold import fold_sql
from projections.schema import applied_position

_COLUMNS = {
    "ledger_events": (
        "position",
        "customer_id",
        "seq",
        "event_id",
        "type",
        "occurred_at",
        "recorded_at",
        "source",
        "hash",
    ),
    "promise_events": (
        "position",
        "customer_id",
        "promise_id",
        "type",
        "occurred_at",
        "made_by",
        "channel",
        "kind",
        "due_at",
        "weight",
        "fraction",
        "new_due_at",
        "agreed_by_customer",
        "reason",
    ),
    "complaint_events": (
        "position",
        "customer_id",
        "complaint_id",
        "type",
        "occurred_at",
        "channel",
        "category",
        "severity",
        "promise_ids",
        "resolution",
        "customer_satisfied",
    ),
    "touchpoints": (
        "position",
        "customer_id",
        "occurred_at",
        "channel",
        "direction",
        "automated",
        "purpose",
        "outcome",
        "duration_s",
    ),
}
_TIMESTAMPS = {"occurred_at", "recorded_at", "due_at", "new_due_at"}


class _Columns:
    """Column lists for one transaction's facts, turned into Arrow tables at the end."""

    def __init__(self) -> None:
        self.cols: dict[str, dict[str, list[Any]]] = {
            table: {c: [] for c in columns} for table, columns in _COLUMNS.items()
        }

    def add(self, e: SealedEvent) -> None:
        body = e.body
        data = body["data"]
        kind = e.type
        ledger = self.cols["ledger_events"]
        for name, value in (
            ("position", e.position),
            ("customer_id", e.customer_id),
            ("seq", e.seq),
            ("event_id", e.event_id),
            ("type", kind),
            ("occurred_at", body["occurred_at"]),
            ("recorded_at", e.recorded_at),
            ("source", body["source"]),
            ("hash", e.hash),
        ):
            ledger[name].append(value)
        if kind.startswith("promise."):
            self._row(
                "promise_events",
                e,
                data,
                (
                    "promise_id",
                    "made_by",
                    "channel",
                    "kind",
                    "due_at",
                    "weight",
                    "fraction",
                    "new_due_at",
                    "agreed_by_customer",
                    "reason",
                ),
            )
        elif kind.startswith("complaint."):
            self._row(
                "complaint_events",
                e,
                data,
                (
                    "complaint_id",
                    "channel",
                    "category",
                    "severity",
                    "promise_ids",
                    "resolution",
                    "customer_satisfied",
                ),
            )
        else:
            self._row(
                "touchpoints",
                e,
                data,
                ("channel", "direction", "automated", "purpose", "outcome", "duration_s"),
            )

    def _row(
        self, table: str, e: SealedEvent, data: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        cols = self.cols[table]
        cols["position"].append(e.position)
        cols["customer_id"].append(e.customer_id)
        cols["occurred_at"].append(e.body["occurred_at"])
        if "type" in cols:
            cols["type"].append(e.type)
        for name in fields:
            cols[name].append(data.get(name))

    def tables(self) -> dict[str, pa.Table]:
        out = {}
        for table, cols in self.cols.items():
            if cols["position"]:
                out[table] = pa.table(cols)
        return out


def _insert(con: duckdb.DuckDBPyConnection, table: str, arrow: pa.Table) -> None:
    select = ", ".join(
        f"CAST({c} AS TIMESTAMPTZ)"
        if c in _TIMESTAMPS
        else ("CAST(promise_ids AS VARCHAR[])" if c == "promise_ids" else c)
        for c in _COLUMNS[table]
    )
    con.register("incoming", arrow)
    try:
        con.execute(f"INSERT INTO {table} SELECT {select} FROM incoming")
    finally:
        con.unregister("incoming")


def _refold(con: duckdb.DuckDBPyConnection, promise_events: pa.Table) -> None:
    """Recompute the ``promises`` rows of every promise this batch touched, from all its events."""
    con.register("incoming_promises", promise_events.select(["customer_id", "promise_id"]))
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE touched AS "
            "SELECT DISTINCT customer_id, promise_id FROM incoming_promises"
        )
    finally:
        con.unregister("incoming_promises")
    con.execute(
        "DELETE FROM promises p USING touched t "
        "WHERE p.customer_id = t.customer_id AND p.promise_id = t.promise_id"
    )
    source = "SELECT e.* FROM promise_events e SEMI JOIN touched t USING (customer_id, promise_id)"
    con.execute(f"INSERT INTO promises {fold_sql(source)}")
    con.execute("DROP TABLE touched")


def apply_events(
    con: duckdb.DuckDBPyConnection, events: Iterable[SealedEvent], last_position: int
) -> int:
    """Apply a run of sealed events and record ``last_position``, all in one transaction."""
    columns = _Columns()
    count = 0
    for event in events:
        columns.add(event)
        count += 1
    con.execute("BEGIN TRANSACTION")
    try:
        tables = columns.tables()
        for table, arrow in tables.items():
            _insert(con, table, arrow)
        if "promise_events" in tables:
            _refold(con, tables["promise_events"])
        con.execute(
            "INSERT INTO projection_position VALUES ('ledger', ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            [last_position],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return count


def catch_up(
    con: duckdb.DuckDBPyConnection,
    store: LedgerStore,
    *,
    as_of: datetime | None = None,
    batch_events: int = 50_000,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Apply everything sealed after the recorded position; returns the number of events applied.

    With ``as_of``, events that occurred after it are passed over (the positions still advance), so
    the result is the projection as an auditor would have seen the world at that instant.
    """
    start = applied_position(con) + 1
    target = store.max_position()
    applied = 0
    pending: list[SealedEvent] = []
    last = start - 1
    for page in store.read(start, page=5000):
        last = page[-1].position
        if as_of is None:
            pending.extend(page)
        else:
            pending.extend(e for e in page if _occurred_by(e, as_of))
        if len(pending) >= batch_events:
            applied += apply_events(con, pending, last)
            pending = []
            if on_progress is not None:
                on_progress(last, target)
    if pending or last >= start:
        applied += apply_events(con, pending, last)
    if on_progress is not None:
        on_progress(last, target)
    return applied


def _occurred_by(event: SealedEvent, as_of: datetime | None) -> bool:
    return as_of is None or datetime.fromisoformat(event.body["occurred_at"]) <= as_of
