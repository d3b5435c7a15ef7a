"""Analysts' SQL against one projections file, which it may read and nothing else.

The connection is read-only and sandboxed by DuckDB's own settings: no file access beyond the
database itself (no COPY, no readers of other files, no ATTACH, no EXPORT), no extension installed
or loaded from disk, no persistent secrets, no spill files (``temp_directory`` is empty), and the
configuration locked before the query runs, so the query cannot undo any of it with SET or PRAGMA.
On top of the sandbox, every statement must be a query (``SELECT``, ``WITH``, ``FROM``,
``DESCRIBE``, ``SHOW``, ``SUMMARIZE``, ``VALUES``) or its ``EXPLAIN``: nothing else (PRAGMA, CALL,
CHECKPOINT, VACUUM, transactions, temporary tables, prepared statements) is run at all.
A mistake, or a hostile query, can never change the projections, the ledger, or anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from projections.errors import ProjectionsError, QueryError

SANDBOX: dict[str, str | bool | int | float | list[str]] = {
    "access_mode": "READ_ONLY",
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
    "temp_directory": "",
}
QUERY_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def open_sandboxed(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection that can read ``path`` and do nothing else, with its settings locked."""
    if not path.is_file():
        raise ProjectionsError(
            f"no projections file at {path}; run `cxl gap` (live) or `cxl replay` to build one"
        )
    try:
        con = duckdb.connect(str(path), config=SANDBOX)
    except duckdb.Error as exc:
        raise ProjectionsError(f"cannot open {path} as a DuckDB file: {_first_line(exc)}") from exc
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET lock_configuration = true")
    return con


def run_read_only(path: Path, query: str, limit: int = 100_000) -> list[dict[str, Any]]:
    """Rows of ``query`` run against ``path`` (at most ``limit``); refuses anything but reading."""
    if not query.strip():
        raise QueryError("the SQL query is empty")
    con = open_sandboxed(path)
    try:
        for statement in con.extract_statements(query):
            if statement.type not in QUERY_STATEMENTS:
                text = " ".join(statement.query.split())[:80]
                raise QueryError(
                    "refused: cxl sql is read-only and runs queries only (SELECT, WITH, DESCRIBE, "
                    f"SHOW, EXPLAIN); this is a {statement.type.name} statement: {text}"
                )
        cursor = con.execute(query)
        if cursor is None or cursor.description is None:
            return []
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchmany(limit)]
    except duckdb.PermissionException as exc:
        raise QueryError(
            f"refused: cxl sql only reads {path.name} (no other files, extensions or exports): "
            f"{_first_line(exc)}"
        ) from exc
    except duckdb.Error as exc:
        raise QueryError(f"SQL failed (read-only connection): {_first_line(exc)}") from exc
    finally:
        con.close()
