"""Where outputs may go: never onto the ledger or the live projections, and never half-written.

Every file a command writes (a replay, an export, a report) is built under a temporary name in the
target's directory and renamed into place only when complete, so a failure leaves the previous file
as it was, and a reader never sees a half-written one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from projections.errors import ProjectionsError, ProtectedTargetError

# Files a SQLite or DuckDB database keeps beside its main file while it is open.
_COMPANIONS = ("", "-wal", "-shm", "-journal", ".wal")


def database_files(main: Path) -> list[Path]:
    """A database file and the companions its engine may keep beside it."""
    return [Path(f"{main}{suffix}") for suffix in _COMPANIONS]


def store_files(store_url: str) -> list[Path]:
    """The ledger store's files when it is a SQLite file (a PostgreSQL store has none here)."""
    return [] if "://" in store_url else database_files(Path(store_url))


def protected_files(
    store_url: str, projections_path: Path, keys: Iterable[Path] = ()
) -> list[Path]:
    """The ledger store, the live projections and the key files (``keys``: the key store and the
    key-encryption key): no command but theirs may write them."""
    return [
        *store_files(store_url),
        *database_files(projections_path),
        *(companion for key in keys for companion in database_files(key)),
    ]


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def refuse_protected(target: Path, protected: Iterable[Path], flag: str = "--to") -> None:
    """Raise when ``target`` is, or resolves (symlinks, ``..``, hard links) to, a protected file."""
    for path in protected:
        if _same_file(target, path):
            raise ProtectedTargetError(
                f"{flag} {target} would overwrite {path.resolve()}, which belongs to the ledger "
                "(its store, live projections or keys); choose another path"
            )


def require_regular_or_absent(target: Path, flag: str = "--to") -> None:
    """Refuse an output path that exists as anything but a regular file."""
    if (target.exists() or target.is_symlink()) and not target.is_file():
        raise ProtectedTargetError(
            f"{flag} {target} exists and is not a regular file; choose another path"
        )


def require_directory(directory: Path, flag: str = "--to") -> None:
    """Refuse an output whose directory is missing: a typo should not grow a directory tree."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise ProjectionsError(f"{flag}: directory {directory} {what}")


@contextmanager
def replaced_on_success(target: Path, flag: str = "--to") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``target``; move it onto ``target`` only on success.

    A ``target`` that exists and is not a regular file (a device, a FIFO, a directory) is
    refused: renaming onto it would replace it."""
    require_directory(target.parent, flag)
    require_regular_or_absent(target, flag)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.partial"
    try:
        with temporary.open("xb"):  # can we write there at all? Say so naming the target, not this.
            pass
        temporary.unlink()
    except OSError as exc:
        raise ProjectionsError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        yield temporary
        os.replace(temporary, target)
    except OSError as exc:
        raise ProjectionsError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        for leftover in (temporary, Path(f"{temporary}.wal")):
            leftover.unlink(missing_ok=True)
