"""The store's physical ceiling: the rows an ingest wrote, inserted again straight into tables of
the same shape, with no ledger code in between.

The rows are every event row (creation rows included), event-id row and Merkle leaf that the
benchmark's end-to-end ingest wrote, in the order it wrote them, in transactions of ``batch``
sealed events: SQLite in WAL mode with ``synchronous=FULL`` (as the ledger runs it), PostgreSQL
with ``COPY`` into copies of the tables (``LIKE … INCLUDING ALL``: same columns, keys, indexes).
What ingest costs beyond this is the ledger's own work.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.figures import Figure, rate

_TABLES = ("stored_events", "cxl_event_ids", "cxl_tree_leaves")


def _batches(
    events: list[tuple[Any, ...]], ids: list[Any], leaves: list[Any], batch: int, version: int
) -> Iterator[tuple[list[Any], list[Any], list[Any]]]:
    """Slices of the three tables' rows, ``batch`` sealed events per slice (``version``: the
    column holding the stream version; 1 is a creation row)."""
    start = sealed = done = 0
    for index, row in enumerate(events):
        if row[version] > 1:
            sealed += 1
            if sealed - done == batch:
                yield events[start : index + 1], ids[done:sealed], leaves[done:sealed]
                start, done = index + 1, sealed
    if start < len(events) or done < sealed:
        yield events[start:], ids[done:], leaves[done:]


def sqlite_insert(store: Path, batch: int) -> Figure:
    """Raw insert rate (sealed events/s) of ``store``'s rows into a new SQLite file."""
    source = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
    ddl = [
        row[0]
        for row in source.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN (?, ?, ?)",
            _TABLES,
        )
    ]
    events = source.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
    ).fetchall()
    ids = source.execute("SELECT * FROM cxl_event_ids ORDER BY rowid").fetchall()
    leaves = source.execute("SELECT * FROM cxl_tree_leaves ORDER BY leaf").fetchall()
    source.close()
    with tempfile.TemporaryDirectory() as tmp:
        target = sqlite3.connect(Path(tmp) / "raw.sqlite", isolation_level=None)
        target.execute("PRAGMA journal_mode=WAL")
        target.execute("PRAGMA synchronous=FULL")
        for statement in ddl:
            target.execute(statement)
        started = time.perf_counter()
        for event_rows, id_rows, leaf_rows in _batches(events, ids, leaves, batch, 1):
            target.execute("BEGIN")
            target.executemany(
                "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
                "VALUES (?, ?, ?, ?)",
                event_rows,
            )
            target.executemany("INSERT INTO cxl_event_ids VALUES (?, ?, ?)", id_rows)
            target.executemany("INSERT INTO cxl_tree_leaves VALUES (?, ?)", leaf_rows)
            target.execute("COMMIT")
        elapsed = time.perf_counter() - started
        target.close()
    return rate("raw SQLite insert of the same rows (WAL, synchronous=FULL)", len(leaves), elapsed)


def postgres_copy(url: str, schema: str, batch: int) -> Figure:
    """Raw ``COPY`` rate (sealed events/s) of ``schema``'s rows into copies of its tables."""
    import psycopg

    raw = f"{schema}_raw"
    with psycopg.connect(url, autocommit=True) as conn:
        events = conn.execute(
            f'SELECT originator_id, originator_version, topic, state FROM "{schema}".cxl_events '
            "ORDER BY notification_id"
        ).fetchall()
        ids = conn.execute(f'SELECT * FROM "{schema}".cxl_event_ids').fetchall()
        leaves = conn.execute(f'SELECT * FROM "{schema}".cxl_tree_leaves ORDER BY leaf').fetchall()
        conn.execute(f'CREATE SCHEMA "{raw}"')
        try:
            for table in ("cxl_events", "cxl_event_ids", "cxl_tree_leaves"):
                conn.execute(
                    f'CREATE TABLE "{raw}".{table} (LIKE "{schema}".{table} INCLUDING ALL)'
                )
            started = time.perf_counter()
            for event_rows, id_rows, leaf_rows in _batches(events, ids, leaves, batch, 1):
                with conn.transaction(), conn.cursor() as cursor:
                    for table, columns, rows in (
                        (
                            "cxl_events",
                            "(originator_id, originator_version, topic, state)",
                            event_rows,
                        ),
                        ("cxl_event_ids", "", id_rows),
                        ("cxl_tree_leaves", "", leaf_rows),
                    ):
                        with cursor.copy(f'COPY "{raw}".{table} {columns} FROM STDIN') as copy:
                            for row in rows:
                                copy.write_row(row)
            elapsed = time.perf_counter() - started
        finally:
            conn.execute(f'DROP SCHEMA "{raw}" CASCADE')
    return rate("raw PostgreSQL COPY of the same rows", len(leaves), elapsed)
