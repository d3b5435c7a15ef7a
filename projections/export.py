"""Every projection table and view to Parquet or CSV, one file each, for BI tools without DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb

from projections.views import TABLES, VIEWS


def export_all(con: duckdb.DuckDBPyConnection, directory: Path, fmt: str) -> dict[str, int]:
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
    for name in (*TABLES, *VIEWS):
        target = directory / f"{name}.{fmt}"
        con.execute(f"COPY (SELECT * FROM {name}) TO '{target}' ({options})")
        row = con.execute(f"SELECT count(*) FROM {name}").fetchone()
        written[name] = int(row[0]) if row else 0
    return written
