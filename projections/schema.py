"""The DuckDB file behind every projection: fact tables appended from the ledger, one folded table.

Facts (``ledger_events``, ``promise_events``, ``complaint_events``, ``touchpoints``) are appended in
ledger order and never updated; ``promises`` is their fold, one row per promise, recomputed for the
promises each batch touches. ``projection_position`` holds the last ledger position applied, with the
hashes that bind it to its ledger (``ledger_binding``), written in the same transaction as the rows
it produced. Time zone is pinned to UTC so month buckets and
exports do not depend on the machine.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from projections.errors import ProjectionsError

FACT_TABLES = {
    "ledger_events": """
        position BIGINT NOT NULL, customer_id VARCHAR NOT NULL, seq BIGINT NOT NULL,
        event_id VARCHAR NOT NULL, type VARCHAR NOT NULL, occurred_at TIMESTAMPTZ NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL, source VARCHAR NOT NULL, hash VARCHAR NOT NULL
    """,
    "promise_events": """
        position BIGINT NOT NULL, customer_id VARCHAR NOT NULL, promise_id VARCHAR NOT NULL,
        type VARCHAR NOT NULL, occurred_at TIMESTAMPTZ NOT NULL, made_by VARCHAR, channel VARCHAR,
        kind VARCHAR, due_at TIMESTAMPTZ, weight DOUBLE, fraction DOUBLE, new_due_at TIMESTAMPTZ,
        agreed_by_customer BOOLEAN, recorded_at TIMESTAMPTZ NOT NULL, on_behalf_of VARCHAR
    """,
    "complaint_events": """
        position BIGINT NOT NULL, customer_id VARCHAR NOT NULL, complaint_id VARCHAR NOT NULL,
        type VARCHAR NOT NULL, occurred_at TIMESTAMPTZ NOT NULL, channel VARCHAR, category VARCHAR,
        severity INTEGER, promise_ids VARCHAR[], customer_satisfied BOOLEAN,
        recorded_at TIMESTAMPTZ NOT NULL
    """,
    "touchpoints": """
        position BIGINT NOT NULL, customer_id VARCHAR NOT NULL, occurred_at TIMESTAMPTZ NOT NULL,
        channel VARCHAR NOT NULL, direction VARCHAR NOT NULL, automated BOOLEAN NOT NULL,
        purpose VARCHAR NOT NULL, duration_s DOUBLE, recorded_at TIMESTAMPTZ NOT NULL
    """,
}

PROMISES_TABLE = """
    customer_id VARCHAR NOT NULL, promise_id VARCHAR NOT NULL, made_at TIMESTAMPTZ NOT NULL,
    made_by VARCHAR NOT NULL, channel VARCHAR NOT NULL, kind VARCHAR NOT NULL, weight DOUBLE NOT NULL,
    due_at TIMESTAMPTZ NOT NULL, due_in_force TIMESTAMPTZ NOT NULL, due_month DATE NOT NULL,
    renegotiations INTEGER NOT NULL, broken_at TIMESTAMPTZ, keeps INTEGER NOT NULL,
    kept_on_time_fraction DOUBLE NOT NULL, kept_late_fraction DOUBLE NOT NULL,
    first_kept_at TIMESTAMPTZ, last_kept_at TIMESTAMPTZ, settled_at TIMESTAMPTZ, on_behalf_of VARCHAR
"""


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating when writable) the projections file with the schema in place."""
    if read_only and not path.exists():
        raise ProjectionsError(
            f"no projections at {path} yet; run `cxl gap` or `cxl demo` to build them"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path), read_only=read_only)
    except OSError as exc:
        raise ProjectionsError(f"cannot create {path}: {exc.strerror or exc}") from exc
    except duckdb.Error as exc:
        reason = str(exc).strip().splitlines()[0]
        if "lock" in reason.lower():
            reason += " (only one process may write a DuckDB file at a time)"
        raise ProjectionsError(f"cannot open {path}: {reason}") from exc
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        create_schema(con)
    return con


PERSONAL_COLUMNS = ("reason", "resolution", "outcome")
"""Columns of personal text that projections made before crypto-shredding held."""


def outdated(path: Path) -> str | None:
    """Why the projections file at ``path``, built by an earlier cx-ledger, must be deleted and
    rebuilt rather than caught up (None when it need not): it copied personal text into its
    tables (which DuckDB may keep in old blocks, so it is deleted, not altered), or its fact
    tables lack ``recorded_at`` (what the ledger knew when: ``--known-at``) or ``on_behalf_of``
    (the stakeholder web)."""
    if not path.is_file():
        return None
    con = connect(path, read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_name IN "
            "('promise_events', 'complaint_events', 'touchpoints')"
        ).fetchall()
    finally:
        con.close()
    if any(column in PERSONAL_COLUMNS for _, column in columns):
        return f"{path} was built by an earlier cx-ledger and holds personal text"
    tables = {table for table, _ in columns}
    if tables and tables != {table for table, column in columns if column == "recorded_at"}:
        return f"{path} was built by an earlier cx-ledger, without recorded_at"
    if "promise_events" in tables and ("promise_events", "on_behalf_of") not in columns:
        return f"{path} was built by an earlier cx-ledger, without on_behalf_of"
    return None


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE IF NOT EXISTS projection_position (name VARCHAR PRIMARY KEY, position BIGINT NOT NULL)"
    )
    for column in ("position_hash", "first_hash"):  # files made before projections were bound
        con.execute(f"ALTER TABLE projection_position ADD COLUMN IF NOT EXISTS {column} VARCHAR")
    for name, columns in FACT_TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    con.execute(f"CREATE TABLE IF NOT EXISTS promises ({PROMISES_TABLE})")


def clear(con: duckdb.DuckDBPyConnection) -> None:
    """Empty every table and the recorded position, in one transaction: the start of a rebuild."""
    con.execute("BEGIN TRANSACTION")
    try:
        for name in (*FACT_TABLES, "promises", "projection_position"):
            con.execute(f"DELETE FROM {name}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def applied_position(con: duckdb.DuckDBPyConnection, name: str = "ledger") -> int:
    row = con.execute("SELECT position FROM projection_position WHERE name = ?", [name]).fetchone()
    return int(row[0]) if row else 0
