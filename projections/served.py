"""Projections while ``cxl serve`` runs: one writer, any number of readers.

DuckDB lets one process write a file. While the server runs it is that process: it keeps
``projections.duckdb`` caught up continuously and, when a reader asks (or every 30 s), publishes a complete copy,
``projections.served.duckdb``, by building it under a temporary name and renaming it into place —
a reader opening it sees one consistent state, never a half-written one. Other terminals' read
commands (``cxl gap``, ``explain``, ``sql``, ``report``, ``export``) find the server by the lock it
holds on ``serve.lock`` in ``CXL_HOME``, ask it for a copy covering everything sealed so far
(SIGUSR1: a reader writes nothing), and read that copy instead of the live file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb

from projections.errors import ProjectionsError
from projections.schema import applied_position, connect

LOCK_NAME = "serve.lock"
SNAPSHOT_NAME = "projections.served.duckdb"


@dataclass(frozen=True)
class RunningServer:
    """What a running ``cxl serve`` announces in its lock file."""

    pid: int
    url: str
    snapshot: Path


class ServingLock:
    """Held by ``cxl serve`` for its whole life (``flock``: released by the kernel even when the
    process is killed, so a crash never leaves a stale claim)."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_NAME
        self._handle: IO[str] | None = None

    def acquire(self, url: str) -> None:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            found = running_server(self.path.parent)
            where = f" at {found.url} (pid {found.pid})" if found else ""
            raise ProjectionsError(
                f"another cxl serve runs on {self.path.parent}{where}; one server per CXL_HOME"
            ) from None
        self._handle = handle
        self.announce(url)

    def announce(self, url: str) -> None:
        """Say where the server listens, once it does."""
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(
                json.dumps(
                    {"pid": os.getpid(), "url": url, "snapshot": SNAPSHOT_NAME},
                    separators=(",", ":"),
                )
            )
            self._handle.flush()

    def release(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def running_server(home: Path) -> RunningServer | None:
    """The server running on ``home``, or None when no process holds its lock."""
    path = home / LOCK_NAME
    try:
        handle = path.open("r")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None
        try:
            facts: dict[str, Any] = json.loads(handle.read() or "{}")
            return RunningServer(int(facts["pid"]), str(facts["url"]), home / SNAPSHOT_NAME)
        except (ValueError, KeyError, TypeError):
            return RunningServer(0, "?", home / SNAPSHOT_NAME)


def publish_snapshot(con: duckdb.DuckDBPyConnection, target: Path) -> None:
    """Copy every table and view of ``con``'s database into ``target``, atomically."""
    building = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    alias = f"snapshot_{uuid.uuid4().hex[:8]}"
    source = con.execute("SELECT current_database()").fetchone()
    assert source is not None
    try:
        quoted = str(building).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS {alias}")
        try:
            con.execute(f'COPY FROM DATABASE "{source[0]}" TO {alias}')
        finally:
            con.execute(f"DETACH {alias}")
        os.replace(building, target)
    except (duckdb.Error, OSError) as exc:
        raise ProjectionsError(f"cannot publish the served projections to {target}: {exc}") from exc
    finally:
        for leftover in (building, building.with_name(building.name + ".wal")):
            leftover.unlink(missing_ok=True)


def open_served(
    server: RunningServer, position: int, wait_s: float = 15.0
) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the server's published projections once they cover ledger
    ``position`` (what was sealed when the reader asked): current figures, never older ones.
    ``ProjectionsError`` when the server has not caught up within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    seen = -1
    asked_at = 0.0
    while True:
        if time.monotonic() - asked_at >= 1.0:
            _ask_for_copy(server)
            asked_at = time.monotonic()
        if server.snapshot.exists():
            con = connect(server.snapshot, read_only=True)
            seen = applied_position(con)
            if seen >= position:
                return con
            con.close()
        if time.monotonic() >= deadline:
            raise ProjectionsError(
                f"the running cxl serve (pid {server.pid}) has projected through ledger position "
                f"{max(seen, 0):,} of {position:,} after {wait_s:.0f} s; check its /readyz"
            )
        time.sleep(0.1)


def _ask_for_copy(server: RunningServer) -> None:
    """SIGUSR1 asks the server for a fresh copy (nothing is written to ask); without the right
    to signal it, the reader waits for the periodic one."""
    if server.pid > 0:
        with contextlib.suppress(OSError):
            os.kill(server.pid, signal.SIGUSR1)
