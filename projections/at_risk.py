"""Promises at risk as of instant T: not settled by T, and due (in force, as of T) within the horizon.

``T < due_in_force ≤ T + horizon`` — a promise due exactly at the horizon is in, one due exactly at
T is not (it is due: overdue, or settled). Soonest first. Each carries ``risk``, the share of what
its team (``made_by``) owed in promises of the same ``kind`` over the 90 days before T that was not
kept on time: promises that became due in ``(T − 90 days, T]`` (their due date in force passed, or
they were settled early), weighted — one minus the team's on-time rate for that kind; null when the
team owed nothing of that kind then.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from ledger.canonical import format_instant
from ledger.instants import shifted
from projections.explain import where_conditions
from projections.promise_fold import classify_sql, horizon
from projections.rows import fetch_rows
from projections.trust_gap import promise_rows_sql

DEFAULT_HORIZON = timedelta(hours=48)
RISK_WINDOW = timedelta(days=90)

AT_RISK = """
WITH p AS ({classified}),
history AS (
    SELECT made_by, kind,
           sum(kept_on_time_w) / nullif(sum(due_w), 0) AS on_time_rate
    FROM p
    WHERE is_due AND least(due_in_force, coalesce(settled_at, due_in_force)) > {t} - {window}
    GROUP BY ALL
)
SELECT p.promise_id, p.customer_id, p.made_by, p.on_behalf_of, p.channel, p.kind, p.due_in_force AS due_at,
       round(epoch(p.due_in_force - {t}) / 3600, 2) AS hours_left, p.weight,
       round(p.kept_on_time_fraction + p.kept_late_fraction, 6) AS kept_so_far,
       round(1 - h.on_time_rate, 6) AS risk, p.made_at
FROM p LEFT JOIN history h USING (made_by, kind)
WHERE NOT p.is_due AND p.due_in_force <= {until}{extra}
"""


def at_risk_sql(
    rows: str, t: str = "$as_of", until: str = "$until", conditions: list[str] | None = None
) -> str:
    """Promises at risk among folded promise ``rows`` as of ``t`` up to ``until`` (T + horizon),
    that also meet ``conditions`` (over the folded rows)."""
    return AT_RISK.format(
        extra="".join(f" AND {c}" for c in conditions or ()),
        classified=classify_sql(rows, t),
        t=t,
        until=until,
        window=f"INTERVAL {int(RISK_WINDOW.total_seconds())} SECOND",
    )


def at_risk(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    within: timedelta = DEFAULT_HORIZON,
    *,
    known_at: datetime | None = None,
    where: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The promises at risk as of ``as_of`` within ``within``, soonest first (then by id);
    ``due_at`` as the ledger writes instants."""
    conditions, params = where_conditions(where)
    risky = at_risk_sql(promise_rows_sql(con, as_of, known_at), conditions=conditions)
    sql = f"SELECT * EXCLUDE (made_at) FROM ({risky}) r ORDER BY due_at, customer_id, promise_id"
    rows = fetch_rows(
        con, sql, {**horizon(sql, as_of, known_at), "until": shifted(as_of, within), **params}
    )
    for row in rows:
        row["due_at"] = format_instant(row["due_at"])
    return rows
