"""Who may write and read through the HTTP API: keys, stored hashed, revocable at once.

A key is ``cxl_<id>_<secret>``: ``id`` (public, 12 hex digits) finds its row, ``secret`` (32 random
bytes, URL-safe base64) proves possession. Only the SHA-256 of the secret is stored — a secret of
256 random bits needs no slow hash — and compared in constant time. A *write* key may publish only
events whose ``source`` is its own; a *read* key may read and never write. Every request looks the
key up again, so ``cxl keys revoke`` (another process, same file) takes effect on the next request.
An optional rate limit (requests per second, per key) is enforced in the serving process.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from ledger.errors import ConfigError, CxlError
from ledger.private_files import create_private

_KEY = re.compile(r"cxl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_SOURCE_CHARS = 128

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    can_read INTEGER NOT NULL,
    secret_sha256 TEXT NOT NULL,
    rate_per_s REAL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)
"""


class AccessKeyError(CxlError):
    """The API key file cannot be used, or a key given to ``cxl keys`` does not exist."""

    exit_code = 2


@dataclass(frozen=True)
class ApiKey:
    """A key's public facts (never its secret)."""

    id: str
    source: str
    can_read: bool
    rate_per_s: float | None
    created_at: str
    revoked_at: str | None

    @property
    def role(self) -> str:
        return "read" if self.can_read else "write"


class AccessKeys:
    """The keys file (SQLite, mode 0600). One short connection per call: safe from any thread,
    and a revocation by another process is seen by the next lookup."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def check(self) -> None:
        """``AccessKeyError`` unless the key file is absent (no key yet) or a readable key file:
        said when the server starts, not to each client."""
        if self.path.is_dir():
            raise AccessKeyError(f"CXL_ACCESS_KEYS {self.path} is a directory, not a key file")
        if not self.path.exists():
            return
        try:
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
            try:
                con.execute("SELECT id FROM api_keys LIMIT 1").fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            if "no such table" in str(exc) and self.path.stat().st_size == 0:
                return
            raise AccessKeyError(
                f"CXL_ACCESS_KEYS {self.path} is not an API key file ({exc})"
            ) from exc

    def _connect(self, *, create: bool = False) -> sqlite3.Connection:
        if self.path.is_dir():
            raise AccessKeyError(f"CXL_ACCESS_KEYS {self.path} is a directory, not a key file")
        if create and not self.path.exists():
            if not self.path.parent.is_dir():
                raise AccessKeyError(f"{self.path.parent}: no such directory for the API keys")
            create_private(self.path, b"", "the API key file", AccessKeyError)
        if not self.path.is_file():
            raise AccessKeyError(
                f"no API keys at {self.path}; create one with `cxl keys add --source NAME`"
            )
        try:
            con = sqlite3.connect(self.path, timeout=5)
            con.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise AccessKeyError(f"{self.path}: not a usable API key file ({exc})") from exc
        return con

    def add(self, source: str, *, can_read: bool, rate_per_s: float | None = None) -> str:
        """Create a key and return it: the only time its secret is ever shown."""
        if not source or len(source) > _SOURCE_CHARS or not source.isprintable():
            raise ConfigError(
                f"--source {source!r}: 1–{_SOURCE_CHARS} printable characters, as events' `source`"
            )
        if rate_per_s is not None and not (0.01 <= rate_per_s <= 1_000_000):
            raise ConfigError("--rate: requests per second, from 0.01 to 1,000,000")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        con = self._connect(create=True)
        try:
            with con:
                con.execute(
                    "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                    (key_id, source, int(can_read), _digest(secret), rate_per_s, _now()),
                )
        finally:
            con.close()
        return f"cxl_{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        if not self.path.exists():
            return []
        con = self._connect()
        try:
            rows = con.execute(
                "SELECT id, source, can_read, rate_per_s, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at, id"
            ).fetchall()
        finally:
            con.close()
        return [ApiKey(r[0], r[1], bool(r[2]), r[3], r[4], r[5]) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        key_id = key_id.removeprefix("cxl_").split("_", 1)[0]
        con = self._connect()
        try:
            with con:
                found = con.execute(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
                    (_now(), key_id),
                ).rowcount
        finally:
            con.close()
        if not found:
            raise AccessKeyError(f"no API key {key_id!r} (see `cxl keys list`)")
        return next(k for k in self.list() if k.id == key_id)

    def authenticate(self, presented: str) -> ApiKey | None:
        """The live key ``presented`` is, or None (malformed, unknown, wrong secret, revoked).

        Each thread keeps a read-only connection, reopened when the file was replaced; every call
        reads the row again, so a revocation counts from the next request."""
        match = _KEY.fullmatch(presented)
        if match is None:
            return None
        key_id, secret = match.groups()
        con = self._lookup_connection()
        if con is None:
            return None
        try:
            row = con.execute(
                "SELECT id, source, can_read, rate_per_s, created_at, revoked_at, secret_sha256 "
                "FROM api_keys WHERE id = ?",
                (key_id,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise AccessKeyError(f"{self.path}: cannot read the API keys ({exc})") from exc
        if row is None or row[5] is not None or not hmac.compare_digest(row[6], _digest(secret)):
            return None
        return ApiKey(row[0], row[1], bool(row[2]), row[3], row[4], row[5])

    def _lookup_connection(self) -> sqlite3.Connection | None:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        identity = (status.st_dev, status.st_ino)
        cached = getattr(self._local, "lookup", None)
        if cached is not None and cached[0] == identity:
            return cast(sqlite3.Connection, cached[1])
        if cached is not None:
            cached[1].close()
        con = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5, check_same_thread=True
        )
        self._local.lookup = (identity, con)
        return con


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second, bursts of up to one second's worth."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_needed(self, key: ApiKey) -> float:
        """0 when the request may go ahead (and is counted); else the seconds to wait."""
        if key.rate_per_s is None:
            return 0.0
        rate = key.rate_per_s
        burst = max(rate, 1.0)
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key.id, (burst, now))
            tokens = min(burst, tokens + (now - then) * rate)
            if tokens >= 1:
                self._buckets[key.id] = (tokens - 1, now)
                return 0.0
            self._buckets[key.id] = (tokens, now)
            return (1 - tokens) / rate


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
