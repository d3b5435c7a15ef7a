"""Complaint handling against service-level targets per severity, as of instant T.

Each complaint's deadlines are its ``filed_at`` plus the targets for its severity
(``CXL_COMPLAINT_ACK_TARGETS`` / ``CXL_COMPLAINT_RESOLVE_TARGETS``). A complaint counts towards
"within target" once it is decided by T: acknowledged (resolved) by T, or its deadline passed
before T without it (at the deadline itself it may still be met); it is within target when acknowledged (resolved) at or before the deadline. Open
complaints whose deadline is still ahead are not counted either way. Percentiles are of the hours
taken by the complaints acknowledged (resolved) by T. "Satisfied" is the share of resolved
complaints whose resolution says ``customer_satisfied: true`` (unknown counts as not satisfied).

Grouped by team (``made_by``, ``on_behalf_of``), a complaint counts for every team whose promise it
cites (once per team), a complaint citing none under null; ``per_100_promises`` divides by the
promises that team had made by T.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from ledger.errors import ConfigError
from ledger.settings import ComplaintTargets
from projections.complaints import complaints_sql
from projections.promise_fold import horizon
from projections.rows import fetch_rows
from projections.trust_gap import promise_rows_sql

GROUPS = ("severity", "channel", "category", "made_by", "on_behalf_of")
TEAM_KEYS = ("made_by", "on_behalf_of")


def parse_groups(by: str | None) -> list[str]:
    keys = [k.strip() for k in (by or "severity").split(",") if k.strip()]
    unknown = [k for k in keys if k not in GROUPS]
    if unknown or not keys:
        raise ConfigError(
            f"--by {', '.join(unknown) or by!r}: not a complaint grouping; choose from "
            f"{', '.join(GROUPS)}"
        )
    return list(dict.fromkeys(keys))


def _seconds(targets: dict[int, timedelta], severity: int) -> int:
    return int(targets[severity].total_seconds())


def with_deadlines_sql(complaints: str, targets: ComplaintTargets) -> str:
    """Complaint rows (``complaints_sql``) with ``acknowledge_due`` and ``resolve_due``."""
    values = ", ".join(
        f"({s}, {_seconds(targets.acknowledge, s)}, {_seconds(targets.resolve, s)})"
        for s in sorted(targets.acknowledge)
    )
    return (
        "SELECT c.*, c.filed_at + to_seconds(t.ack_s) AS acknowledge_due, "
        "c.filed_at + to_seconds(t.resolve_s) AS resolve_due "
        f"FROM ({complaints}) c JOIN (VALUES {values}) t(severity, ack_s, resolve_s) USING (severity)"
    )


SLA = """
SELECT {keys} count(*) AS complaints,
       count(acknowledged_at) AS acknowledged,
       round(avg((acknowledged_at IS NOT NULL AND acknowledged_at <= acknowledge_due)::INTEGER)
             FILTER (WHERE acknowledged_at IS NOT NULL OR acknowledge_due < $as_of), 4)
           AS acknowledged_within_target,
       round(quantile_cont(hours_to_acknowledge, 0.5), 2) AS acknowledge_p50_hours,
       round(quantile_cont(hours_to_acknowledge, 0.9), 2) AS acknowledge_p90_hours,
       count(*) FILTER (WHERE acknowledged_at IS NULL AND acknowledge_due < $as_of)
           AS unacknowledged_past_target,
       count(resolved_at) AS resolved,
       round(avg((resolved_at IS NOT NULL AND resolved_at <= resolve_due)::INTEGER)
             FILTER (WHERE resolved_at IS NOT NULL OR resolve_due < $as_of), 4)
           AS resolved_within_target,
       round(quantile_cont(hours_to_resolve, 0.5), 2) AS resolve_p50_hours,
       round(quantile_cont(hours_to_resolve, 0.9), 2) AS resolve_p90_hours,
       count(*) FILTER (WHERE resolved_at IS NULL AND resolve_due < $as_of)
           AS unresolved_past_target,
       round(avg(coalesce(customer_satisfied, false)::INTEGER) FILTER (WHERE resolved_at IS NOT NULL), 4)
           AS resolved_satisfied,
       round(avg(linked_to_broken_promise::INTEGER), 4) AS citing_broken_promise
FROM ({rows}) c
"""

CITED_TEAMS = """
SELECT DISTINCT c.*, {teams}
FROM ({complaints}) c
LEFT JOIN (SELECT customer_id, complaint_id, unnest(promise_ids) AS promise_id FROM ({complaints}) x) u
    USING (customer_id, complaint_id)
LEFT JOIN ({promises}) p USING (customer_id, promise_id)
"""


def complaint_sla(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    targets: ComplaintTargets,
    by: list[str],
    known_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """Rows of the ``by`` keys with the SLA figures of the complaints filed by ``as_of``."""
    promises = promise_rows_sql(con, as_of, known_at)
    rows = with_deadlines_sql(complaints_sql(con, as_of, known_at), targets)
    if set(by) & set(TEAM_KEYS):
        teams = ", ".join(f"p.{k}" for k in TEAM_KEYS if k in by)
        rows = CITED_TEAMS.format(complaints=rows, promises=promises, teams=teams)
    keys = "".join(f"{k}, " for k in by)
    sql = SLA.format(keys=keys, rows=rows) + f" GROUP BY {', '.join(by)}"
    if set(by) <= set(TEAM_KEYS):
        made = (
            f"SELECT {', '.join(by)}, count(*) AS promises_made FROM ({promises}) p "
            f"WHERE made_at <= $as_of GROUP BY ALL"
        )
        same = " AND ".join(f"s.{k} IS NOT DISTINCT FROM m.{k}" for k in by)
        sql = (
            f"SELECT s.*, m.promises_made, round(100.0 * s.complaints / m.promises_made, 2) "
            f"AS per_100_promises FROM ({sql}) s LEFT JOIN ({made}) m ON {same}"
        )
    sql = f"SELECT * FROM ({sql}) g ORDER BY {', '.join(f'{k} NULLS LAST' for k in by)}"
    return fetch_rows(con, sql, horizon(sql, as_of, known_at))
