"""The ledger's recorders: eventsourcing's process recorders, extended where the library invites it.

Two tables join the library's stored events and tracking, written in the same transaction:

- ``cxl_event_ids``: one row per sealed event (``event_id``, ``customer_id``, content ``digest``).
  Its primary key makes ``event_id`` global and permanent across every customer and every writer,
  and lets a writer decide duplicate vs. conflict with one indexed query per batch instead of an
  in-memory set that grows with history. ``cxl verify`` checks it against the sealed events.
- ``cxl_source_marks``: per tracked source (a Kafka partition's epoch), the position last recorded
  and a fingerprint of the record at that position, so that a log replaced by another of any
  length is recognised by identity, not length.

- ``cxl_stream_heads``: per customer, the head of their stream and the facts sealing reads
  (``ledger.stream_head``), so that a writer reads one row for a customer it has not cached
  instead of replaying their stream. ``cxl verify`` folds every stream and compares.

``sealing()`` is the only write path: a transaction that holds the store's write lock from its
first statement (``BEGIN IMMEDIATE`` on SQLite, ``LOCK TABLE`` on PostgreSQL) to its commit, so
that what it checks (the store's last seal instant, the Merkle tree's edge) is the store as it will
be when the transaction commits. A writer may decide a batch's seqs and hashes before taking the
lock (``LedgerStore._seal_once``); it then keeps them only if no later seal instant was stored
meanwhile, and the keys of the events table and of ``cxl_event_ids`` refuse them if another writer
extended one of those streams or sealed one of those events first. That is what keeps
``recorded_at`` non-decreasing along the ledger order, and every stream gapless, when several
writers share a store.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID, uuid4

import orjson
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
    Tracking,
)
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder

from ledger.merkle import frontier_positions
from ledger.personal import SEALED_FIELD_MARK
from ledger.relationship import relationship_id
from ledger.stream_head import StreamHead

_READ_ATTEMPTS = 10
_T = TypeVar("_T")


def timed_out(exc: BaseException) -> bool:
    """Whether a store error is a statement cancelled by its timeout (not worth a retry: the
    same statement would wait as long again)."""
    return "statement timeout" in str(exc)


def _reconnecting(func: Callable[..., _T]) -> Callable[..., _T]:
    """Retry a read after a lost connection (a terminated or restarted database session), as the
    library's own reads are; a statement timeout is raised at once."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        for attempt in range(1, _READ_ATTEMPTS + 1):
            try:
                return func(*args, **kwargs)
            except (InterfaceError, OperationalError) as exc:
                if attempt == _READ_ATTEMPTS or timed_out(exc):
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    return wrapper


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
    the transaction's cursor (in the recorder's parameter placeholder)."""

    def __init__(self, recorder: Any, cursor: Any) -> None:
        self._recorder = recorder
        self._cursor = cursor
        self._p = recorder.param
        self._events = recorder.qualified(recorder.events_table_name)
        self._ids = recorder.qualified("cxl_event_ids")
        self._marks = recorder.qualified("cxl_source_marks")
        self._leaves = recorder.qualified(TREE_LEAVES)
        self._nodes = recorder.qualified(TREE_NODES)
        self._heads = recorder.qualified(STREAM_HEADS)

    def tree_edge(self) -> tuple[int, dict[tuple[int, int], bytes]]:
        """The Merkle tree's size and the full subtrees on its right edge (``TreeBuilder``)."""
        self._cursor.execute(f"SELECT MAX(leaf) AS last FROM {self._leaves}")
        row = self._cursor.fetchone()
        size = 0 if row is None or row["last"] is None else int(row["last"]) + 1
        edge: dict[tuple[int, int], bytes] = {}
        for level, index in frontier_positions(size):
            if level == 0:
                self._cursor.execute(
                    f"SELECT hash FROM {self._leaves} WHERE leaf = {self._p}", [index]
                )
            else:
                self._cursor.execute(
                    f"SELECT hash FROM {self._nodes} WHERE level = {self._p} AND idx = {self._p}",
                    [level, index],
                )
            found = self._cursor.fetchone()
            if found is None:
                raise PersistenceError(
                    f"the Merkle tree of {size} leaves lacks node {level}/{index}: "
                    "it was edited outside cx-ledger (run `cxl verify`)"
                )
            edge[level, index] = bytes.fromhex(found["hash"])
        return size, edge

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
        return select_known(self._cursor, self._recorder, event_ids)

    def heads(self, customer_ids: Sequence[str]) -> dict[str, StreamHead]:
        """The stored heads of those customers that have a stream."""
        return select_heads(self._cursor, self._recorder, customer_ids)

    def tail(self, count: int) -> LedgerTail:
        """The Merkle tree's size and last leaf, and the last ``count`` sealed events with which
        of them the event-id index holds: what a writer checks on opening, in time that does not
        grow with the ledger (under the write lock: one consistent view)."""
        self._cursor.execute(f"SELECT MAX(leaf) AS last FROM {self._leaves}")
        row = self._cursor.fetchone()
        size = 0 if row is None or row["last"] is None else int(row["last"]) + 1
        last_leaf = None
        if size:
            self._cursor.execute(
                f"SELECT hash FROM {self._leaves} WHERE leaf = {self._p}", [size - 1]
            )
            found = self._cursor.fetchone()
            last_leaf = None if found is None else str(found["hash"])
        self._cursor.execute(
            f"SELECT state FROM {self._events} WHERE originator_version > 1 "
            f"ORDER BY {self._recorder.position_column} DESC LIMIT {self._p}",
            [count],
        )
        events = []
        for r in self._cursor.fetchall():
            try:
                state = orjson.loads(bytes(r["state"]))
                events.append((str(state["event_id"]), str(state["hash"])))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # a mangled row: ``cxl verify`` names it
        indexed = set(self.known_events([event_id for event_id, _ in events]))
        return LedgerTail(size, last_leaf, events, indexed)

    def stream_ends(self, stream_ids: dict[str, UUID]) -> dict[str, tuple[int, bytes]]:
        """Per customer with a stream, its last row: (stream version, stored state), one probe
        of the events table's (originator_id, version) key per stream (``stream_ids``: each
        customer's stream id)."""
        ends: dict[str, tuple[int, bytes]] = {}
        ids = {self._recorder.id_param(stream): c for c, stream in stream_ids.items()}
        for statement, params in self._recorder.last_rows(self._events, list(ids)):
            self._cursor.execute(statement, params)
            for r in self._cursor.fetchall():
                customer = ids[r["originator_id"]]
                ends[customer] = (int(r["originator_version"]), bytes(r["state"]))
        return ends

    def insert(
        self,
        rows: Sequence[tuple[UUID, int, str, bytes]],
        *,
        tracking: Tracking | None,
        event_ids: Sequence[tuple[str, str, str]],
        mark: tuple[str, int, str] | None,
        tree: Sequence[tuple[int, int, bytes]] = (),
        heads: Sequence[StreamHead] = (),
    ) -> None:
        """Insert event rows (stream id, version, topic, stored state) with their index rows,
        position and mark, the Merkle ``tree`` nodes they complete ((level, index, hash); level 0
        is a leaf) and the new ``heads`` of the streams they extend, each table in one
        statement."""
        recorder = self._recorder
        recorder.insert_within(self._cursor, rows, tracking)
        if heads:
            recorder.insert_rows(
                self._cursor,
                self._heads,
                _HEAD_COLUMNS,
                [(h.customer_id, h.seq, h.hash, h.facts().decode()) for h in heads],
                upsert="customer_id",
            )
        leaves = [(i, h.hex()) for level, i, h in tree if level == 0]
        nodes = [(level, i, h.hex()) for level, i, h in tree if level > 0]
        if leaves:
            recorder.insert_rows(self._cursor, self._leaves, _LEAF_COLUMNS, leaves)
        if nodes:
            recorder.insert_rows(self._cursor, self._nodes, _NODE_COLUMNS, nodes)
        if event_ids:
            recorder.insert_rows(self._cursor, self._ids, _ID_COLUMNS, event_ids)
        if mark is not None:
            self._cursor.execute(
                f"INSERT INTO {self._marks} (name, position, fingerprint) "
                f"VALUES ({self._p}, {self._p}, {self._p}) ON CONFLICT (name) DO UPDATE SET "
                "position = excluded.position, fingerprint = excluded.fingerprint",
                list(mark),
            )


