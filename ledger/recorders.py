"""The ledger's recorders: eventsourcing's process recorders, extended where the library invites it.

Two tables join the library's stored events and tracking, written in the same transaction:

- ``cxl_event_ids``: one row per sealed event (``event_id``, ``customer_id``, content ``digest``).
  Its primary key makes ``event_id`` global and permanent across every customer and every writer,
  and lets a writer decide duplicate vs. conflict with one indexed query per batch instead of an
  in-memory set that grows with history. ``cxl verify`` checks it against the sealed events.
- ``cxl_source_marks``: per tracked source (a Kafka partition's epoch), the position last recorded
  and a fingerprint of the record at that position, so that a log replaced by another of any
  length is recognised by identity, not length.

``sealing()`` is the only write path: a transaction that holds the store's write lock from its
first statement (``BEGIN IMMEDIATE`` on SQLite, ``LOCK TABLE`` on PostgreSQL), so that everything
decided inside it (the seal instant, seqs, hashes) is decided against the store as it will be when
the transaction commits. That is what keeps ``recorded_at`` non-decreasing along the ledger order
when several writers share a store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder
from eventsourcing.utils import retry

# A terminated or restarted database session is reconnected, as the library's own reads are.
_reconnecting = retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)


@dataclass(frozen=True, slots=True)
class KnownEvent:
    """What the store holds for an ``event_id`` already sealed."""

    customer_id: str
    digest: str


@dataclass(frozen=True, slots=True)
class SourceMark:
    """The last recorded position of a tracked source and the fingerprint of its record there."""

    position: int
    fingerprint: str


def mark_mismatch(position: int | None, mark: SourceMark | None) -> str | None:
    """Why a recorded position and its mark disagree (they are written in one transaction, so
    any disagreement is an edit made outside cx-ledger); None when they agree."""
    if position is not None and mark is not None and mark.position == position:
        return None
    recorded = "none" if position is None else f"{position}"
    marked = "none" if mark is None else f"{mark.position}"
    return f"recorded position {recorded}, but its mark says {marked}"


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One row of the events table, exactly as stored, with its ledger position."""

    position: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


