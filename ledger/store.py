"""The ledger store: sealed Relationship streams on eventsourcing, SQLite by default, PostgreSQL at scale.

Contract:
- ``seal(events, tracking, mark=…)`` seals a batch of valid events for many customers in **one**
  transaction, together with the consumed source position (``tracking``) and the fingerprint of the
  record there (``mark``) when there is one. Either all of it is recorded or none of it, so a crash
  anywhere neither loses nor duplicates.
- ``event_id`` is global and permanent: an id already sealed — for any customer, by any writer — is
  a duplicate when the content is identical and a conflict (refused, with a reason) otherwise.
- Recording a position that is already recorded raises nothing and seals nothing: the batch was
  done before (a redelivery). ``position(name)`` is the last recorded position, ``None`` if none.
- The notification log (``read``) yields every sealed event once, in the global order they were
  recorded; that order is what the relay and the projections follow, and ``recorded_at`` never
  decreases along it. Within one transaction the events are in arrival order.

What sealing needs of a customer (``ledger.stream_head``: chain head, data key, facts for the
anomaly rules) is stored as one row per customer, written with the events, and the writer caches
at most ``cache_size`` of them (and of data keys): its memory does not grow with history, and a
customer it has not cached costs one indexed read, however long their stream. Everything that must
be true of the whole store (event ids, the last seal instant) is read inside the sealing
transaction, which holds the store's write lock. Several writers may share a store; if two ever
append to the same stream, the loser of the race re-reads it and retries (``CONFLICT_RETRIES``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
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
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    Tracking,
    Transcoder,
)
from eventsourcing.utils import Environment, EnvType

from ledger.canonical import format_instant, orjson_canonical
from ledger.chain import content_digest, seal_hash
from ledger.checkpoint import ORIGIN_PREFIX
from ledger.contract import ValidEvent, erasure_event
from ledger.errors import (
    ConfigError,
    CxlError,
    ErasureIncompleteError,
    KeyStoreError,
    LedgerTamperedError,
    StoreError,
)
from ledger.keys import KeyStore
from ledger.merkle import TreeBuilder, leaf_hash, subtree_root
from ledger.personal import PersonalCipher
from ledger.postgres_factory import STATEMENT_TIMEOUT_MS
from ledger.recorders import (
    LEDGER_META,
    SQLITE_LEDGER_TABLES,
    STREAM_HEADS,
    KnownEvent,
    LedgerRecorder,
    LedgerTail,
    SealingTransaction,
    SourceMark,
    StoredRow,
    timed_out,
)
from ledger.relationship import (
    ERASED_TYPE,
    Relationship,
    created_state,
    relationship_id,
    sealed_state,
    stored_timestamp,
)
from ledger.settings import Settings, withhold_from_libpq
from ledger.stream_head import StreamHead
from ledger.transcoder import OrjsonTranscoder

SEALED_TOPIC = Relationship.EventSealed.TOPIC
CREATED_TOPIC = Relationship.Created.TOPIC
CONFLICT_RETRIES = 3
TAIL_CHECKED = 1000
"""Newest sealed events a writer checks against the event-id index and the tree on opening."""
SQLITE_MODULE = "eventsourcing.sqlite"
SCHEMA_VERSION = 2
"""Version of the ledger's own tables: 2 added ``cxl_stream_heads`` (``ledger.migrations``)."""
SCHEMA_VERSION_KEY = "schema_version"
CONNECTION_RETRIES = 10
REUSED_ID = "event_id reused with different content"


class LedgerApplication(Application[UUID]):
    """eventsourcing application whose recorder also records source positions (tracking).

    Its configuration is exactly the dict it is given: the library would otherwise read its own
    variables from the process environment (``CXL_COMPRESSOR_TOPIC``, ``CIPHER_TOPIC``,
    ``PERSISTENCE_MODULE``…) and silently change what is stored. The ledger stores plain JSON,
    neither compressed nor encrypted by the library.
    """

    name = "cxl"

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, dict(env or {}))

    def construct_recorder(self) -> Any:
        return self.factory.process_recorder()

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()


@dataclass
class Rejection:
    """A valid-looking event the ledger refused (an ``event_id`` reused with other content)."""

    event: ValidEvent
    reason: str


@dataclass(frozen=True)
class Forgetting:
    """What ``LedgerStore.forget`` did: the destroyed key's id (None: the customer never had
    one), and whether ``customer.erased`` was sealed now (False: it already was)."""

    kid: str | None
    sealed: bool


@dataclass
class SealReport:
    """What one ``seal`` call did, for progress lines and for routing refusals to the DLQ."""

    sealed: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    """Events refused with a reason (to be dead-lettered). Events of an erased customer are only
    counted (``erased``): their bytes hold the personal data the erasure removed."""
    anomalies: dict[str, int] = field(default_factory=dict)
    already_done: bool = False
    erased: int = 0

    def add(self, other: SealReport) -> None:
        self.sealed += other.sealed
        self.duplicates += other.duplicates
        self.erased += other.erased
        self.rejected.extend(other.rejected)
        for name, count in other.anomalies.items():
            self.anomalies[name] = self.anomalies.get(name, 0) + count