def select_known(cursor: Any, recorder: Any, event_ids: Sequence[str]) -> dict[str, KnownEvent]:
    """The event-id index's rows of those of ``event_ids`` that are sealed."""
    known: dict[str, KnownEvent] = {}
    table = recorder.qualified("cxl_event_ids")
    for condition, params in recorder.among("event_id", "text", event_ids):
        cursor.execute(
            f"SELECT event_id, customer_id, digest FROM {table} WHERE {condition}", params
        )
        for row in cursor.fetchall():
            known[row["event_id"]] = KnownEvent(row["customer_id"], row["digest"])
    return known


def select_heads(cursor: Any, recorder: Any, customer_ids: Sequence[str]) -> dict[str, StreamHead]:
    found: dict[str, StreamHead] = {}
    table = recorder.qualified(STREAM_HEADS)
    for condition, params in recorder.among("customer_id", "text", customer_ids):
        cursor.execute(
            f"SELECT customer_id, seq, hash, facts FROM {table} WHERE {condition}", params
        )
        for row in cursor.fetchall():
            found[row["customer_id"]] = StreamHead.stored(
                row["customer_id"], int(row["seq"]), row["hash"], row["facts"]
            )
    return found


# Each own table's columns with their PostgreSQL types: one multi-row statement per table and
# batch (``insert_rows``).
_Columns = tuple[tuple[str, str], ...]
_HEAD_COLUMNS: _Columns = (
    ("customer_id", "text"),
    ("seq", "int8"),
    ("hash", "text"),
    ("facts", "text"),
)
_LEAF_COLUMNS: _Columns = (("leaf", "int8"), ("hash", "text"))
_NODE_COLUMNS: _Columns = (("level", "int4"), ("idx", "int8"), ("hash", "text"))
_ID_COLUMNS: _Columns = (("event_id", "text"), ("customer_id", "text"), ("digest", "text"))
_EVENT_COLUMNS: _Columns = (
    ("originator_id", "uuid"),
    ("originator_version", "int8"),
    ("topic", "text"),
    ("state", "bytea"),
)


