"""Small private files that hold secrets: the key-encryption key and the checkpoint signing key.

Reading one opens it without blocking and reads at most ``limit`` bytes of a regular file (a FIFO
or a device named by mistake would hang or exhaust memory), and refuses one that group or others
may read or write: a secret others can read protects nothing. Creating one writes it under a
temporary name (mode 0600) and links it into place, so it is complete or absent, never
half-written, and an existing file is never replaced.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from ledger.errors import CxlError


def read_private(path: Path, limit: int, what: str, error: type[CxlError]) -> bytes | None:
    """The bytes of ``path`` (None when it does not exist); ``error`` naming ``what`` when it is
    not a private regular file of at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode) or status.st_mode & 0o077:
        os.close(fd)
        if not stat.S_ISREG(status.st_mode):
            raise error(f"{what} {path} is not a regular file")
        raise error(
            f"{what} {path} is readable or writable by others (mode "
            f"{stat.S_IMODE(status.st_mode):04o}); run `chmod 600 {path}`"
        )
    with os.fdopen(fd, "rb") as handle:
        content = handle.read(limit + 1)
    if len(content) > limit:
        raise error(f"{what} {path} is larger than {limit:,} bytes: it is not one")
    return content


def create_private(path: Path, content: bytes, what: str, error: type[CxlError]) -> bool:
    """Write ``content`` to a new ``path`` (mode 0600; a missing directory is made 0700); False
    when ``path`` already exists (another process made it first), which is left as it is."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return False
    except OSError as exc:
        raise error(f"cannot create {what} {path}: {exc.strerror or exc}") from exc
    finally:
        temporary.unlink(missing_ok=True)
    return True
