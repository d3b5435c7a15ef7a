"""Analysts' SQL against a projections file, read-only: a mistake can never change the projections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from ledger.errors import ConfigError
from projections.schema import connect


def run_read_only(path: Path, query: str, limit: int = 100_000) -> list[dict[str, Any]]:
    con = connect(path, read_only=True)
    try:
        cursor = con.execute(query)
        if cursor.description is None:
            return []
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchmany(limit)]
    except duckdb.Error as exc:
        raise ConfigError(f"SQL failed: {exc}".splitlines()[0]) from exc
    finally:
        con.close()
