"""Query results as dicts keyed by column name: what every projection hands to the CLI and API."""

from __future__ import annotations

from typing import Any

import duckdb


def fetch_rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Rows of ``sql`` run with those of ``params`` it names (DuckDB refuses the others)."""
    cursor = con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
