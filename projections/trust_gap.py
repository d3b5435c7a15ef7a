"""The trust gap by any mix of team, channel, kind, due month and customer, as of any instant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from ledger.errors import ConfigError
from projections.promise_fold import classify_sql, fold_sql, measures_sql

DIMENSIONS = {
    "made_by": "made_by",
    "channel": "channel",
    "kind": "kind",
    "due_month": "due_month",
    "customer": "customer_id",
}
# Applied to the (few) grouped rows, not to every promise: formatting 10M dates dominated the query.
PRESENTATION = {"due_month": "strftime(due_month, '%Y-%m')"}
MEASURES = ("made", "due", "kept_on_time", "kept_late", "broken", "overdue", "pending")


def parse_dimensions(by: str | None) -> list[str]:
    if not by:
        return []
    dims = [d.strip() for d in by.split(",") if d.strip()]
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise ConfigError(
            f"--by {', '.join(unknown)}: not a dimension; choose from {', '.join(DIMENSIONS)}"
        )
    return list(dict.fromkeys(dims))


def promise_rows_sql(con: duckdb.DuckDBPyConnection, as_of: datetime) -> str:
    """Folded promise rows as of ``$as_of``: the stored fold when nothing projected is later."""
    latest = con.execute("SELECT max(occurred_at) FROM promise_events").fetchone()
    if latest is None or latest[0] is None or latest[0] <= as_of:
        return "SELECT * FROM promises"
    return fold_sql("SELECT * FROM promise_events WHERE occurred_at <= $as_of")


def classified_promises_sql(con: duckdb.DuckDBPyConnection, as_of: datetime) -> str:
    return classify_sql(promise_rows_sql(con, as_of))


def trust_gap(
    con: duckdb.DuckDBPyConnection, as_of: datetime, by: list[str]
) -> list[dict[str, Any]]:
    """Rows of group keys plus weighted made/due/kept/broken/overdue/pending sums and the gap.

    With no dimensions, exactly one row. ``trust_gap`` is ``None`` where nothing is due.
    """
    keys = "".join(f"{DIMENSIONS[d]} AS {d}, " for d in by)
    grouped = measures_sql(promise_rows_sql(con, as_of), keys)
    if by:
        grouped += f" GROUP BY {', '.join(DIMENSIONS[d] for d in by)}"
    shown = "".join(f"{PRESENTATION.get(d, d)} AS {d}, " for d in by)
    rounded = ", ".join(f"round(coalesce({m}, 0), 9) AS {m}" for m in MEASURES)
    sql = (
        f"SELECT {shown}{rounded}, CASE WHEN coalesce(due, 0) = 0 THEN NULL "
        f"ELSE round(1 - kept_on_time / due, 9) END AS trust_gap FROM ({grouped}) g"
    )
    if by:
        sql += f" ORDER BY {', '.join(by)}"
    cursor = con.execute(sql, {"as_of": as_of})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
