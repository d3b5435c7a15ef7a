"""Which alerts are due at instant ``now``, from the projections (see ``ledger.alert_contract``).

* ``promise.at_risk`` — the promise is at risk (``projections.at_risk``) within the horizon;
* ``promise.overdue`` — its due date in force has passed and it is neither settled nor broken;
* ``promise.broken`` — it is broken (explicitly or by a renegotiation the customer did not agree);
* ``complaint.unacknowledged`` / ``complaint.unresolved`` — the deadline for its severity passed
  before ``now`` (at the deadline itself it may still be met) and it is still not acknowledged /
  resolved.

Conditions that arose before ``now − lookback`` (a due date, a break, a deadline) are not alerted:
an alerter started on a long history reports what is current, not years of old breaches. Whether
an alert was already published is not decided here but by its ``alert_id`` (``consumers.alerts``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import duckdb

from ledger.alert_contract import ComplaintAlert, PromiseAlert, alert_id
from ledger.instants import shifted
from ledger.settings import ComplaintTargets, Settings
from projections.at_risk import at_risk_sql
from projections.complaint_sla import with_deadlines_sql
from projections.complaints import complaints_sql
from projections.promise_fold import classify_sql, horizon
from projections.rows import fetch_rows
from projections.trust_gap import promise_rows_sql

PROMISE_COLUMNS = "promise_id, customer_id, made_by, on_behalf_of, channel, kind, weight"

LATE_PROMISES = f"""
SELECT CASE status WHEN 'broken' THEN 'promise.broken' ELSE 'promise.overdue' END AS type,
       {PROMISE_COLUMNS}, due_in_force AS due_at, broken_at
FROM ({{classified}}) p
WHERE (status = 'overdue' AND due_in_force > $since)
   OR (status = 'broken' AND broken_at > $since)
"""

LATE_COMPLAINTS = """
SELECT 'complaint.unacknowledged' AS type, customer_id, complaint_id, severity, channel, category,
       filed_at, acknowledge_due AS due_at
FROM ({rows}) c WHERE acknowledged_at IS NULL AND acknowledge_due < $as_of AND acknowledge_due > $since
UNION ALL
SELECT 'complaint.unresolved', customer_id, complaint_id, severity, channel, category,
       filed_at, resolve_due
FROM ({rows}) c WHERE resolved_at IS NULL AND resolve_due < $as_of AND resolve_due > $since
"""


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def due_alerts(
    con: duckdb.DuckDBPyConnection,
    now: datetime,
    within: timedelta,
    lookback: timedelta,
    targets: ComplaintTargets,
) -> Iterator[PromiseAlert | ComplaintAlert]:
    """Every alert whose condition holds at ``now`` (and arose after ``now − lookback``)."""
    promises = promise_rows_sql(con, now)
    params = {"since": shifted(now, -lookback), "until": shifted(now, within)}
    at_risk = f"SELECT 'promise.at_risk' AS type, * FROM ({at_risk_sql(promises)}) r"
    late = LATE_PROMISES.format(classified=classify_sql(promises))
    for sql in (at_risk, late):
        for row in fetch_rows(con, sql, {**horizon(sql, now), **params}):
            yield PromiseAlert(
                alert_id=alert_id(
                    row["type"], row["customer_id"], row["promise_id"], row["due_at"]
                ),
                type=row["type"],
                customer_id=row["customer_id"],
                raised_at=now,
                due_at=row["due_at"],
                promise_id=row["promise_id"],
                made_by=row["made_by"],
                on_behalf_of=row["on_behalf_of"],
                channel=row["channel"],
                kind=row["kind"],
                weight=row["weight"],
                hours_left=_hours(row["due_at"] - now),
                risk=row.get("risk"),
                broken_at=row.get("broken_at"),
            )
    complaints = with_deadlines_sql(complaints_sql(con, now), targets)
    sql = LATE_COMPLAINTS.format(rows=complaints)
    for row in fetch_rows(con, sql, {**horizon(sql, now), "since": params["since"]}):
        target = (
            targets.acknowledge if row["type"] == "complaint.unacknowledged" else targets.resolve
        )
        yield ComplaintAlert(
            alert_id=alert_id(row["type"], row["customer_id"], row["complaint_id"], row["due_at"]),
            type=row["type"],
            customer_id=row["customer_id"],
            raised_at=now,
            due_at=row["due_at"],
            complaint_id=row["complaint_id"],
            severity=row["severity"],
            channel=row["channel"],
            category=row["category"],
            filed_at=row["filed_at"],
            target_hours=_hours(target[row["severity"]]),
        )


def alerts_due(
    con: duckdb.DuckDBPyConnection, settings: Settings, now: datetime
) -> list[PromiseAlert | ComplaintAlert]:
    """``due_alerts`` with the horizon, lookback and SLA targets of ``settings``."""
    return list(
        due_alerts(con, now, settings.horizon, settings.lookback, settings.complaint_targets)
    )
