"""The trust gap by any mix of team, channel, kind, due month, customer and the party a promise was
made on behalf of (``on_behalf_of``: null for the brand's own promises), as of any instant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from ledger.errors import ConfigError
from projections.promise_fold import as_known_sql, classify_sql, horizon, measures_sql

DIMENSIONS = {
    "made_by": "made_by",
    "channel": "channel",
    "kind": "kind",
    "due_month": "due_month",
    "customer": "customer_id",
    "on_behalf_of": "on_behalf_of",
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


def promise_rows_sql(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None = None
) -> str:
    """Folded promise rows as of ``$as_of`` / ``$known_at``: the stored fold itself when every
    projected event is visible then (the fast path of ``gap`` on a large ledger)."""
    latest = "max(occurred_at)" + ("" if known_at is None else ", max(recorded_at)")
    row = con.execute(f"SELECT {latest} FROM promise_events").fetchone()
    if (
        row is None
        or row[0] is None
        or (row[0] <= as_of and (known_at is None or row[1] <= known_at))
    ):
        return "SELECT * FROM promises"
    return as_known_sql()


def classified_promises_sql(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None = None
) -> str:
    return classify_sql(promise_rows_sql(con, as_of, known_at))


def trust_gap(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    by: list[str],
    known_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """Rows of group keys plus weighted made/due/kept/broken/overdue/pending sums and the gap, as
    of ``as_of`` and, for an auditor, as the ledger knew it at ``known_at``.

    With no dimensions, exactly one row. ``trust_gap`` is ``None`` where nothing is due.
    """
    keys = "".join(f"{DIMENSIONS[d]} AS {d}, " for d in by)
    grouped = measures_sql(promise_rows_sql(con, as_of, known_at), keys)
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
    cursor = con.execute(sql, horizon(sql, as_of, known_at))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
