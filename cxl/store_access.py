"""Where the ledger's files live: ``CXL_HOME`` and the store, checked before a command uses them.

A misconfigured home or a file that is not a ledger store is reported in one line naming the
setting and the path, rather than as whatever the database library trips over first.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ledger.errors import ConfigError, StoreError
from ledger.settings import Settings
from ledger.store import LedgerStore

SQLITE_HEADER = b"SQLite format 3\x00"


def ensure_home(settings: Settings) -> Path:
    """Create ``CXL_HOME`` when missing; refuse one that is not a writable directory."""
    home = settings.home
    if home.exists() and not home.is_dir():
        raise ConfigError(f"CXL_HOME {home} is a file, not a directory")
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as exc:
        raise ConfigError(f"CXL_HOME {home} is not writable: {exc.strerror or exc}") from exc
    return home


def check_store_file(store_url: str) -> None:
    """Refuse a SQLite store path that holds something other than a SQLite database."""
    if "://" in store_url:
        return
    path = Path(store_url)
    if path.is_dir():
        raise StoreError(f"the ledger store {path} is a directory, not a SQLite file")
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"cannot read the ledger store {path}: {exc.strerror or exc}") from exc
    if header != SQLITE_HEADER:
        raise StoreError(f"the ledger store {path} is not a SQLite database (check CXL_STORE)")


def open_store(settings: Settings, *, read_only: bool = False) -> LedgerStore:
    """The configured ledger store, after checking its home and file.

    ``read_only`` for commands that only read the ledger: the store must already exist, and
    nothing is created in it (``LedgerStore``) nor in ``CXL_HOME``.
    """
    if read_only:
        if settings.home.exists() and not settings.home.is_dir():
            raise ConfigError(f"CXL_HOME {settings.home} is a file, not a directory")
    else:
        ensure_home(settings)
    check_store_file(settings.store_url)
    return LedgerStore.for_settings(settings, read_only=read_only)
