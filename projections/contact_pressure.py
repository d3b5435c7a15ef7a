"""Contact pressure: inbound vs outbound touchpoints per customer per 30-day window, share automated;
and contact that serves rather than pushes.

``contact_groups`` looks at customer-windows: 30-day windows counted back from instant T
(``(T − 30 days, T]``, the one before, …), one row per customer per window with any touchpoint. A
customer-window is *saturated* when it holds at least ``CXL_CONTACT_SATURATION`` outbound
touchpoints, and *met only machines* when it holds inbound touchpoints and every one of them was
automated. Each group's complaint rate is the complaints the customer filed in that same window,
per 100 customer-windows, set against the rest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from projections.promise_fold import VISIBLE, horizon
from projections.rows import fetch_rows

WINDOW_SECONDS = 30 * 86400

CONTACT_PRESSURE = f"""
SELECT customer_id,
       to_timestamp(floor(epoch(occurred_at) / {WINDOW_SECONDS}) * {WINDOW_SECONDS}) AS window_start,
       count(*) FILTER (WHERE direction = 'inbound') AS inbound,
       count(*) FILTER (WHERE direction = 'outbound') AS outbound,
       round(avg(automated::INTEGER), 4) AS automated_share
FROM touchpoints WHERE {VISIBLE}
GROUP BY ALL
"""

_WINDOW = f"floor(epoch($as_of - occurred_at) / {WINDOW_SECONDS})::BIGINT"

CUSTOMER_WINDOWS = f"""
WITH t AS (
    SELECT customer_id, {_WINDOW} AS windows_back,
           count(*) FILTER (WHERE direction = 'outbound') AS outbound,
           count(*) FILTER (WHERE direction = 'inbound') AS inbound,
           count(*) FILTER (WHERE direction = 'inbound' AND NOT automated) AS inbound_with_a_person,
           count(*) FILTER (WHERE automated) AS automated,
           count(*) AS touchpoints
    FROM touchpoints WHERE {VISIBLE} GROUP BY ALL
),
c AS (
    SELECT customer_id, {_WINDOW} AS windows_back, count(DISTINCT complaint_id) AS complaints
    FROM complaint_events WHERE type = 'complaint.filed' AND {VISIBLE} GROUP BY ALL
)
SELECT t.*, coalesce(c.complaints, 0) AS complaints,
       t.outbound >= $saturation AS saturated,
       t.inbound > 0 AND t.inbound_with_a_person = 0 AS met_only_machines
FROM t LEFT JOIN c USING (customer_id, windows_back)
"""

GROUPS = """
WITH w AS ({windows}),
g AS (
    SELECT 'all customers' AS grp, 0 AS ord, * FROM w
    UNION ALL SELECT CASE WHEN saturated THEN 'saturated' ELSE 'not saturated' END,
                     CASE WHEN saturated THEN 1 ELSE 2 END, * FROM w
    UNION ALL SELECT CASE WHEN met_only_machines THEN 'inbound met only machines'
                          ELSE 'inbound met a person' END,
                     CASE WHEN met_only_machines THEN 3 ELSE 4 END, *
              FROM w WHERE inbound > 0
)
SELECT grp AS "group", count(*) AS customer_windows, count(DISTINCT customer_id) AS customers,
       count(DISTINCT customer_id) FILTER (WHERE windows_back = 0) AS customers_last_30_days,
       round(avg(outbound), 2) AS outbound_per_window, round(avg(inbound), 2) AS inbound_per_window,
       round(sum(automated) / sum(touchpoints), 4) AS automated_share,
       sum(complaints)::BIGINT AS complaints,
       round(100.0 * sum(complaints) / count(*), 2) AS complaints_per_100
FROM g GROUP BY grp, ord ORDER BY ord
"""


def contact_groups(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    saturation: int,
    known_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per group (all, saturated or not, inbound met only machines or a person): its
    customer-windows, contact and complaint rate — the figures ``cxl contact`` prints."""
    sql = GROUPS.format(windows=CUSTOMER_WINDOWS)
    return fetch_rows(con, sql, {**horizon(sql, as_of, known_at), "saturation": saturation})