def _upsert_clause(columns: _Columns, key: str | None) -> str:
    if key is None:
        return ""
    updates = ", ".join(f"{name} = excluded.{name}" for name, _ in columns if name != key)
    return f" ON CONFLICT ({key}) DO UPDATE SET {updates}"


_FIRST_STREAM = "0" * 32


def _sqlite_stored_row(r: Any) -> StoredRow:
    return StoredRow(
        r["rowid"], r["originator_id"], r["originator_version"], r["topic"], r["state"]
    )


def _pg_stored_row(r: Any) -> StoredRow:
    return StoredRow(
        r["notification_id"],
        r["originator_id"].hex,
        r["originator_version"],
        r["topic"],
        bytes(r["state"]),
    )


LEDGER_META = "cxl_ledger"
TREE_LEAVES = "cxl_tree_leaves"
TREE_NODES = "cxl_tree_nodes"
STREAM_HEADS = "cxl_stream_heads"
_EXTRA_TABLES = (
    "CREATE TABLE IF NOT EXISTS {ids} (event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, "
    "digest TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {marks} (name TEXT PRIMARY KEY, position BIGINT NOT NULL, "
    "fingerprint TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {meta} (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # The Merkle tree (``ledger.merkle``): leaf i is the i-th sealed event in ledger order (the
    # one with i sealed events before it), and each full subtree above the leaves is one node
    # row; hashes in hex.
    # SQLite: the leaf index is the rowid (INTEGER PRIMARY KEY) and the nodes a clustered
    # (WITHOUT ROWID) table: one B-tree each instead of a table and an index.
    "CREATE TABLE IF NOT EXISTS {leaves} (leaf {key_integer} PRIMARY KEY, hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {nodes} (level INTEGER NOT NULL, idx BIGINT NOT NULL, "
    "hash TEXT NOT NULL, PRIMARY KEY (level, idx)){clustered}",
    "CREATE TABLE IF NOT EXISTS {heads} (customer_id TEXT PRIMARY KEY, seq BIGINT NOT NULL, "
    "hash TEXT NOT NULL, facts TEXT NOT NULL){clustered}",
)


