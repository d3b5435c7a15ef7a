"""Per-customer data keys, kept apart from the ledger and wrapped by a key-encryption key.

Crypto-shredding: each customer's personal fields are encrypted with that customer's own 256-bit
data key, and erasing the customer destroys the key. The ledger keeps only ciphertext, so its
chains, hashes and copies never change; without the key, nobody can read what was written.

Contract:
- The key store is its own SQLite file (``CXL_KEY_STORE``, default ``CXL_HOME/keys.sqlite``, mode
  0600), never the event store: copying the ledger and the projections without it reveals nothing.
  It runs with ``secure_delete`` and a rollback journal (not WAL), so a destroyed key's bytes are
  overwritten in the file, not left in a free page or a write-ahead log.
- Every data key is stored wrapped (AES-256-GCM) by the key-encryption key (KEK), read from
  ``CXL_KEK_FILE``: 32 random bytes, base64, one line. The wrap's associated data binds the key to
  its customer and key id, so a row copied onto another customer does not unwrap.
- A key store is started only where there is none, and only for a ledger that holds no sealed
  field yet (``may_start``); the KEK is created then if missing (mode 0600, in a directory of mode
  0700). A key store remembers a check value of its KEK, so a missing, replaced, mangled or
  shared (group/world-readable) KEK is a ``KeyStoreError`` naming the file, never new keys or
  garbage.
- ``erase`` deletes the customer's key and leaves a tombstone in the same transaction; a customer
  with a tombstone never gets a key again, whoever asks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger.errors import KeyStoreError
from ledger.private_files import create_private, read_private

KEY_BYTES = 32
_KEYS_BY_KID = 65_536
"""Data keys a reader keeps by key id (``KeyStore.key``), the oldest looked up going first."""
_NONCE_BYTES = 12
_KEK_CHECK_LABEL = b"cx-ledger key-encryption key check v1"
_MAC_KEY_INFO = b"cx-ledger personal-field mac v1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cxl_key_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cxl_data_keys (
    customer_id TEXT PRIMARY KEY, kid TEXT NOT NULL UNIQUE, wrapped BLOB NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cxl_erasures (
    customer_id TEXT PRIMARY KEY, kid TEXT, erased_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cxl_erasures_kid ON cxl_erasures (kid);
"""


@dataclass(frozen=True, slots=True)
class DataKey:
    """One customer's unwrapped data key: ``aead`` encrypts, ``mac_key`` fingerprints plaintext.

    Only the key bytes are kept: a cipher object holds an OpenSSL context of ~2.4 KB, ten times
    the rest, and a writer caches tens of thousands of keys; making one costs ~2 µs."""

    customer_id: str
    kid: str
    raw: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)

    @property
    def aead(self) -> AESGCM:
        return AESGCM(self.raw)


def _data_key(customer_id: str, kid: str, raw: bytes) -> DataKey:
    mac_key = HKDF(SHA256(), KEY_BYTES, salt=None, info=_MAC_KEY_INFO).derive(raw)
    return DataKey(customer_id, kid, raw, mac_key)


def _wrap_aad(customer_id: str, kid: str) -> bytes:
    return f"cx-ledger data key\x00{customer_id}\x00{kid}".encode()


def _kek_check(kek: bytes) -> str:
    return hmac.new(kek, _KEK_CHECK_LABEL, hashlib.sha256).hexdigest()


_KEK_FILE_LIMIT = 1024


_KEK = "the key-encryption key"


def read_kek(path: Path) -> bytes:
    """The key-encryption key in ``path``; ``KeyStoreError`` when it is missing, not a private
    regular file (a KEK readable by others unwraps every customer's data key), or not one key."""
    raw = read_private(path, _KEK_FILE_LIMIT, _KEK, KeyStoreError)
    if raw is None:
        raise KeyStoreError(
            f"the key-encryption key file {path} is missing (CXL_KEK_FILE); without it no "
            "personal field can be read or written"
        )
    try:
        kek = base64.b64decode(raw.strip(), validate=True)
    except binascii.Error:
        kek = b""
    if len(kek) != KEY_BYTES:
        raise KeyStoreError(
            f"{path} is not a key-encryption key (expected {KEY_BYTES} random bytes, base64, "
            "one line)"
        )
    return kek