class SealingTransaction:
    """What a writer may do while it holds the store's write lock: backend-neutral queries over
    the transaction's cursor (``mark`` is the backend's parameter placeholder)."""

    def __init__(self, recorder: Any, cursor: Any, mark: str) -> None:
        self._recorder = recorder
        self._cursor = cursor
        self._p = mark
        self._events = recorder.qualified(recorder.events_table_name)
        self._ids = recorder.qualified("cxl_event_ids")
        self._marks = recorder.qualified("cxl_source_marks")

    def has_tracking(self, tracking: Tracking) -> bool:
        self._cursor.execute(
            "SELECT MAX(notification_id) AS last FROM "
            f"{self._recorder.qualified(self._recorder.tracking_table_name)} "
            f"WHERE application_name = {self._p}",
            [tracking.application_name],
        )
        row = self._cursor.fetchone()
        return (
            row is not None and row["last"] is not None and row["last"] >= tracking.notification_id
        )

    def last_state(self) -> bytes | None:
        self._cursor.execute(
            f"SELECT state FROM {self._events} ORDER BY {self._recorder.position_column} DESC LIMIT 1"
        )
        row = self._cursor.fetchone()
        return None if row is None else bytes(row["state"])

    def known_events(self, event_ids: Sequence[str]) -> dict[str, KnownEvent]:
        known: dict[str, KnownEvent] = {}
        for start in range(0, len(event_ids), 500):
            chunk = list(event_ids[start : start + 500])
            marks = ",".join([self._p] * len(chunk))
            self._cursor.execute(
                f"SELECT event_id, customer_id, digest FROM {self._ids} WHERE event_id IN ({marks})",
                chunk,
            )
            for row in self._cursor.fetchall():
                known[row["event_id"]] = KnownEvent(row["customer_id"], row["digest"])
        return known

    def streams(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        stored: list[StoredEvent] = []
        for start in range(0, len(originator_ids), 500):
            chunk = [self._recorder.id_param(i) for i in originator_ids[start : start + 500]]
            marks = ",".join([self._p] * len(chunk))
            self._cursor.execute(
                f"SELECT originator_id, originator_version, topic, state FROM {self._events} "
                f"WHERE originator_id IN ({marks}) ORDER BY originator_id, originator_version",
                chunk,
            )
            stored += [
                StoredEvent(
                    originator_id=UUID(str(r["originator_id"])),
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                )
                for r in self._cursor.fetchall()
            ]
        return stored

    def insert(
        self,
        stored: Sequence[StoredEvent],
        *,
        tracking: Tracking | None,
        event_ids: Sequence[tuple[str, str, str]],
        mark: tuple[str, int, str] | None,
    ) -> None:
        self._recorder.insert_within(self._cursor, stored, tracking)
        if event_ids:
            self._cursor.executemany(
                f"INSERT INTO {self._ids} (event_id, customer_id, digest) "
                f"VALUES ({self._p}, {self._p}, {self._p})",
                list(event_ids),
            )
        if mark is not None:
            self._cursor.execute(
                f"INSERT INTO {self._marks} (name, position, fingerprint) "
                f"VALUES ({self._p}, {self._p}, {self._p}) ON CONFLICT (name) DO UPDATE SET "
                "position = excluded.position, fingerprint = excluded.fingerprint",
                list(mark),
            )


_EXTRA_TABLES = (
    "CREATE TABLE IF NOT EXISTS {ids} (event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, "
    "digest TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {marks} (name TEXT PRIMARY KEY, position BIGINT NOT NULL, "
    "fingerprint TEXT NOT NULL)",
)


SQLITE_LEDGER_TABLES = ("stored_events", "tracking", "cxl_event_ids", "cxl_source_marks")


class _LedgerCounts:
    """Whole-table reads: recorded positions and marks for ``cxl verify`` to pair up, and the
    sizes of the event-id index and of the sealed events, which a writer checks on opening."""

    datastore: Any
    tracking_table_name: str
    events_table_name: str

    def qualified(self, table: str) -> str:
        raise NotImplementedError

    def positions(self) -> dict[str, int]:
        """Each tracked source's recorded position (the library's own rows left out)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT application_name, MAX(notification_id) AS position FROM "
                f"{self.qualified(self.tracking_table_name)} GROUP BY application_name"
            )
            rows = c.fetchall()
        # The library keeps its own schema version there as "__migration__": not a source.
        return {
            r["application_name"]: r["position"]
            for r in rows
            if not r["application_name"].startswith("__")
        }

    def index_balance(self) -> tuple[int, int]:
        """(sealed events, event-id index rows): equal in a ledger nobody edited."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT COUNT(*) AS n FROM "
                f"{self.qualified(self.events_table_name)} WHERE originator_version > 1"
            )
            sealed = c.fetchone()["n"]
            c.execute(f"SELECT COUNT(*) AS n FROM {self.qualified('cxl_event_ids')}")
            return int(sealed), int(c.fetchone()["n"])

    def source_marks(self) -> dict[str, SourceMark]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT name, position, fingerprint FROM {self.qualified('cxl_source_marks')}"
            )
            return {r["name"]: SourceMark(r["position"], r["fingerprint"]) for r in c.fetchall()}


