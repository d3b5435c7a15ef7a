"""Complaint handling as of an instant: time to acknowledge and resolve, links to broken promises."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from projections.promise_fold import VISIBLE, horizon
from projections.trust_gap import promise_rows_sql

COMPLAINTS = """
WITH ev AS (SELECT * FROM complaint_events WHERE {visible}),
filed AS (
    SELECT customer_id, complaint_id, occurred_at AS filed_at, channel, category, severity, promise_ids
    FROM ev WHERE type = 'complaint.filed'
    QUALIFY row_number() OVER (PARTITION BY customer_id, complaint_id ORDER BY occurred_at, position) = 1
),
acked AS (
    SELECT customer_id, complaint_id, min(occurred_at) AS acknowledged_at
    FROM ev WHERE type = 'complaint.acknowledged' GROUP BY ALL
),
resolved AS (
    SELECT customer_id, complaint_id, occurred_at AS resolved_at, customer_satisfied
    FROM ev WHERE type = 'complaint.resolved'
    QUALIFY row_number() OVER (PARTITION BY customer_id, complaint_id ORDER BY occurred_at, position) = 1
),
broken AS (
    SELECT customer_id, promise_id FROM ({promises}) p WHERE broken_at IS NOT NULL AND broken_at <= $as_of
),
linked AS (
    SELECT f.customer_id, f.complaint_id, count(b.promise_id) AS linked_broken
    FROM (SELECT customer_id, complaint_id, unnest(promise_ids) AS promise_id FROM filed) f
    JOIN broken b USING (customer_id, promise_id)
    GROUP BY ALL
)
SELECT f.customer_id, f.complaint_id, f.filed_at, f.channel, f.category, f.severity, f.promise_ids,
       a.acknowledged_at, r.resolved_at, r.customer_satisfied,
       round(epoch(a.acknowledged_at - f.filed_at) / 3600, 6) AS hours_to_acknowledge,
       round(epoch(r.resolved_at - f.filed_at) / 3600, 6) AS hours_to_resolve,
       coalesce(l.linked_broken, 0) > 0 AS linked_to_broken_promise
FROM filed f
LEFT JOIN acked a USING (customer_id, complaint_id)
LEFT JOIN resolved r USING (customer_id, complaint_id)
LEFT JOIN linked l USING (customer_id, complaint_id)
"""


def complaints_sql(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None = None
) -> str:
    return COMPLAINTS.format(promises=promise_rows_sql(con, as_of, known_at), visible=VISIBLE)


def complaint_summary(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None = None
) -> dict[str, Any]:
    sql = f"""SELECT count(*) AS complaints,
                   count(acknowledged_at) AS acknowledged,
                   count(resolved_at) AS resolved,
                   round(median(hours_to_acknowledge), 2) AS median_hours_to_acknowledge,
                   round(median(hours_to_resolve), 2) AS median_hours_to_resolve,
                   round(avg(linked_to_broken_promise::INTEGER), 4) AS share_linked_to_broken
            FROM ({complaints_sql(con, as_of, known_at)}) c"""
    row = con.execute(sql, horizon(sql, as_of, known_at))
    names = [d[0] for d in row.description]
    return dict(zip(names, row.fetchone() or (), strict=True))