def create_kek(path: Path) -> bytes:
    """Write a new random key-encryption key to ``path`` (0600; its directory 0700 when created);
    the one already there if another process made it first."""
    kek = secrets.token_bytes(KEY_BYTES)
    if create_private(path, base64.b64encode(kek) + b"\n", _KEK, KeyStoreError):
        return kek
    return read_kek(path)


class KeyStore:
    """The per-customer data keys of one ledger (see the module docstring for the contract)."""

    def __init__(
        self,
        path: Path,
        kek_file: Path,
        *,
        read_only: bool = False,
        may_start: Callable[[], None] | None = None,
    ) -> None:
        """Open the key store at ``path`` with the KEK in ``kek_file``.

        A writer starts a new key store (and creates the KEK if missing) only when ``path`` holds
        no key store yet; ``may_start`` is called first and raises to refuse (the ledger already
        holds fields sealed with another key store). A key store that holds keys or erasures is
        never started again, whatever is missing from it."""
        self.path = path
        self.kek_file = kek_file
        self.read_only = read_only
        self._cache: dict[str, DataKey] = {}
        self._by_kid: dict[str, DataKey | None] = {}
        self._erased: set[str] = set()
        if not read_only and not path.exists() and may_start is not None:
            may_start()
        self._connection = self._connect()
        try:
            self._wrapper = AESGCM(self._open_kek(may_start))
        except BaseException:
            self._connection.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.read_only:
                if not self.path.is_file():
                    raise KeyStoreError(
                        f"there is no key store at {self.path} (CXL_KEY_STORE): no personal "
                        "field was ever sealed with it"
                    )
                connection = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not self.path.exists():
                    os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
                connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                connection.execute("PRAGMA journal_mode=DELETE")
            connection.execute("PRAGMA secure_delete=ON")
            if not self.read_only:
                connection.executescript(_SCHEMA)
            return connection
        except (OSError, sqlite3.Error) as exc:
            raise KeyStoreError(f"cannot open the key store {self.path}: {exc}") from exc

    def _open_kek(self, may_start: Callable[[], None] | None) -> bytes:
        recorded = self._meta("kek_check")
        if recorded is None and not self.read_only:
            if self._holds_anything():
                # Keys without a check value (an interrupted first use, or an edited file): the
                # KEK must already exist and must unwrap them; a new one would orphan them all.
                kek = read_kek(self.kek_file)
                self._wrapper = AESGCM(kek)
                self._unwrap_any()
            else:
                if may_start is not None:
                    may_start()
                kek = (
                    read_kek(self.kek_file) if self.kek_file.exists() else create_kek(self.kek_file)
                )
            with self._write() as db:
                db.execute(
                    "INSERT OR IGNORE INTO cxl_key_meta VALUES ('kek_check', ?)",
                    [_kek_check(kek)],
                )
            recorded = self._meta("kek_check")
        else:
            kek = read_kek(self.kek_file)
        if recorded is not None and not hmac.compare_digest(recorded, _kek_check(kek)):
            raise KeyStoreError(
                f"the key-encryption key in {self.kek_file} is not the one the key store "
                f"{self.path} was made with (CXL_KEK_FILE); restore the right file"
            )
        return kek

    def _holds_anything(self) -> bool:
        try:
            return (
                self._connection.execute(
                    "SELECT 1 FROM cxl_data_keys UNION ALL SELECT 1 FROM cxl_erasures LIMIT 1"
                ).fetchone()
                is not None
            )
        except sqlite3.Error as exc:
            raise KeyStoreError(f"{self.path} is not a cx-ledger key store ({exc})") from exc

    def _unwrap_any(self) -> None:
        row = self._connection.execute(
            "SELECT customer_id, kid, wrapped FROM cxl_data_keys LIMIT 1"
        ).fetchone()
        if row is None:
            return
        try:
            self._unwrap(row[0], row[1], bytes(row[2]))
        except KeyStoreError:
            raise KeyStoreError(
                f"the key-encryption key in {self.kek_file} does not unwrap the data keys in "
                f"{self.path} (CXL_KEK_FILE); restore the right file"
            ) from None

    def _meta(self, name: str) -> str | None:
        try:
            row = self._connection.execute(
                "SELECT value FROM cxl_key_meta WHERE name = ?", [name]
            ).fetchone()
        except sqlite3.Error as exc:
            raise KeyStoreError(f"{self.path} is not a cx-ledger key store ({exc})") from exc
        return None if row is None else str(row[0])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise KeyStoreError("the key store was opened read-only")
        db = self._connection
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise KeyStoreError(f"cannot write the key store {self.path}: {exc}") from exc

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keys ----------------------------------------------------------------------------------

    def keys_for(self, customer_ids: Iterable[str], *, create: bool = True) -> dict[str, DataKey]:
        """The data keys of ``customer_ids`` that are not erased, creating missing ones (unless
        ``create`` is false) in one committed transaction: a key is durable before any
        ciphertext made with it can be sealed. Erased customers are absent from the result."""
        cache = self._cache
        wanted: set[str] = set()
        for customer_id in customer_ids:
            key = cache.pop(customer_id, None)
            if key is None:
                if customer_id not in self._erased:
                    wanted.add(customer_id)
            else:
                cache[customer_id] = key  # most recently used last: ``trim`` drops the oldest
        if wanted:
            self._load(wanted)
            missing = wanted - self._cache.keys() - self._erased
            if missing and create:
                self._create(missing)
        return {c: self._cache[c] for c in customer_ids if c in self._cache}

    def trim(self, limit: int) -> None:
        """Keep at most ``limit`` data keys in memory, the least recently looked up going first
        (they are read again from the key store when needed)."""
        cache = self._cache
        while len(cache) > limit:
            del cache[next(iter(cache))]

    def cached(self, customer_id: str) -> DataKey:
        """The key of a customer ``keys_for`` returned (the hot path: one dict lookup)."""
        return self._cache[customer_id]

    def held(self, customer_id: str) -> DataKey | None:
        """The key of a customer ``keys_for`` looked up, or None when there is none."""
        return self._cache.get(customer_id)

    def is_erased(self, customer_id: str) -> bool:
        if customer_id not in self._cache and customer_id not in self._erased:
            self._load({customer_id})
        return customer_id in self._erased

    def _load(self, customer_ids: set[str]) -> None:
        ids = sorted(customer_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            try:
                erased = self._connection.execute(
                    f"SELECT customer_id FROM cxl_erasures WHERE customer_id IN ({marks})", chunk
                ).fetchall()
                rows = self._connection.execute(
                    "SELECT customer_id, kid, wrapped FROM cxl_data_keys "
                    f"WHERE customer_id IN ({marks})",
                    chunk,
                ).fetchall()
            except sqlite3.Error as exc:
                raise KeyStoreError(f"cannot read the key store {self.path}: {exc}") from exc
            self._erased.update(row[0] for row in erased)
            for customer_id, kid, wrapped in rows:
                if customer_id not in self._erased:
                    self._cache[customer_id] = self._unwrap(customer_id, kid, bytes(wrapped))

    def _unwrap(self, customer_id: str, kid: str, wrapped: bytes) -> DataKey:
        try:
            raw = self._wrapper.decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _wrap_aad(customer_id, kid)
            )
        except (InvalidTag, ValueError):
            raise KeyStoreError(
                f"the data key of customer {customer_id!r} in {self.path} does not unwrap with "
                "this key-encryption key: the key store was altered"
            ) from None
        return _data_key(customer_id, kid, raw)

    def _create(self, customer_ids: set[str]) -> None:
        now = datetime.now(UTC).isoformat()
        made: dict[str, tuple[str, bytes, bytes]] = {}
        for customer_id in sorted(customer_ids):
            kid = secrets.token_hex(8)
            raw = secrets.token_bytes(KEY_BYTES)
            nonce = secrets.token_bytes(_NONCE_BYTES)
            wrapped = nonce + self._wrapper.encrypt(nonce, raw, _wrap_aad(customer_id, kid))
            made[customer_id] = (kid, raw, wrapped)
        lost: set[str] = set()
        with self._write() as db:
            for customer_id, (kid, _, wrapped) in made.items():
                # A tombstone, or a key another writer made meanwhile, wins over this one.
                inserted = db.execute(
                    "INSERT INTO cxl_data_keys SELECT ?, ?, ?, ? WHERE NOT EXISTS "
                    "(SELECT 1 FROM cxl_erasures WHERE customer_id = ?) "
                    "ON CONFLICT (customer_id) DO NOTHING",
                    [customer_id, kid, wrapped, now, customer_id],
                ).rowcount
                if inserted != 1:
                    lost.add(customer_id)
        for customer_id, (kid, raw, _) in made.items():
            if customer_id not in lost:
                self._cache[customer_id] = _data_key(customer_id, kid, raw)
        if lost:
            self._load(lost)

    def key(self, kid: str) -> DataKey | None:
        """The data key with id ``kid``; None when it was destroyed by an erasure.

        A kid this key store never held is a ``KeyStoreError``: it is another ledger's key store
        (or the wrong ``CXL_KEY_STORE``), and calling such a field erased would be a lie."""
        if kid in self._by_kid:
            return self._by_kid[kid]
        try:
            row = self._connection.execute(
                "SELECT customer_id, kid, wrapped FROM cxl_data_keys WHERE kid = ?", [kid]
            ).fetchone()
            destroyed = (
                row is None
                and self._connection.execute(
                    "SELECT 1 FROM cxl_erasures WHERE kid = ?", [kid]
                ).fetchone()
            )
        except sqlite3.Error as exc:
            raise KeyStoreError(f"cannot read the key store {self.path}: {exc}") from exc
        if row is None and not destroyed:
            raise KeyStoreError(
                f"the key store {self.path} never held data key {kid}: it is not the key store "
                "this ledger was sealed with (CXL_KEY_STORE)"
            )
        key = None if row is None else self._unwrap(row[0], row[1], bytes(row[2]))
        self._remember_kid(kid, key)
        return key

    def _remember_kid(self, kid: str, key: DataKey | None) -> None:
        if len(self._by_kid) >= _KEYS_BY_KID:  # a reader of the whole ledger meets every key
            del self._by_kid[next(iter(self._by_kid))]
        self._by_kid[kid] = key

    def erase(self, customer_id: str) -> str | None:
        """Destroy ``customer_id``'s data key and leave its tombstone; the destroyed key's id
        (now or by an earlier erasure), or None when it never had one. Idempotent."""
        with self._write() as db:
            row = db.execute(
                "SELECT kid FROM cxl_data_keys WHERE customer_id = ?", [customer_id]
            ).fetchone()
            if row is None:
                row = db.execute(
                    "SELECT kid FROM cxl_erasures WHERE customer_id = ?", [customer_id]
                ).fetchone()
            kid = None if row is None or row[0] is None else str(row[0])
            db.execute("DELETE FROM cxl_data_keys WHERE customer_id = ?", [customer_id])
            db.execute(
                "INSERT INTO cxl_erasures VALUES (?, ?, ?) ON CONFLICT (customer_id) DO NOTHING",
                [customer_id, kid, datetime.now(UTC).isoformat()],
            )
        self._cache.pop(customer_id, None)
        self._erased.add(customer_id)
        if kid is not None:
            self._remember_kid(kid, None)
        return kid
