"""The ledger store: sealed Relationship streams on eventsourcing, SQLite by default, PostgreSQL at scale.

Contract:
- ``seal(events, tracking)`` seals a batch of valid events for many customers in **one**
  transaction, together with the consumed source position (``tracking``) when there is one. Either
  all of it is recorded or none of it, so a crash anywhere neither loses nor duplicates.
- Recording a position that is already recorded raises nothing and seals nothing: the batch was
  done before (a redelivery). ``position(name)`` is the last recorded position, ``None`` if none.
- The notification log (``read``) yields every sealed event once, in the global order they were
  recorded; that order is what the relay and the projections follow. Within one transaction the
  events are grouped by customer, each customer's in arrival order.

The writer keeps hot per-customer state (chain head, seen event ids) in memory as cached
Relationship aggregates. Several writers may share a store when they own disjoint customers (ingest
workers own disjoint partitions); if two ever append to the same stream, the loser of the race
re-reads it and retries (``CONFLICT_RETRIES``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

import orjson
from eventsourcing.application import Application
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    PersistenceError,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    Transcoder,
)

from ledger.contract import ValidEvent
from ledger.errors import ConfigError, StoreError
from ledger.relationship import Relationship, SealOutcome, relationship_id
from ledger.transcoder import OrjsonTranscoder

SEALED_TOPIC = Relationship.EventSealed.TOPIC
CONFLICT_RETRIES = 3


class LedgerApplication(Application[UUID]):
    """eventsourcing application whose recorder also records source positions (tracking)."""

    name = "cxl"

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()


@dataclass
class Rejection:
    """A valid-looking event the ledger refused (an ``event_id`` reused with other content)."""

    event: ValidEvent
    reason: str


@dataclass
class SealReport:
    """What one ``seal`` call did, for progress lines and for routing refusals to the DLQ."""

    sealed: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    anomalies: dict[str, int] = field(default_factory=dict)
    already_done: bool = False

    def add(self, other: SealReport) -> None:
        self.sealed += other.sealed
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)
        for name, count in other.anomalies.items():
            self.anomalies[name] = self.anomalies.get(name, 0) + count


@dataclass(frozen=True, slots=True)
class SealedEvent:
    """One sealed event as read back from the notification log."""

    position: int
    customer_id: str
    seq: int
    event_id: str
    type: str
    body: dict[str, Any]
    recorded_at: str
    prev_hash: str
    hash: str
    stream_id: UUID
    stream_version: int


def _environment(url: str) -> dict[str, str]:
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlparse(url)
        dbname = parts.path.lstrip("/")
        if not dbname:
            raise ConfigError(
                f"CXL_STORE {url!r} names no database (postgresql://user@host:port/db)"
            )
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(dbname),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_CONNECT_TIMEOUT": "5",
            # DESIGN.md: with db functions on, tracking rows are silently not written.
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        }
        schema = parse_qs(parts.query).get("schema")
        if schema:
            env["POSTGRES_SCHEMA"] = schema[0]
        return env
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Several ingest workers may share one SQLite file: a writer waits for the lock (seconds at
    # most, each transaction being one batch) rather than failing at once.
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": "60",
    }


class LedgerStore:
    """Seals validated events into per-customer hash chains and reads them back in ledger order."""

    def __init__(self, url: str, *, cache_size: int = 200_000) -> None:
        self.url = url
        env = _environment(url)
        if "POSTGRES_SCHEMA" in env:
            _create_postgres_schema(env)
        try:
            self._app = LedgerApplication(env=env)
        except PersistenceError as exc:
            raise StoreError(f"cannot open the ledger store {_redact(url)}: {exc}") from exc
        self._recorder: ProcessRecorder = self._app.recorder  # type: ignore[assignment]
        self._cache: OrderedDict[str, Relationship] = OrderedDict()
        self._cache_size = cache_size
        self._is_postgres = env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"

    def close(self) -> None:
        self._app.close()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def seal(
        self,
        events: Iterable[ValidEvent],
        tracking: Tracking | None = None,
        before_commit: Callable[[SealReport], None] | None = None,
    ) -> SealReport:
        """Seal ``events`` (any customers, in arrival order) and record ``tracking`` atomically.

        ``before_commit`` sees the decisions (what is sealed, duplicate, refused) before anything is
        written; if it raises, nothing is written. Ingest uses it to dead-letter refusals first, so
        a crash can duplicate a dead letter but never lose one.
        """
        events = list(events)
        for attempt in range(1, CONFLICT_RETRIES + 1):
            try:
                return self._seal_once(events, tracking, before_commit)
            except IntegrityError as exc:
                if tracking is not None and self.has_position(tracking):
                    return SealReport(already_done=True)
                # Another writer appended to one of these streams first (a second ingest worker
                # given a customer's events on another partition). The touched aggregates were
                # evicted, so the retry continues their chains from what is now stored.
                if attempt == CONFLICT_RETRIES:
                    raise StoreError(
                        f"the ledger store kept changing under this writer ({exc}); are several "
                        "ingests sharing partitions? Publishers must key events by customer_id."
                    ) from exc
        raise AssertionError("unreachable")

    def _seal_once(
        self,
        events: list[ValidEvent],
        tracking: Tracking | None,
        before_commit: Callable[[SealReport], None] | None,
    ) -> SealReport:
        report = SealReport()
        if tracking is not None and self.has_position(tracking):
            report.already_done = True
            return report
        touched: dict[str, Relationship] = {}
        recorded_at = datetime.now(UTC).isoformat()
        try:
            self._load_missing({e.customer_id for e in events})
            for event in events:
                relationship = touched.get(event.customer_id) or self._relationship(
                    event.customer_id
                )
                touched[event.customer_id] = relationship
                result = relationship.seal(event, recorded_at)
                if result.outcome is SealOutcome.SEALED:
                    report.sealed += 1
                    for name in result.anomalies:
                        report.anomalies[name] = report.anomalies.get(name, 0) + 1
                elif result.outcome is SealOutcome.DUPLICATE:
                    report.duplicates += 1
                else:
                    report.rejected.append(
                        Rejection(event, "event_id reused with different content")
                    )
            if before_commit is not None:
                before_commit(report)
            to_stored = self._app.mapper.to_stored_event
            stored = [to_stored(e) for r in touched.values() for e in r.collect_events()]
            if stored or tracking is not None:
                # The recorder directly, not EventStore.put: put() builds a Recording and a
                # Notification object per event that nobody here reads (a fifth of sealing time).
                self._recorder.insert_events(stored, tracking=tracking)
        except PersistenceError as exc:
            self._evict(touched)
            if isinstance(exc, IntegrityError):
                raise
            raise StoreError(
                f"could not write the ledger store {_redact(self.url)}: {exc}"
            ) from exc
        except BaseException:
            self._evict(touched)
            raise
        return report

    def record_position(self, tracking: Tracking) -> None:
        """Record a source position with nothing to seal (e.g. a batch of rejects only)."""
        self.seal((), tracking)

    def _relationship(self, customer_id: str) -> Relationship:
        if customer_id not in self._cache:
            self._load_missing({customer_id})
        self._cache.move_to_end(customer_id)
        return self._cache[customer_id]

    def _remember(self, customer_id: str, relationship: Relationship) -> None:
        self._cache[customer_id] = relationship
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _load_missing(self, customer_ids: set[str]) -> None:
        """Load the streams of uncached customers with one query per 500, not one each.

        Per-customer repository lookups dominated sealing time when most customers in a batch
        were new to the writer.
        """
        missing = [c for c in customer_ids if c not in self._cache]
        for start in range(0, len(missing), 500):
            chunk = {relationship_id(c): c for c in missing[start : start + 500]}
            streams: dict[UUID, list[StoredEvent]] = {}
            for stored in self._select_streams(list(chunk)):
                streams.setdefault(stored.originator_id, []).append(stored)  # type: ignore[arg-type]
            for rid, customer_id in chunk.items():
                relationship: Any = None
                for stored in streams.get(rid, ()):
                    event: Any = self._app.mapper.to_domain_event(stored)
                    relationship = event.mutate(relationship)
                self._remember(customer_id, relationship or Relationship(customer_id=customer_id))

    def _select_streams(self, ids: list[UUID]) -> list[StoredEvent]:
        recorder: Any = self._recorder
        table = recorder.events_table_name
        columns = "originator_id, originator_version, topic, state"
        if self._is_postgres:
            statement = (
                f'SELECT {columns} FROM "{recorder.datastore.schema}"."{table}" '
                "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
            )
            params: list[Any] = [ids]
        else:
            marks = ",".join("?" * len(ids))
            statement = (
                f"SELECT {columns} FROM {table} WHERE originator_id IN ({marks}) "
                "ORDER BY originator_id, originator_version"
            )
            params = [i.hex for i in ids]
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, params)
            rows = cursor.fetchall()
        return [
            StoredEvent(
                originator_id=r["originator_id"] if self._is_postgres else UUID(r["originator_id"]),
                originator_version=r["originator_version"],
                topic=r["topic"],
                state=bytes(r["state"]),
            )
            for r in rows
        ]

    def _evict(self, relationships: dict[str, Relationship]) -> None:
        for customer_id in relationships:
            self._cache.pop(customer_id, None)

    # -- positions -----------------------------------------------------------------------------

    def position(self, name: str) -> int | None:
        """Last recorded position for a tracked source; ``None`` when nothing was recorded."""
        return self._recorder.max_tracking_id(name)

    def has_position(self, tracking: Tracking) -> bool:
        current = self.position(tracking.application_name)
        return current is not None and current >= tracking.notification_id

    # -- reading -------------------------------------------------------------------------------

    def max_position(self) -> int:
        return self._recorder.max_notification_id() or 0

    def read(
        self, start: int = 1, *, stop: int | None = None, page: int = 5000
    ) -> Iterator[list[SealedEvent]]:
        """Pages of sealed events with ``start <= position <= stop``, in ledger order."""
        for notifications in self._pages(start, stop, page):
            yield [
                _decode(n.id, n.originator_id, n.originator_version, n.state) for n in notifications
            ]

    def read_states(
        self, start: int = 1, *, page: int = 5000
    ) -> Iterator[tuple[list[int], list[bytes]]]:
        """Pages of (positions, stored JSON states) of sealed events, in ledger order.

        For bulk readers that parse the JSON elsewhere (the projections hand it to DuckDB): no
        per-event decoding in Python.
        """
        for notifications in self._pages(start, None, page):
            yield [n.id for n in notifications], [n.state for n in notifications]

    def _pages(self, start: int, stop: int | None, page: int) -> Iterator[Sequence[Notification]]:
        while True:
            notifications = self._recorder.select_notifications(
                start, page, stop=stop, topics=(SEALED_TOPIC,)
            )
            if not notifications:
                return
            yield notifications
            start = notifications[-1].id + 1
            if len(notifications) < page:
                return

    def stream(self, customer_id: str) -> list[SealedEvent]:
        """One customer's sealed events in seq order."""
        stored = self._recorder.select_events(relationship_id(customer_id))
        return [
            _decode(0, s.originator_id, s.originator_version, s.state)
            for s in stored
            if s.topic == SEALED_TOPIC
        ]


def _decode(position: int, stream_id: Any, version: int, state: bytes) -> SealedEvent:
    # The application stores plain JSON (no cipher, no compression is configured), so the fast
    # path decodes it directly rather than through the mapper's transcoder.
    d = orjson.loads(state)
    body = d["body"]
    return SealedEvent(
        position=position,
        customer_id=body["customer_id"],
        seq=d["seq"],
        event_id=d["event_id"],
        type=body["type"],
        body=body,
        recorded_at=d["recorded_at"],
        prev_hash=d["prev_hash"],
        hash=d["hash"],
        stream_id=stream_id,
        stream_version=version,
    )


def _redact(url: str) -> str:
    parts = urlparse(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _create_postgres_schema(env: dict[str, str]) -> None:
    import psycopg

    try:
        with psycopg.connect(
            dbname=env["POSTGRES_DBNAME"],
            host=env["POSTGRES_HOST"],
            port=int(env["POSTGRES_PORT"]),
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"] or None,
            connect_timeout=5,
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{env["POSTGRES_SCHEMA"]}"')
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach PostgreSQL at {env['POSTGRES_HOST']}: {exc}") from exc
