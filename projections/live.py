"""The live projections file under ``CXL_HOME``: caught up with the ledger before every question."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb

from ledger.errors import StoreError
from ledger.store import LedgerStore
from projections.follower import catch_up
from projections.schema import connect
from projections.views import create_views


def open_caught_up(
    path: Path, store: LedgerStore, on_progress: Callable[[int, int], None] | None = None
) -> duckdb.DuckDBPyConnection:
    """A read-write connection to the live projections, with everything sealed applied."""
    con = connect(path)
    create_views(con)
    catch_up(con, store, on_progress=on_progress)
    return con


def replay(
    store: LedgerStore,
    as_of: datetime,
    to: Path,
    *,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Build every projection into a new file from the events that occurred by ``as_of``."""
    if to.exists():
        if not overwrite:
            raise StoreError(f"{to} exists; choose another file or pass --force to replace it")
        to.unlink()
    con = connect(to)
    try:
        applied = catch_up(con, store, as_of=as_of, on_progress=on_progress)
        create_views(con, as_of)
        con.execute(
            "CREATE TABLE replay_info AS SELECT ?::TIMESTAMPTZ AS as_of, now() AS built_at", [as_of]
        )
    finally:
        con.close()
    return applied