class SQLiteLedgerRecorder(_LedgerCounts, SQLiteProcessRecorder):
    """SQLite: ``BEGIN IMMEDIATE`` takes the write lock before the first read of a seal."""

    position_column = "rowid"
    tracking_table_name = "tracking"

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            *(s.format(ids="cxl_event_ids", marks="cxl_source_marks") for s in _EXTRA_TABLES),
        ]

    def qualified(self, table: str) -> str:
        return table

    def id_param(self, originator_id: UUID) -> Any:
        return originator_id.hex

    def insert_within(
        self, cursor: Any, stored: Sequence[StoredEvent], tracking: Tracking | None
    ) -> None:
        self._insert_events(cursor, stored, tracking=tracking)

    @contextmanager
    def sealing(self) -> Iterator[SealingTransaction]:
        try:
            with self.datastore.get_connection(commit=True) as connection:
                cursor = connection.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield SealingTransaction(self, cursor, "?")
                except BaseException:
                    connection.rollback()
                    raise
                connection.commit()
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(exc) from exc
        except sqlite3.OperationalError as exc:
            raise OperationalError(exc) from exc
        except sqlite3.Error as exc:
            raise PersistenceError(exc) from exc

    def source_mark(self, name: str) -> SourceMark | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT position, fingerprint FROM cxl_source_marks WHERE name = ?", [name])
            row = c.fetchone()
        return None if row is None else SourceMark(row["position"], row["fingerprint"])

    def rows(self, start: int, limit: int) -> list[StoredRow]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {self.events_table_name} WHERE rowid >= ? ORDER BY rowid LIMIT ?",
                [start, limit],
            )
            return [
                StoredRow(
                    r["rowid"], r["originator_id"], r["originator_version"], r["topic"], r["state"]
                )
                for r in c.fetchall()
            ]

    def event_id_rows(self, after: str, limit: int) -> list[tuple[str, str, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT event_id, customer_id, digest FROM cxl_event_ids WHERE event_id > ? "
                "ORDER BY event_id LIMIT ?",
                [after, limit],
            )
            return [(r["event_id"], r["customer_id"], r["digest"]) for r in c.fetchall()]


class PostgresLedgerRecorder(_LedgerCounts, PostgresProcessRecorder):
    """PostgreSQL: the library's table lock is taken first, then the seal is decided."""

    position_column = "notification_id"

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        for statement in _EXTRA_TABLES:
            self.sql_create_statements.append(
                _composed(
                    statement.format(
                        ids=self.qualified("cxl_event_ids"),
                        marks=self.qualified("cxl_source_marks"),
                    )
                )
            )

    def qualified(self, table: str) -> str:
        return f'"{self.datastore.schema}"."{table}"'

    def id_param(self, originator_id: UUID) -> Any:
        return originator_id

    def insert_within(
        self, cursor: Any, stored: Sequence[StoredEvent], tracking: Tracking | None
    ) -> None:
        self._insert_events(cursor, stored, tracking=tracking)
        if stored:
            self._insert_stored_events(cursor, stored)

    @contextmanager
    def sealing(self) -> Iterator[SealingTransaction]:
        with self.datastore.transaction(commit=True) as cursor:
            self._lock_table(cursor)
            yield SealingTransaction(self, cursor, "%s")

    @_reconnecting
    def source_mark(self, name: str) -> SourceMark | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT position, fingerprint FROM {self.qualified('cxl_source_marks')} "
                "WHERE name = %s",
                [name],
            )
            row = c.fetchone()
        return None if row is None else SourceMark(row["position"], row["fingerprint"])

    @_reconnecting
    def rows(self, start: int, limit: int) -> list[StoredRow]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                f"FROM {self.qualified(self.events_table_name)} WHERE notification_id >= %s "
                "ORDER BY notification_id LIMIT %s",
                [start, limit],
            )
            return [
                StoredRow(
                    r["notification_id"],
                    r["originator_id"].hex,
                    r["originator_version"],
                    r["topic"],
                    bytes(r["state"]),
                )
                for r in c.fetchall()
            ]

    @_reconnecting
    def event_id_rows(self, after: str, limit: int) -> list[tuple[str, str, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT event_id, customer_id, digest FROM {self.qualified('cxl_event_ids')} "
                'WHERE event_id COLLATE "C" > %s ORDER BY event_id COLLATE "C" LIMIT %s',
                [after, limit],
            )
            return [(r["event_id"], r["customer_id"], r["digest"]) for r in c.fetchall()]


def _composed(statement: str) -> Any:
    from psycopg.sql import SQL

    return SQL(statement)


LedgerRecorder = SQLiteLedgerRecorder | PostgresLedgerRecorder