@dataclass
class _SealedForms:
    """What ``LedgerStore._sealed_forms`` prepared for a batch: per event, (bytes to seal, dedupe
    digest, data key id or None), or None for an erased customer's event; the erased customers."""

    sealed: list[tuple[bytes, str, str | None] | None] = field(default_factory=list)
    erased: set[str] = field(default_factory=set)


@dataclass
class _Decision:
    """What ``LedgerStore._decide`` decided for a batch sealed at ``at``: the report, the event
    rows (customer, stream version, topic, stored state), the event-id rows, the new events'
    seal hashes in order, and the heads advanced."""

    at: datetime
    report: SealReport = field(default_factory=SealReport)
    rows: list[tuple[str, int, str, bytes]] = field(default_factory=list)
    id_rows: list[tuple[str, str, str]] = field(default_factory=list)
    sealed_hashes: list[str] = field(default_factory=list)
    touched: dict[str, StreamHead] = field(default_factory=dict)


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

    def history_row(self) -> dict[str, Any]:
        """The event as ``cxl history --format json`` and ``GET /v1/customers/{id}/history``
        list it (personal fields stay sealed)."""
        return {
            "seq": self.seq,
            "occurred_at": self.body["occurred_at"],
            "type": self.type,
            "event_id": self.event_id,
            "recorded_at": self.recorded_at,
            "hash": self.hash,
        }


def _require_sqlite_ledger(path: Path) -> None:
    """Check, through a read-only connection, that ``path`` is a SQLite file with the ledger's
    tables, before the library opens it (it would switch another database to WAL mode)."""
    if not path.is_file():
        raise StoreError(
            f"there is no ledger store at {path}: nothing has been sealed there yet "
            "(check CXL_STORE and CXL_HOME)"
        )
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = {
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the ledger store {path}: {exc}") from exc
    missing = sorted(set(SQLITE_LEDGER_TABLES) - found)
    if missing:
        raise StoreError(
            f"{path} holds no ledger (no table {missing[0]}): nothing has been sealed there "
            "yet, or CXL_STORE names another database"
        )


@dataclass(frozen=True)
class StoreTuning:
    """How a process uses a PostgreSQL store (``CXL_STORE_*``; SQLite ignores it): connections
    kept per process, the longest a statement may run (lock waits included) before it fails —
    a write is then retried, as after a lost connection — and how long connecting may take."""

    pool_size: int = 2
    statement_timeout_s: float = 60.0
    connect_timeout_s: float = 5.0


def _environment(
    url: str, create: bool = True, tuning: StoreTuning = StoreTuning()
) -> dict[str, str]:
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlparse(url)
        dbname = parts.path.lstrip("/")
        if not dbname:
            raise ConfigError(
                f"CXL_STORE {url!r} names no database (postgresql://user@host:port/db)"
            )
        env = {
            "PERSISTENCE_MODULE": "ledger.postgres_factory:LedgerPostgresFactory",
            "PROCESS_RECORDER_TOPIC": "ledger.recorders:PostgresLedgerRecorder",
            "POSTGRES_DBNAME": unquote(dbname),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_CONNECT_TIMEOUT": str(max(1, round(tuning.connect_timeout_s))),
            "POSTGRES_POOL_SIZE": str(tuning.pool_size),
            # A connection the server dropped (restart, pg_terminate_backend) is replaced when
            # it is next taken from the pool, not found dead by the next statement.
            "POSTGRES_PRE_PING": "y",
            STATEMENT_TIMEOUT_MS: str(round(tuning.statement_timeout_s * 1000)),
            # DESIGN.md: with db functions on, tracking rows are silently not written.
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        }
        schema = parse_qs(parts.query).get("schema")
        if schema:
            env["POSTGRES_SCHEMA"] = schema[0]
        if not create:
            env["CREATE_TABLE"] = "n"
        return env
    path = Path(url)
    if path.exists() and not path.is_file():
        raise ConfigError(f"CXL_STORE {url}: not a file")
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"CXL_STORE {url}: cannot create its directory ({exc.strerror})"
            ) from exc
    # Several ingest workers may share one SQLite file: a writer waits for the lock (seconds at
    # most, each transaction being one batch) rather than failing at once.
    return {
        "PERSISTENCE_MODULE": SQLITE_MODULE,
        "PROCESS_RECORDER_TOPIC": "ledger.recorders:SQLiteLedgerRecorder",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": "60",
        "CREATE_TABLE": "y" if create else "n",
    }


