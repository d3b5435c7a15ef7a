"""Views for BI tools, created in every projections file, all evaluated as of one instant.

In the live file that instant is ``now()`` — an event dated in the future does not count yet, exactly
as in ``cxl gap`` — and in a replay file it is the replay's ``--as-of``, so an auditor's file
answers every question as the world stood then.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import duckdb

from projections.anomalies import ANOMALIES
from projections.at_risk import DEFAULT_HORIZON, at_risk_sql
from projections.complaints import COMPLAINTS
from projections.contact_pressure import CONTACT_PRESSURE
from projections.promise_fold import VISIBLE, as_known_sql, classify_sql

VIEWS = (
    "promise_status",
    "trust_gap_by_team",
    "promises_at_risk",
    "complaints",
    "contact_pressure",
    "anomalies",
)
TABLES = ("promises", "promise_events", "complaint_events", "touchpoints", "ledger_events")


def view_statements(
    as_of: datetime | None = None, within: timedelta = DEFAULT_HORIZON
) -> list[str]:
    """The statements that (re)create every view, evaluated as of ``as_of`` (``now()`` if None);
    ``promises_at_risk`` looks ``within`` ahead (``CXL_AT_RISK_HORIZON``)."""
    instant = "now()" if as_of is None else f"TIMESTAMPTZ '{as_of.isoformat()}'"
    until = f"{instant} + INTERVAL {int(within.total_seconds())} SECOND"

    def at(sql: str) -> str:
        return sql.replace("$as_of", instant).replace("$known_at", "'infinity'::TIMESTAMPTZ")

    promises = as_known_sql()
    return [
        f"CREATE OR REPLACE VIEW promise_status AS {at(classify_sql(promises))}",
        "CREATE OR REPLACE VIEW trust_gap_by_team AS "
        "SELECT made_by, sum(made_w) AS made, sum(due_w) AS due, sum(kept_on_time_w) AS kept_on_time, "
        "sum(kept_late_w) AS kept_late, sum(broken_w) AS broken, sum(overdue_w) AS overdue, "
        "sum(pending_w) AS pending, CASE WHEN sum(due_w) = 0 THEN NULL "
        "ELSE 1 - sum(kept_on_time_w) / sum(due_w) END AS trust_gap "
        "FROM promise_status GROUP BY made_by",
        "CREATE OR REPLACE VIEW promises_at_risk AS SELECT * EXCLUDE (made_at) FROM ("
        + at(at_risk_sql(promises, instant, until))
        + ") r ORDER BY due_at, customer_id, promise_id",
        "CREATE OR REPLACE VIEW complaints AS "
        + at(COMPLAINTS.format(promises=promises, visible=VISIBLE)),
        f"CREATE OR REPLACE VIEW contact_pressure AS {at(CONTACT_PRESSURE)}",
        f"CREATE OR REPLACE VIEW anomalies AS {at(ANOMALIES)}",
    ]


def create_views(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime | None = None,
    within: timedelta = DEFAULT_HORIZON,
) -> None:
    """Create the views, unless the file already holds these very definitions.

    A digest of the statements is kept in ``projection_views``: reopening a file whose views are
    current writes nothing, so a question asked when nothing new was sealed leaves it byte-identical.
    """
    statements = view_statements(as_of, within)
    digest = hashlib.sha256("\n".join(statements).encode()).hexdigest()
    con.execute("CREATE TABLE IF NOT EXISTS projection_views (digest VARCHAR NOT NULL)")
    row = con.execute("SELECT digest FROM projection_views").fetchone()
    existing = {name for (name,) in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    if row is not None and row[0] == digest and existing.issuperset(VIEWS):
        return
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in statements:
            con.execute(statement)
        con.execute("DELETE FROM projection_views")
        con.execute("INSERT INTO projection_views VALUES (?)", [digest])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
