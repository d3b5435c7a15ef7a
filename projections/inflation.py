"""Promise inflation: are promises made growing faster than promises kept on time?

Per group (``made_by``, ``channel``, ``kind`` or ``on_behalf_of``) and calendar month (UTC), as of
instant T, over the months that are over by T (the month T falls in is not, and is left out):

* ``made`` — weight of the promises made that month;
* ``kept_on_time`` — weight kept on time of the promises whose due date in force falls in that
  month (final once the month is over: a keep after the due date is late);
* ``made_growth`` / ``kept_on_time_growth`` — month-on-month, null after a month of zero;
* ``inflation_index`` — with ``M`` and ``K`` the sums of made and kept on time over the N months
  ending with this one, ``(M / M of the month before) / (K / K of the month before)``: how much
  faster made grew than kept on time, smoothed over N months; > 1 is inflation. Null until N + 1
  months of the group exist, or when a sum is zero;
* ``flagged`` — for N consecutive months ending with this one, M grew and the index was > 1.

A group is flagged (``cxl inflation``'s verdict, the report's) when its last month is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from ledger.errors import ConfigError
from projections.promise_fold import classify_sql, horizon
from projections.rows import fetch_rows
from projections.trust_gap import promise_rows_sql

GROUPS = ("made_by", "channel", "kind", "on_behalf_of")
DEFAULT_MONTHS = 3

INFLATION = """
WITH p AS ({classified}),
made AS (
    SELECT {key} AS grp, date_trunc('month', made_at)::DATE AS month, sum(weight) AS made
    FROM p GROUP BY ALL
),
kept AS (
    SELECT {key} AS grp, due_month AS month, sum(kept_on_time_w) AS kept_on_time
    FROM p WHERE is_due GROUP BY ALL
),
span AS (
    SELECT grp, min(month) AS first_month FROM (SELECT grp, month FROM made UNION ALL SELECT grp, month FROM kept)
    GROUP BY grp
),
grid AS (
    SELECT grp, unnest(generate_series(first_month, last_month, INTERVAL 1 MONTH))::DATE AS month
    FROM span, (SELECT (date_trunc('month', $as_of) - INTERVAL 1 MONTH)::DATE AS last_month)
    WHERE first_month <= last_month
),
monthly AS (
    SELECT g.grp, g.month, coalesce(m.made, 0) AS made, coalesce(k.kept_on_time, 0) AS kept_on_time
    FROM grid g
    LEFT JOIN made m ON m.grp IS NOT DISTINCT FROM g.grp AND m.month = g.month
    LEFT JOIN kept k ON k.grp IS NOT DISTINCT FROM g.grp AND k.month = g.month
),
smoothed AS (
    SELECT *,
           count(*) OVER w AS months_in_window,
           sum(made) OVER w AS made_n, sum(kept_on_time) OVER w AS kept_n,
           lag(made) OVER o AS made_before, lag(kept_on_time) OVER o AS kept_before
    FROM monthly
    WINDOW w AS (PARTITION BY grp ORDER BY month ROWS {preceding} PRECEDING),
           o AS (PARTITION BY grp ORDER BY month)
),
indexed AS (
    SELECT *,
           CASE WHEN months_in_window = {n} THEN made_n END AS m_n,
           CASE WHEN months_in_window = {n} THEN kept_n END AS k_n
    FROM smoothed
),
growth AS (
    SELECT *, lag(m_n) OVER o AS m_before, lag(k_n) OVER o AS k_before
    FROM indexed WINDOW o AS (PARTITION BY grp ORDER BY month)
),
scored AS (
    SELECT *,
           CASE WHEN m_before > 0 AND k_before > 0 AND k_n > 0
                THEN (m_n / m_before) / (k_n / k_before) END AS index_raw
    FROM growth
)
SELECT grp AS {name}, strftime(month, '%Y-%m') AS month,
       round(made, 6) AS made, round(kept_on_time, 6) AS kept_on_time,
       round(CASE WHEN made_before > 0 THEN made / made_before - 1 END, 4) AS made_growth,
       round(CASE WHEN kept_before > 0 THEN kept_on_time / kept_before - 1 END, 4) AS kept_on_time_growth,
       round(index_raw, 4) AS inflation_index,
       coalesce(count(*) FILTER (WHERE index_raw > 1 AND m_n > m_before)
                    OVER (PARTITION BY grp ORDER BY month ROWS {preceding} PRECEDING) = {n}, false)
           AS flagged
FROM scored
ORDER BY {name} NULLS LAST, month
"""


def inflation(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    by: str = "made_by",
    months: int = DEFAULT_MONTHS,
    known_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per group and complete month (see the module's definitions)."""
    if by not in GROUPS:
        raise ConfigError(f"--by {by!r}: choose one of {', '.join(GROUPS)}")
    if not 1 <= months <= 24:
        raise ConfigError(f"--months {months}: choose from 1 to 24")
    sql = INFLATION.format(
        classified=classify_sql(promise_rows_sql(con, as_of, known_at)),
        key=by,
        name=by,
        n=months,
        preceding=months - 1,
    )
    return fetch_rows(con, sql, horizon(sql, as_of, known_at))


def flagged_groups(rows: list[dict[str, Any]], by: str) -> dict[Any, bool]:
    """Each group's verdict: whether its last complete month is flagged."""
    verdict: dict[Any, bool] = {}
    for row in rows:
        verdict[row[by]] = row["flagged"]
    return verdict