class LedgerStore:
    """Seals validated events into per-customer hash chains and reads them back in ledger order."""

    def __init__(
        self,
        url: str,
        *,
        cache_size: int = 50_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        read_only: bool = False,
        personal: PersonalCipher | None = None,
        merkle: bool = True,
        migrating: bool = False,
        tuning: StoreTuning = StoreTuning(),
    ) -> None:
        """Open (and, unless ``read_only``, create) the store at ``url``.

        ``read_only`` is for commands that only read the ledger (verify, relay, projections): the
        store must exist and hold the ledger's tables, and nothing is created or altered in it.
        ``personal`` seals personal fields encrypted with their customers' keys; every command
        that seals passes it (``cxl.store_access``). Without it personal fields are sealed as
        plaintext: only tests and the benchmark's baseline do that. ``merkle`` false seals without
        growing the Merkle tree: only the benchmark's baseline does that, in a store of its own.
        A writer refuses a store whose own tables are at another schema version
        (``ledger.migrations``) unless it is ``migrating`` them (``cxl store migrate``).
        """
        self.url = url
        self._clock = clock
        self._personal = personal
        self._merkle = merkle
        env = _environment(url, create=not read_only, tuning=tuning)
        try:
            if read_only:
                if env["PERSISTENCE_MODULE"] == SQLITE_MODULE:
                    _require_sqlite_ledger(Path(url))
                self._app = LedgerApplication(env=env)
            else:
                with _postgres_setup(env):
                    self._app = LedgerApplication(env=env)
        except PersistenceError as exc:
            raise StoreError(f"cannot open the ledger store {_redact(url)}: {exc}") from exc
        self.recorder: LedgerRecorder = self._app.recorder  # type: ignore[assignment]
        self._cache: OrderedDict[str, StreamHead] = OrderedDict()
        self._cache_size = cache_size
        self._counted: tuple[int, int, str] | None = None
        """(position, sealed events through it, fingerprint of its row): ``sealed_through``."""
        # One seal at a time per store object: a seal advances cached heads before it commits.
        self._sealing = threading.Lock()
        if read_only:
            self._require_ledger_tables()
        self._check_plain_json()
        if not read_only:
            tail = self._read_tail()
            self._check_schema(bool(tail.events), migrating)
            had_tree = self._check_tail(tail)
            if self.recorder.ledger_id() is None:
                if had_tree:
                    self.close()
                    raise LedgerTamperedError(
                        None,
                        "the ledger's id was removed (its checkpoints name it); run `cxl verify`",
                        place="cxl_ledger",
                    )
                self.recorder.ledger_id(create=True)

    @classmethod
    def for_settings(cls, settings: Settings, *, read_only: bool = False) -> LedgerStore:
        """The configured store; a writer seals personal fields with the configured key store
        (opened here; started, with its key-encryption key, on first use only)."""
        tuning = StoreTuning(
            settings.store_pool_size,
            settings.store_statement_timeout_s,
            settings.store_connect_timeout_s,
        )
        if read_only:
            return cls(settings.store_url, read_only=True, tuning=tuning)
        settings.check_key_places()
        store = cls(settings.store_url, cache_size=settings.stream_cache, tuning=tuning)
        try:
            keys = KeyStore(
                settings.key_store_path,
                settings.kek_path,
                may_start=lambda: store._refuse_new_key_store(settings.key_store_path),
            )
        except BaseException:
            store.close()
            raise
        store._personal = PersonalCipher(keys)
        return store

    def _refuse_new_key_store(self, path: Path) -> None:
        """A new key store for a ledger that already holds sealed fields would mint second keys
        for its customers and leave their sealed text unreadable: refuse it."""
        try:
            holds = self.recorder.holds_sealed_fields()
        except PersistenceError as exc:
            raise StoreError(f"cannot read the ledger store {_redact(self.url)}: {exc}") from exc
        if holds:
            raise KeyStoreError(
                f"there is no key store at {path} (CXL_KEY_STORE), but the ledger "
                f"{_redact(self.url)} holds personal fields sealed with one: point CXL_KEY_STORE "
                "and CXL_KEK_FILE at that key store (or restore it from its backup)"
            )

    def _check_schema(self, sealed: bool, migrating: bool) -> None:
        """Write only into a store whose own tables are at this version's schema: a new store is
        stamped with it; an older one must be migrated first (``cxl store migrate``), a newer
        one was written by a newer cx-ledger."""
        try:
            recorded = self.recorder.ledger_meta().get(SCHEMA_VERSION_KEY)
        except PersistenceError as exc:
            raise StoreError(f"cannot read the ledger store {_redact(self.url)}: {exc}") from exc
        try:
            version = schema_version_of(recorded)
        except LedgerTamperedError:
            self.close()
            raise
        if recorded is None and not sealed:
            self.recorder.set_meta(SCHEMA_VERSION_KEY, str(SCHEMA_VERSION))
            return
        if version == SCHEMA_VERSION or (migrating and version < SCHEMA_VERSION):
            return
        self.close()
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"the ledger store {_redact(self.url)} is at schema version {version}, this "
                f"cx-ledger writes version {SCHEMA_VERSION}: run `cxl store migrate` first "
                "(back the store up before, as for any migration)"
            )
        raise StoreError(
            f"the ledger store {_redact(self.url)} is at schema version {version}, written by a "
            f"newer cx-ledger (this one knows up to {SCHEMA_VERSION}); upgrade cx-ledger"
        )

    def _read_tail(self) -> LedgerTail:
        try:
            with self.recorder.sealing() as tx:
                return tx.tail(TAIL_CHECKED)
        except PersistenceError as exc:
            self.close()
            raise StoreError(f"cannot read the ledger store {_redact(self.url)}: {exc}") from exc

    def _check_tail(self, tail: LedgerTail) -> bool:
        """Refuse to write into a ledger whose newest events lack their event-id rows (dedupe
        reads that index: an event could be sealed twice) or whose Merkle tree does not end at the
        newest sealed event (checkpoints would leave events out). Only the tail is read, so that
        opening does not grow with history; ``cxl verify`` checks every row. A ledger sealed
        before the tree existed gets its tree built here, once. Whether the store had a tree."""
        problem = None
        missing = sum(1 for event_id, _ in tail.events if event_id not in tail.indexed)
        if missing:
            problem = (
                f"the event-id index lacks {missing:,} of the last {len(tail.events):,} sealed "
                "events"
            )
        elif tail.tree_size and not tail.events:
            problem = f"a Merkle tree of {tail.tree_size:,} leaves for no sealed event"
        elif tail.events and tail.tree_size and tail.last_leaf != _leaf_hex(tail.events[0][1]):
            problem = "the Merkle tree's last leaf is not the newest sealed event"
        if problem is not None:
            self.close()
            raise LedgerTamperedError(
                None,
                f"{problem}; it was edited outside cx-ledger (run `cxl verify`), and sealing "
                "into it could seal an event twice or leave events out of its checkpoints",
            )
        if tail.tree_size == 0 and tail.events and self._merkle:
            self._build_tree()
        return tail.tree_size > 0

    def _build_tree(self) -> None:
        """Build the Merkle tree of a ledger sealed before there was one, in ledger order."""
        pending: list[str] = []

        def flush() -> None:
            with self.recorder.sealing() as tx:
                tx.insert([], tracking=None, event_ids=[], mark=None, tree=_grown_tree(tx, pending))
            pending.clear()

        for page in self.rows():
            for row in page:
                if row.topic == SEALED_TOPIC:
                    state = orjson.loads(row.state)
                    pending.append(state["hash"])
            if len(pending) >= 20_000:
                flush()
        if pending:
            flush()

    def _require_ledger_tables(self) -> None:
        try:
            self.recorder.rows(1, 1)
            self.recorder.event_id_rows("", 1)
            self.recorder.source_mark("")
            self.recorder.max_tracking_id("")
        except PersistenceError as exc:
            self.close()
            raise StoreError(
                f"{_redact(self.url)} holds no ledger (its tables are missing: {exc}); "
                "nothing has been sealed there yet, or CXL_STORE names another database"
            ) from exc

    def _check_plain_json(self) -> None:
        """Refuse a store whose events were written compressed or encrypted (by the library's
        own settings): the ledger could neither verify nor project them."""
        try:
            first = self.recorder.rows(1, 1)
        except PersistenceError as exc:
            raise StoreError(f"cannot read the ledger store {_redact(self.url)}: {exc}") from exc
        if first:
            try:
                orjson.loads(first[0].state)
            except orjson.JSONDecodeError:
                raise StoreError(
                    f"the ledger store {_redact(self.url)} holds events that are not plain JSON "
                    "(written with a compressor or cipher?); cx-ledger cannot read or verify it"
                ) from None

    @property
    def origin(self) -> str:
        """The name of this ledger in its checkpoints: ``cx-ledger/<ledger id>``."""
        try:
            ledger_id = self.recorder.ledger_id()
        except PersistenceError:
            ledger_id = None
        if ledger_id is None:
            raise StoreError(
                f"the ledger store {_redact(self.url)} has no ledger id yet: it was written by an "
                "older cx-ledger; run any writing command (e.g. `cxl ingest` of nothing) first"
            )
        return ORIGIN_PREFIX + ledger_id

    def tree_root(self, size: int | None = None) -> tuple[int, bytes]:
        """(size, RFC 9162 root) of the stored Merkle tree, of its first ``size`` leaves when
        given (at most the current size)."""
        current = self.recorder.tree_size()
        size = current if size is None else size
        if not 0 <= size <= current:
            raise StoreError(f"the ledger's Merkle tree has {current:,} leaves, not {size:,}")
        return size, subtree_root(self.tree_node, 0, size)

    def tree_node(self, level: int, index: int) -> bytes:
        """A stored full subtree of the Merkle tree (``ledger.merkle.FullNode``)."""
        found = self.recorder.tree_hash(level, index)
        if found is None:
            raise LedgerTamperedError(
                None, f"the Merkle tree lacks node {level}/{index} (edited outside cx-ledger)"
            )
        return found

    @property
    def keys(self) -> KeyStore:
        """The key store this writer seals personal fields with."""
        return self._require_personal().keys

    def _require_personal(self) -> PersonalCipher:
        if self._personal is None:
            raise StoreError("this ledger store was opened without its key store")
        return self._personal

    def close(self) -> None:
        self._app.close()
        if self._personal is not None:
            self._personal.keys.close()

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
        *,
        mark: str | None = None,
    ) -> SealReport:
        """Seal ``events`` (any customers, in arrival order) and record ``tracking`` atomically.

        ``mark`` is the fingerprint of the source record at ``tracking``'s position, kept so that a
        replaced source log can be recognised (``source_mark``). ``before_commit`` sees the
        decisions (what is sealed, duplicate, refused) before anything is written; if it raises,
        nothing is written. Ingest uses it to dead-letter refusals first, so a crash (or a batch
        decided again after another writer got there first) can duplicate a dead letter but
        never lose one.
        """
        with self._sealing:
            return self._seal(list(events), tracking, before_commit, mark)

    def _seal(
        self,
        events: list[ValidEvent],
        tracking: Tracking | None,
        before_commit: Callable[[SealReport], None] | None,
        mark: str | None,
    ) -> SealReport:
        try:
            forms = self._sealed_forms(events)
        except PersistenceError as exc:
            raise StoreError(f"could not read the ledger store {_redact(self.url)}: {exc}") from exc
        conflicts = 0
        for attempt in range(1, CONNECTION_RETRIES + 1):
            try:
                return self._seal_once(events, forms, tracking, before_commit, mark)
            except IntegrityError as exc:
                # Another writer appended to one of these streams first (a second ingest worker
                # given a customer's events on another partition). The touched aggregates were
                # evicted, so the retry continues their chains from what is now stored.
                conflicts += 1
                if conflicts == CONFLICT_RETRIES:
                    raise StoreError(
                        f"the ledger store kept changing under this writer ({exc}); are several "
                        "ingests sharing partitions? Publishers must key events by customer_id."
                    ) from exc
            except (OperationalError, InterfaceError) as exc:
                # A lost connection (a restarted or terminated database session) rolled the
                # transaction back: nothing was written, so the same batch is tried again.
                if attempt == CONNECTION_RETRIES or timed_out(exc):
                    raise StoreError(
                        f"could not write the ledger store {_redact(self.url)}: {exc}"
                    ) from exc
                time.sleep(min(2.0, 0.1 * 2**attempt))
        raise AssertionError("unreachable")

    def _sealed_forms(self, events: list[ValidEvent]) -> _SealedForms:
        """Each event's bytes as they will be sealed (personal fields encrypted with its
        customer's data key, made and committed in the key store first), its dedupe digest and
        key id; and which customers are erased. Done before the store's write lock is taken, so
        that another writer seals meanwhile."""
        forms = _SealedForms()
        personal = self._personal
        if personal is None:
            forms.sealed = [(e.canonical, content_digest(e.canonical), None) for e in events]
            return forms
        customers = {e.customer_id for e in events}
        forms.erased = personal.erased_among(customers)
        needing = {
            e.customer_id
            for e in events
            if e.customer_id not in forms.erased and PersonalCipher.has_personal_value(e.body)
        }
        if needing:
            heads = self._known_heads(needing)
            streams: dict[str, str | None] = {}
            for customer_id in needing:
                head = heads.get(customer_id)
                if head is None or not head.erased:
                    streams[customer_id] = None if head is None else head.kid
            personal.provide(streams)
        keys = personal.keys
        for event in events:
            if event.customer_id in forms.erased and event.type != ERASED_TYPE:
                forms.sealed.append(None)
                continue
            canonical, digest = personal.seal_fields(event.body, event.encode, event.canonical)
            if digest is None:
                forms.sealed.append((canonical, content_digest(canonical), None))
            else:
                forms.sealed.append((canonical, digest, keys.cached(event.customer_id).kid))
        return forms

    def _known_heads(self, customer_ids: set[str]) -> dict[str, StreamHead]:
        """Heads from the cache, or read (not cached: the sealing transaction reads its own)."""
        found = {c: h for c in customer_ids if (h := self._cache.get(c)) is not None}
        missing = [c for c in customer_ids if c not in found]
        if missing:
            found.update(self.recorder.stream_heads(missing))
        return found

    def _seal_once(
        self,
        events: list[ValidEvent],
        forms: _SealedForms,
        tracking: Tracking | None,
        before_commit: Callable[[SealReport], None] | None,
        mark: str | None,
    ) -> SealReport:
        """One sealing transaction. Each event is canonicalised once (at validation), its personal
        fields sealed once, hashed once, and its stored row written from those same bytes; every
        table is written with one statement per batch.

        When every customer of the batch has a cached head (a writer's steady state), the chain
        is decided before the write lock is taken, against those heads, the event-id index as
        read then and the clock then (``_decide``); under the lock it is kept only if no seal
        instant later than that clock was stored meanwhile, else decided again there. Whatever
        else changed meanwhile — another writer sealed one of these event ids or extended one of
        these streams — makes the insert violate a key, and the whole batch is decided again
        from the store (``seal``'s retry). So the lock is held for the inserts and the commit,
        not for the hashing."""
        stream_ids = {c: relationship_id(c) for c in {e.customer_id for e in events}}
        event_ids = list({e.event_id for e in events})
        plan: _Decision | None = None
        try:
            cached = {c: h for c in stream_ids if (h := self._cache.get(c)) is not None}
            if events and len(cached) == len(stream_ids):
                known = self.recorder.known_events(event_ids)
                plan = _Decision(self._clock())
                self._decide(plan, events, forms, known, cached)
            with self.recorder.sealing() as tx:
                if tracking is not None and tx.has_tracking(tracking):
                    if plan is not None:
                        self._forget_heads(plan.touched)
                    return SealReport(already_done=True)
                last = self._last_instant(tx)
                if plan is not None and last is not None and last > plan.at:
                    self._forget_heads(plan.touched)
                    plan = None
                if plan is None:
                    known = tx.known_events(event_ids)
                    heads = self._heads(tx, stream_ids)
                    now = self._clock()
                    plan = _Decision(now if last is None else max(now, last))
                    self._decide(plan, events, forms, known, heads)
                if before_commit is not None:
                    before_commit(plan.report)
                if plan.rows or tracking is not None:
                    mark_row = (
                        None
                        if tracking is None
                        else (tracking.application_name, tracking.notification_id, mark or "")
                    )
                    tree = _grown_tree(tx, plan.sealed_hashes) if self._merkle else []
                    tx.insert(
                        [
                            (stream_ids[c], version, topic, state)
                            for c, version, topic, state in plan.rows
                        ],
                        tracking=tracking,
                        event_ids=plan.id_rows,
                        mark=mark_row,
                        tree=tree,
                        heads=list(plan.touched.values()),
                    )
        except PersistenceError as exc:
            if plan is not None:
                self._forget_heads(plan.touched)
            if isinstance(exc, IntegrityError | OperationalError | InterfaceError):
                raise
            raise StoreError(
                f"could not write the ledger store {_redact(self.url)}: {exc}"
            ) from exc
        except BaseException:
            if plan is not None:
                self._forget_heads(plan.touched)
            raise
        for customer_id, head in plan.touched.items():
            self._remember(customer_id, head)
        self._trim()
        return plan.report

    def _decide(
        self,
        plan: _Decision,
        events: list[ValidEvent],
        forms: _SealedForms,
        known: dict[str, KnownEvent],
        heads: dict[str, StreamHead],
    ) -> None:
        """Fill ``plan``: what sealing ``events`` at ``plan.at`` onto ``heads`` (absent: no stream
        yet) writes, given the ``known`` event ids: each event sealed, a duplicate, refused (an id
        reused with other content) or dropped (its customer is erased); each new stream's
        creation row; the chain; the heads it leaves. The heads it extends are advanced in place
        and listed in ``plan.touched`` as they are, so that whoever does not commit the plan —
        this raising halfway included — forgets them (``_forget_heads``)."""
        report = plan.report
        touched = plan.touched
        recorded_at = format_instant(plan.at)
        timestamp = stored_timestamp(plan.at)
        known = dict(known)
        anomalies = report.anomalies
        for event, form in zip(events, forms.sealed, strict=True):
            customer_id = event.customer_id
            head = touched.get(customer_id) or heads.get(customer_id)
            if form is None or (head is not None and head.erased):
                report.erased += 1
                continue
            canonical, digest, kid = form
            if kid is not None and head is not None and head.kid not in (None, kid):
                self._require_personal().check_stream(customer_id, head.kid)
            seen = known.get(event.event_id)
            if seen is not None:
                if seen.digest == digest:
                    report.duplicates += 1
                else:
                    report.rejected.append(Rejection(event, REUSED_ID))
                continue
            known[event.event_id] = KnownEvent(customer_id, digest)
            if head is None:
                head = StreamHead(customer_id)
                plan.rows.append(
                    (customer_id, 1, CREATED_TOPIC, created_state(customer_id, timestamp))
                )
            touched[customer_id] = head
            for name in head.anomalies_of(event.body):
                anomalies[name] = anomalies.get(name, 0) + 1
            seq = head.seq + 1
            hash_ = seal_hash(head.hash, canonical, seq, recorded_at)
            # Stored as orjson writes the canonical body, so that verify can rebuild the stored
            # bytes exactly from the hashed content; the same bytes, except for the rare body
            # orjson cannot write canonically.
            stored_body = (
                canonical
                if event.encode is orjson_canonical
                else orjson.dumps(orjson.loads(canonical))
            )
            plan.rows.append(
                (
                    customer_id,
                    seq + 1,
                    SEALED_TOPIC,
                    sealed_state(
                        stored_body, event.event_id, seq, head.hash, hash_, recorded_at, timestamp
                    ),
                )
            )
            head.note(event.body, seq, hash_, kid)
            plan.sealed_hashes.append(hash_)
            plan.id_rows.append((event.event_id, customer_id, digest))
            report.sealed += 1

    def forget(self, customer_id: str, reason: str) -> Forgetting:
        """Erase ``customer_id``: destroy their data key, then seal ``customer.erased``.

        The key goes first: once it is destroyed nothing can reveal the customer's text, whatever
        fails next, and a rerun finishes the job (both steps are idempotent). The erasure is
        refused before anything is destroyed when the reason is not acceptable, the ledger holds
        no such customer, or the key store does not hold the key the customer's stream was sealed
        with (it is another ledger's key store: destroying nothing there would be a false
        erasure). ``ErasureIncompleteError`` when the key was destroyed but sealing failed.
        """
        personal = self._require_personal()
        event = erasure_event(customer_id, reason, self._clock())
        try:
            head = self._known_heads({customer_id}).get(customer_id)
        except PersistenceError as exc:
            raise StoreError(f"could not read the ledger store {_redact(self.url)}: {exc}") from exc
        if head is None:
            raise StoreError(f"the ledger holds no customer {customer_id!r}")
        personal.check_stream(customer_id, head.kid)
        kid = personal.keys.erase(customer_id)
        try:
            sealed = not head.erased and self.seal([event]).sealed == 1
        except CxlError as exc:
            raise ErasureIncompleteError(customer_id, exc) from exc
        return Forgetting(kid, sealed)

    @staticmethod
    def _last_instant(tx: SealingTransaction) -> datetime | None:
        """The store's last seal instant (None: nothing sealed yet): a seal is never earlier."""
        last = tx.last_state()
        if last is None:
            return None
        return datetime.fromisoformat(orjson.loads(last)["recorded_at"])

    def record_position(self, tracking: Tracking, mark: str | None = None) -> None:
        """Record a source position with nothing to seal (e.g. a batch of rejects only)."""
        self.seal((), tracking, mark=mark)

    def _remember(self, customer_id: str, head: StreamHead) -> None:
        self._cache[customer_id] = head
        self._cache.move_to_end(customer_id)

    def _trim(self) -> None:
        """Keep at most ``cache_size`` heads (and data keys): least recently sealed go first."""
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        if self._personal is not None:
            self._personal.keys.trim(self._cache_size)

    def _forget_heads(self, heads: dict[str, StreamHead]) -> None:
        """Drop heads a failed transaction advanced: they are read again from the store."""
        for customer_id in heads:
            self._cache.pop(customer_id, None)

    def _heads(self, tx: SealingTransaction, stream_ids: dict[str, UUID]) -> dict[str, StreamHead]:
        """The heads of these customers' streams (absent: no stream yet), from the cache or,
        for the others, their stored rows, read inside the transaction (``stream_ids``: each
        customer's stream id)."""
        found = {c: h for c in stream_ids if (h := self._cache.get(c)) is not None}
        missing = [c for c in stream_ids if c not in found]
        if missing:
            stored = tx.heads(missing)
            _check_heads(stored, tx.stream_ends({c: stream_ids[c] for c in missing}))
            found.update(stored)
        return found

    # -- positions -----------------------------------------------------------------------------

    def position(self, name: str) -> int | None:
        """Last recorded position for a tracked source; ``None`` when nothing was recorded."""
        return self.recorder.max_tracking_id(name)

    def source_mark(self, name: str) -> SourceMark | None:
        """The last recorded position of ``name`` with the fingerprint of the record there.

        Every position is recorded with its mark, in the same transaction (an empty fingerprint
        when the source has no identity to record): a position without its mark, or with a mark
        for another position, was written by something other than the ledger.
        """
        return self.recorder.source_mark(name)

    def positions(self) -> dict[str, int]:
        """Every tracked source's recorded position."""
        return self.recorder.positions()

    def source_marks(self) -> dict[str, SourceMark]:
        """Every tracked source's mark (position and fingerprint), recorded with its position."""
        return self.recorder.source_marks()

    def has_position(self, tracking: Tracking) -> bool:
        current = self.position(tracking.application_name)
        return current is not None and current >= tracking.notification_id

    # -- reading -------------------------------------------------------------------------------

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def checkpoint_through(self, position: int) -> tuple[int, bytes]:
        """(tree size, root) of the ledger up to ``position``: the sealed events at or before it
        are the first leaves of the Merkle tree."""
        return self.tree_root(self.sealed_through(position))

    def sealed_through(self, position: int) -> int:
        """How many sealed events lie at or before ledger ``position``.

        Counting is a pass over the rows, and a dashboard asks every few seconds of a ledger of
        millions: the last answer is kept with the fingerprint of the row it ended at, and a
        later position counts only the rows after that one. Should that row have changed (the
        store was replaced or restored under this process), everything is counted again."""
        kept = self._counted
        if kept is not None and kept[0] <= position and self._row_print(kept[0]) == kept[2]:
            count = kept[1] + self.recorder.sealed_through(position, after=kept[0])
        else:
            count = self.recorder.sealed_through(position)
        fingerprint = self._row_print(position)
        if fingerprint is not None:
            self._counted = (position, count, fingerprint)
        return count

    def _row_print(self, position: int) -> str | None:
        rows = self.recorder.rows(position, 1)
        if not rows or rows[0].position != position:
            return None
        return content_digest(rows[0].state)

    def rows(self, start: int = 1, *, page: int = 5000) -> Iterator[list[StoredRow]]:
        """Every stored row, whatever its topic, in ledger order: what ``cxl verify`` reads."""
        while rows := self.recorder.rows(start, page):
            yield rows
            start = rows[-1].position + 1

    def stream_rows(self, *, page: int = 5000) -> Iterator[list[StoredRow]]:
        """Every stored row, stream by stream (each in version order): one stream at a time is
        enough to fold it, whatever the ledger's size."""
        after = ("", 0)
        while rows := self.recorder.stream_rows(after, page):
            yield rows
            after = (rows[-1].originator_id, rows[-1].originator_version)

    def stream_head_rows(self, *, page: int = 10_000) -> Iterator[list[tuple[str, int, str, str]]]:
        """The stored stream heads, (customer_id, seq, hash, facts) in pages."""
        after = ""
        while rows := self.recorder.stream_head_rows(after, page):
            yield rows
            after = rows[-1][0]

    def event_id_rows(self, *, page: int = 10_000) -> Iterator[list[tuple[str, str, str]]]:
        """The event-id index, (event_id, customer_id, digest) in pages."""
        after = ""
        while rows := self.recorder.event_id_rows(after, page):
            yield rows
            after = rows[-1][0]

    def read(
        self, start: int = 1, *, stop: int | None = None, page: int = 5000
    ) -> Iterator[list[SealedEvent]]:
        """Pages of sealed events with ``start <= position <= stop``, in ledger order."""
        for notifications in self._pages(start, stop, page):
            yield [
                _decode(n.id, n.originator_id, n.originator_version, n.state) for n in notifications
            ]

    def read_states(
        self, start: int = 1, *, stop: int | None = None, page: int = 5000
    ) -> Iterator[tuple[list[int], list[bytes]]]:
        """Pages of (positions, stored JSON states) of sealed events, in ledger order, up to
        position ``stop`` (inclusive) when given.

        For bulk readers that parse the JSON elsewhere (the projections hand it to DuckDB): no
        per-event decoding in Python.
        """
        for notifications in self._pages(start, stop, page):
            yield [n.id for n in notifications], [n.state for n in notifications]

    def _pages(self, start: int, stop: int | None, page: int) -> Iterator[Sequence[Notification]]:
        while True:
            notifications = self.recorder.select_notifications(
                start, page, stop=stop, topics=(SEALED_TOPIC,)
            )
            if not notifications:
                return
            yield notifications
            start = notifications[-1].id + 1
            if len(notifications) < page:
                return

    def stream(
        self, customer_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[SealedEvent]:
        """One customer's sealed events in seq order: those after ``after_seq``, at most
        ``limit`` of them (read from the stream's key, not the whole stream)."""
        stored = self.recorder.select_events(
            relationship_id(customer_id), gt=after_seq + 1, limit=limit
        )
        return [
            _decode(0, s.originator_id, s.originator_version, s.state)
            for s in stored
            if s.topic == SEALED_TOPIC
        ]


def schema_version_of(recorded: str | None) -> int:
    """The version of the store's own tables from its recorded value (absent: 1, from before
    versions were recorded); anything but a positive integer was not written by cx-ledger."""
    if recorded is None:
        return 1
    if not (recorded.isascii() and recorded.isdigit()) or int(recorded) < 1:
        raise LedgerTamperedError(
            None,
            f"the store's schema version is {recorded!r}, which no cx-ledger writes; run "
            "`cxl verify`",
            place=LEDGER_META,
        )
    return int(recorded)


def _grown_tree(tx: SealingTransaction, sealed: list[str]) -> list[tuple[int, int, bytes]]:
    """The Merkle tree rows that appending the seal hashes ``sealed``, in ledger order, adds:
    each leaf and every full subtree it completes."""
    if not sealed:
        return []
    size, edge = tx.tree_edge()
    builder = TreeBuilder(size, edge)
    rows: list[tuple[int, int, bytes]] = []
    for hash_ in sealed:
        rows += builder.append(leaf_hash(bytes.fromhex(hash_)))
    return rows


def _check_heads(heads: dict[str, StreamHead], ends: dict[str, tuple[int, bytes]]) -> None:
    """A stored head is trusted only if it is its stream's last row: the same seq and hash (the
    row is outside every hash; sealing onto an edited one would break the chain for good)."""
    for customer_id in heads.keys() | ends.keys():
        head, end = heads.get(customer_id), ends.get(customer_id)
        if head is None or end is None:
            what = "no stream head" if head is None else "a stream head but no stream"
        else:
            version, state = end
            try:
                last_hash = orjson.loads(state).get("hash") if version > 1 else None
            except orjson.JSONDecodeError:
                last_hash = None
            if version == head.version and last_hash == head.hash:
                continue
            what = f"a stream head (seq {head.seq}) that is not its stream's last event"
        raise LedgerTamperedError(
            None,
            f"customer {customer_id!r} has {what}; the store was edited outside cx-ledger "
            "(run `cxl verify`)",
            place=STREAM_HEADS,
        )


def _leaf_hex(seal_hash: str) -> str | None:
    """The Merkle leaf hash (hex) of a seal hash; None when it is not one (an edited row)."""
    try:
        return leaf_hash(bytes.fromhex(seal_hash)).hex()
    except ValueError:
        return None


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


@contextmanager
def _postgres_setup(env: dict[str, str]) -> Iterator[None]:
    """For PostgreSQL: create the schema, and hold an advisory lock while the tables are created.

    Two processes opening a new store at once (ingest workers) would otherwise race in
    ``CREATE TABLE IF NOT EXISTS`` ("tuple concurrently updated").
    """
    if env["PERSISTENCE_MODULE"] == SQLITE_MODULE:
        yield
        return
    import psycopg

    withhold_from_libpq()
    schema = env.get("POSTGRES_SCHEMA", "public")
    try:
        conn = psycopg.connect(
            dbname=env["POSTGRES_DBNAME"],
            host=env["POSTGRES_HOST"],
            port=int(env["POSTGRES_PORT"]),
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"] or None,
            connect_timeout=5,
            autocommit=True,
        )
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach PostgreSQL at {env['POSTGRES_HOST']}: {exc}") from exc
    with conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"cx-ledger setup {schema}"])
        if "POSTGRES_SCHEMA" in env:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        yield
