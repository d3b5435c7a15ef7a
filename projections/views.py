"""Views for BI tools, created in every projections file, all evaluated as of one instant.

In the live file that instant is ``now()``; in a replay file it is the replay's ``--as-of``, so an
auditor's file answers every question as the world stood then.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from projections.anomalies import ANOMALIES
from projections.complaints import COMPLAINTS
from projections.contact_pressure import CONTACT_PRESSURE
from projections.promise_fold import classify_sql

VIEWS = ("promise_status", "trust_gap_by_team", "complaints", "contact_pressure", "anomalies")
TABLES = ("promises", "promise_events", "complaint_events", "touchpoints", "ledger_events")


def create_views(con: duckdb.DuckDBPyConnection, as_of: datetime | None = None) -> None:
    instant = "now()" if as_of is None else f"TIMESTAMPTZ '{as_of.isoformat()}'"

    def at(sql: str) -> str:
        return sql.replace("$as_of", instant)

    con.execute(
        f"CREATE OR REPLACE VIEW promise_status AS {at(classify_sql('SELECT * FROM promises'))}"
    )
    con.execute(
        "CREATE OR REPLACE VIEW trust_gap_by_team AS "
        "SELECT made_by, sum(made_w) AS made, sum(due_w) AS due, sum(kept_on_time_w) AS kept_on_time, "
        "sum(kept_late_w) AS kept_late, sum(broken_w) AS broken, sum(overdue_w) AS overdue, "
        "sum(pending_w) AS pending, CASE WHEN sum(due_w) = 0 THEN NULL "
        "ELSE 1 - sum(kept_on_time_w) / sum(due_w) END AS trust_gap "
        "FROM promise_status GROUP BY made_by"
    )
    con.execute(
        f"CREATE OR REPLACE VIEW complaints AS {at(COMPLAINTS.format(promises='SELECT * FROM promises'))}"
    )
    con.execute(f"CREATE OR REPLACE VIEW contact_pressure AS {at(CONTACT_PRESSURE)}")
    con.execute(f"CREATE OR REPLACE VIEW anomalies AS {at(ANOMALIES)}")