@dataclass(frozen=True)
class LedgerTail:
    """What ``ledger_tail`` read: the tree's size and last leaf hash (hex), the last sealed
    events newest first as (event_id, seal hash), and the ids among them the index holds."""

    tree_size: int
    last_leaf: str | None
    events: list[tuple[str, str]]
    indexed: set[str]


SQLITE_LEDGER_TABLES = ("stored_events", "tracking", "cxl_event_ids", "cxl_source_marks")


class _LedgerCounts:
    """Whole-table reads: recorded positions and marks for ``cxl verify`` to pair up, and the
    sizes of the event-id index and of the sealed events, which a writer checks on opening.
    Each one is retried after a lost connection (a restarted server, a terminated session), as
    the library's own reads are."""

    datastore: Any
    tracking_table_name: str
    events_table_name: str
    position_column: str
    param: str
    """The backend's parameter placeholder."""
    state_contains: str
    """SQL true when a row's ``state`` holds the bytes given as the one parameter."""

    def qualified(self, table: str) -> str:
        raise NotImplementedError

    @_reconnecting
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

    @_reconnecting
    def holds_sealed_fields(self) -> bool:
        """Whether any sealed event holds an encrypted personal field (a whole-table scan: asked
        only when a key store is about to be started)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT 1 AS found FROM {self.qualified(self.events_table_name)} "
                f"WHERE {self.state_contains} LIMIT 1",
                [SEALED_FIELD_MARK],
            )
            return c.fetchone() is not None

    @_reconnecting
    def ledger_meta(self) -> dict[str, str]:
        """Every row of the ledger's own settings table (``verify`` accounts for each)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT name, value FROM {self.qualified(LEDGER_META)}")
            return {r["name"]: r["value"] for r in c.fetchall()}

    @_reconnecting
    def ledger_id(self, *, create: bool = False) -> str | None:
        """This ledger's random identity (it names the ledger in its checkpoints), made by the
        first writer; None when no writer of this version opened the store yet."""
        with self.datastore.transaction(commit=create) as c:
            if create:
                c.execute(
                    f"INSERT INTO {self.qualified(LEDGER_META)} (name, value) "
                    f"VALUES ('ledger_id', {self.param}) ON CONFLICT (name) DO NOTHING",
                    [str(uuid4())],
                )
            c.execute(f"SELECT name, value FROM {self.qualified(LEDGER_META)}")
            rows = {r["name"]: r["value"] for r in c.fetchall()}
        return rows.get("ledger_id")

    @_reconnecting
    def set_meta(self, name: str, value: str, *, replace: bool = False) -> None:
        """Record one of the ledger's own settings (``replace``: over an existing value)."""
        action = "DO UPDATE SET value = excluded.value" if replace else "DO NOTHING"
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"INSERT INTO {self.qualified(LEDGER_META)} (name, value) "
                f"VALUES ({self.param}, {self.param}) ON CONFLICT (name) {action}",
                [name, value],
            )

    @_reconnecting
    def known_events(self, event_ids: Sequence[str]) -> dict[str, KnownEvent]:
        """The sealed ones of ``event_ids``, read outside any sealing transaction: a writer's
        guess, checked by the index's key when it inserts."""
        if not event_ids:
            return {}
        with self.datastore.transaction(commit=False) as c:
            return select_known(c, self, event_ids)

    @_reconnecting
    def stream_heads(self, customer_ids: Sequence[str]) -> dict[str, StreamHead]:
        """The stored heads of these customers, read outside any sealing transaction."""
        with self.datastore.transaction(commit=False) as c:
            return select_heads(c, self, customer_ids)

    @_reconnecting
    def customer_of(self, event_id: str) -> str | None:
        """The customer of a sealed event (from the event-id index), or None."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT customer_id FROM {self.qualified('cxl_event_ids')} "
                f"WHERE event_id = {self.param}",
                [event_id],
            )
            row = c.fetchone()
        return None if row is None else str(row["customer_id"])

    @_reconnecting
    def sealed_through(self, position: int, *, after: int = 0) -> int:
        """How many sealed events lie after ledger position ``after`` and at or before
        ``position``."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT count(*) AS n FROM {self.qualified(self.events_table_name)} "
                f"WHERE {self.position_column} > {self.param} "
                f"AND {self.position_column} <= {self.param} AND originator_version > 1",
                [after, position],
            )
            return int(c.fetchone()["n"])

    @_reconnecting
    def tree_size(self) -> int:
        """Leaves in the Merkle tree (sealed events it covers)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT MAX(leaf) AS last FROM {self.qualified(TREE_LEAVES)}")
            row = c.fetchone()
        return 0 if row is None or row["last"] is None else int(row["last"]) + 1

    @_reconnecting
    def tree_hash(self, level: int, index: int) -> bytes | None:
        """The stored hash of full subtree (``level``, ``index``); level 0 is a leaf."""
        with self.datastore.transaction(commit=False) as c:
            if level == 0:
                c.execute(
                    f"SELECT hash FROM {self.qualified(TREE_LEAVES)} WHERE leaf = {self.param}",
                    [index],
                )
            else:
                c.execute(
                    f"SELECT hash FROM {self.qualified(TREE_NODES)} "
                    f"WHERE level = {self.param} AND idx = {self.param}",
                    [level, index],
                )
            row = c.fetchone()
        return None if row is None else bytes.fromhex(row["hash"])

    @_reconnecting
    def position_of(self, customer_id: str, version: int) -> int | None:
        """The ledger position of stream version ``version`` of a customer's relationship."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT {self.position_column} AS position FROM "
                f"{self.qualified(self.events_table_name)} WHERE originator_id = {self.param} "
                f"AND originator_version = {self.param}",
                [self.id_param(relationship_id(customer_id)), version],
            )
            row = c.fetchone()
        return None if row is None else int(row["position"])

    def id_param(self, originator_id: UUID) -> Any:
        raise NotImplementedError

    @_reconnecting
    def tree_rows(self, level: int, start: int, limit: int) -> list[tuple[int, str]]:
        """Stored tree rows of ``level`` (0: the leaves) from index ``start``, in order:
        (index, hash)."""
        with self.datastore.transaction(commit=False) as c:
            if level == 0:
                c.execute(
                    f"SELECT leaf AS idx, hash FROM {self.qualified(TREE_LEAVES)} "
                    f"WHERE leaf >= {self.param} ORDER BY leaf LIMIT {self.param}",
                    [start, limit],
                )
            else:
                c.execute(
                    f"SELECT idx, hash FROM {self.qualified(TREE_NODES)} "
                    f"WHERE level = {self.param} AND idx >= {self.param} ORDER BY idx "
                    f"LIMIT {self.param}",
                    [level, start, limit],
                )
            return [(int(r["idx"]), r["hash"]) for r in c.fetchall()]

    @_reconnecting
    def tree_levels(self) -> list[int]:
        """The levels above the leaves that hold any node (verify checks each of them)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT DISTINCT level FROM {self.qualified(TREE_NODES)}")
            return sorted(int(r["level"]) for r in c.fetchall())

    @_reconnecting
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
    param = "?"
    state_contains = "instr(state, ?) > 0"

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            *(
                s.format(
                    ids="cxl_event_ids",
                    marks="cxl_source_marks",
                    leaves=TREE_LEAVES,
                    nodes=TREE_NODES,
                    meta=LEDGER_META,
                    heads=STREAM_HEADS,
                    key_integer="INTEGER",
                    clustered=" WITHOUT ROWID",
                )
                for s in _EXTRA_TABLES
            ),
        ]

    def qualified(self, table: str) -> str:
        return table

    def id_param(self, originator_id: UUID) -> Any:
        return originator_id.hex

    def insert_within(
        self, cursor: Any, rows: Sequence[tuple[UUID, int, str, bytes]], tracking: Tracking | None
    ) -> None:
        if rows:
            cursor.executemany(
                self.insert_events_statement, [(r[0].hex, r[1], r[2], r[3]) for r in rows]
            )
        if tracking is not None:
            self._insert_tracking(cursor, tracking)

    def among(
        self, column: str, kind: str, values: Sequence[Any]
    ) -> Iterator[tuple[str, list[Any]]]:
        """``column`` is one of ``values``: a condition and its parameters per 500 values
        (SQLite's limit on parameters is 999 in older builds)."""
        for start in range(0, len(values), 500):
            chunk = list(values[start : start + 500])
            yield f"{column} IN ({','.join('?' * len(chunk))})", chunk

    def last_rows(self, events: str, stream_ids: list[Any]) -> Iterator[tuple[str, list[Any]]]:
        """Statements selecting the last row of each of these streams (SQLite answers a
        correlated ``MAX`` from the key's last entry)."""
        for condition, params in self.among("e.originator_id", "uuid", stream_ids):
            yield (
                f"SELECT e.originator_id, e.originator_version, e.state FROM {events} e "
                f"WHERE {condition} AND e.originator_version = "
                f"(SELECT MAX(v.originator_version) FROM {events} v "
                "WHERE v.originator_id = e.originator_id)",
                params,
            )

    def insert_rows(
        self,
        cursor: Any,
        table: str,
        columns: _Columns,
        rows: Sequence[tuple[Any, ...]],
        *,
        upsert: str | None = None,
    ) -> None:
        """Insert ``rows`` into ``table`` (one prepared statement, executed per row in C)."""
        names = ", ".join(name for name, _ in columns)
        marks = ", ".join("?" for _ in columns)
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({marks}){_upsert_clause(columns, upsert)}",
            rows,
        )

    @contextmanager
    def sealing(self) -> Iterator[SealingTransaction]:
        try:
            with self.datastore.get_connection(commit=True) as connection:
                cursor = connection.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield SealingTransaction(self, cursor)
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
            return [_sqlite_stored_row(r) for r in c.fetchall()]

    def stream_rows(self, after: tuple[str, int], limit: int) -> list[StoredRow]:
        """Rows in stream order (stream id, version) after ``after``: a keyset walk of the
        events table's primary key."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {self.events_table_name} WHERE (originator_id, originator_version) > (?, ?) "
                "ORDER BY originator_id, originator_version LIMIT ?",
                [*after, limit],
            )
            return [_sqlite_stored_row(r) for r in c.fetchall()]

    def event_id_rows(self, after: str, limit: int) -> list[tuple[str, str, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT event_id, customer_id, digest FROM cxl_event_ids WHERE event_id > ? "
                "ORDER BY event_id LIMIT ?",
                [after, limit],
            )
            return [(r["event_id"], r["customer_id"], r["digest"]) for r in c.fetchall()]

    def stream_head_rows(self, after: str, limit: int) -> list[tuple[str, int, str, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT customer_id, seq, hash, facts FROM {STREAM_HEADS} WHERE customer_id > ? "
                "ORDER BY customer_id LIMIT ?",
                [after, limit],
            )
            return [(r["customer_id"], r["seq"], r["hash"], r["facts"]) for r in c.fetchall()]


class PostgresLedgerRecorder(_LedgerCounts, PostgresProcessRecorder):
    """PostgreSQL: the library's table lock is taken first, then the seal is decided."""

    position_column = "notification_id"
    param = "%s"
    state_contains = "position(%s::bytea in state) > 0"

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        for statement in _EXTRA_TABLES:
            self.sql_create_statements.append(
                _composed(
                    statement.format(
                        ids=self.qualified("cxl_event_ids"),
                        marks=self.qualified("cxl_source_marks"),
                        leaves=self.qualified(TREE_LEAVES),
                        nodes=self.qualified(TREE_NODES),
                        meta=self.qualified(LEDGER_META),
                        heads=self.qualified(STREAM_HEADS),
                        key_integer="BIGINT",
                        clustered="",
                    )
                )
            )

    def qualified(self, table: str) -> str:
        return f'"{self.datastore.schema}"."{table}"'

    def id_param(self, originator_id: UUID) -> Any:
        return originator_id

    def insert_within(
        self, cursor: Any, rows: Sequence[tuple[UUID, int, str, bytes]], tracking: Tracking | None
    ) -> None:
        """The library's tracking row and notification, and the event rows in one statement
        (``insert_rows``) instead of the library's array of composite values, which psycopg
        writes as escaped text."""
        self._insert_events(cursor, [], tracking=tracking)
        if rows:
            self._notify_channel(cursor)
            self.insert_rows(cursor, self.qualified(self.events_table_name), _EVENT_COLUMNS, rows)

    def among(
        self, column: str, kind: str, values: Sequence[Any]
    ) -> Iterator[tuple[str, list[Any]]]:
        """``column`` is one of ``values``: one condition over a binary array of them."""
        if values:
            yield f"{column} = ANY(%b::{kind}[])", [list(values)]

    def last_rows(self, events: str, stream_ids: list[Any]) -> Iterator[tuple[str, list[Any]]]:
        """One statement selecting the last row of each of these streams: a backward scan of
        the key, one row deep, per stream (a correlated ``MAX`` over ``= ANY`` was planned as a
        scan of every row of those streams)."""
        if stream_ids:
            yield (
                "SELECT e.originator_id, e.originator_version, e.state "
                "FROM unnest(%b::uuid[]) AS s(id) CROSS JOIN LATERAL "
                f"(SELECT originator_id, originator_version, state FROM {events} "
                "WHERE originator_id = s.id ORDER BY originator_version DESC LIMIT 1) AS e",
                [stream_ids],
            )

    def insert_rows(
        self,
        cursor: Any,
        table: str,
        columns: _Columns,
        rows: Sequence[tuple[Any, ...]],
        *,
        upsert: str | None = None,
    ) -> None:
        """Insert ``rows`` into ``table``: plain rows by ``COPY`` (formatted in C, one
        round trip), an upsert as one statement over a binary array per column zipped back into
        rows by ``unnest``; never one statement per row."""
        names = ", ".join(name for name, _ in columns)
        if upsert is None:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})"
            f"{_upsert_clause(columns, upsert)}",
            [list(column) for column in zip(*rows, strict=True)],
        )

    @contextmanager
    def sealing(self) -> Iterator[SealingTransaction]:
        with self.datastore.transaction(commit=True) as cursor:
            self._lock_table(cursor)
            yield SealingTransaction(self, cursor)

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
            return [_pg_stored_row(r) for r in c.fetchall()]

    @_reconnecting
    def stream_rows(self, after: tuple[str, int], limit: int) -> list[StoredRow]:
        """Rows in stream order (stream id, version) after ``after``: a keyset walk of the
        events table's primary key."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                f"FROM {self.qualified(self.events_table_name)} "
                "WHERE (originator_id, originator_version) > (%s, %s) "
                "ORDER BY originator_id, originator_version LIMIT %s",
                [UUID(after[0] or _FIRST_STREAM), after[1], limit],
            )
            return [_pg_stored_row(r) for r in c.fetchall()]

    @_reconnecting
    def event_id_rows(self, after: str, limit: int) -> list[tuple[str, str, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT event_id, customer_id, digest FROM {self.qualified('cxl_event_ids')} "
                "WHERE event_id > %s ORDER BY event_id LIMIT %s",
                [after, limit],
            )
            return [(r["event_id"], r["customer_id"], r["digest"]) for r in c.fetchall()]

    @_reconnecting
    def stream_head_rows(self, after: str, limit: int) -> list[tuple[str, int, str, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT customer_id, seq, hash, facts FROM {self.qualified(STREAM_HEADS)} "
                "WHERE customer_id > %s ORDER BY customer_id LIMIT %s",
                [after, limit],
            )
            return [(r["customer_id"], r["seq"], r["hash"], r["facts"]) for r in c.fetchall()]


def _composed(statement: str) -> Any:
    from psycopg.sql import SQL

    return SQL(statement)


LedgerRecorder = SQLiteLedgerRecorder | PostgresLedgerRecorder
