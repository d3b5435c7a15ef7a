"""The manifest every replay file and export carries, and its check against a rebuild.

A manifest says what a set of projections was built from and what it holds: the ledger (its
origin, the last ledger position applied, the number of sealed events up to there and the Merkle
root over them — what a checkpoint of that size signs), the instant (``as_of``) and the knowledge
(``known_at``) it answers for, the cx-ledger version and projection schema version, and per table
its row count and a content hash. ``verify_projections`` rebuilds the same projections from the
ledger into a temporary file and names the first table whose content differs.

The content hash of a table is SHA-256 over the sorted MD5s of its rows' text: independent of row
order, and recomputed by DuckDB in one pass. The views are not hashed: they are functions of the
tables and the instant, both in the manifest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import duckdb

from ledger.canonical import format_instant
from ledger.errors import ConfigError
from ledger.store import LedgerStore
from projections.errors import ProjectionsDifferError, ProjectionsError
from projections.follower import catch_up
from projections.ledger_binding import recorded_mark
from projections.schema import connect
from projections.views import TABLES

SCHEMA_VERSION = 2
"""Projection schema version: 2 added ``recorded_at`` to every fact table."""
MANIFEST_TABLE = "projection_manifest"
MANIFEST_FILE = "manifest.json"


def cx_ledger_version() -> str:
    try:
        return version("cx-ledger")
    except PackageNotFoundError:
        return "unknown"


def table_digests(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """Row count and content hash of every projection table: the SHA-256 of its rows' MD5s in
    sorted order, concatenated. Read in chunks, so that the memory it takes does not grow with
    the table."""
    digests: dict[str, dict[str, Any]] = {}
    for name in TABLES:
        digest = hashlib.sha256()
        rows = 0
        cursor = con.execute(f"SELECT md5(t::VARCHAR) AS h FROM {name} t ORDER BY h")
        while chunk := cursor.fetchmany(_DIGEST_CHUNK):
            digest.update("".join(h for (h,) in chunk).encode())
            rows += len(chunk)
        digests[name] = {"rows": rows, "sha256": digest.hexdigest()}
    return digests


_DIGEST_CHUNK = 50_000


def build_manifest(
    con: duckdb.DuckDBPyConnection,
    store: LedgerStore,
    *,
    as_of: datetime | None,
    known_at: datetime | None,
) -> dict[str, Any]:
    """The manifest of the projections in ``con``, built from ``store``."""
    position = recorded_mark(con).position
    size, root = store.checkpoint_through(position)
    return {
        "cx_ledger": cx_ledger_version(),
        "projection_schema": SCHEMA_VERSION,
        "ledger": {
            "origin": store.origin,
            "through_position": position,
            "events": size,
            "root": base64.b64encode(root).decode("ascii"),
        },
        "as_of": None if as_of is None else format_instant(as_of),
        "known_at": None if known_at is None else format_instant(known_at),
        "tables": table_digests(con),
    }


def store_manifest(con: duckdb.DuckDBPyConnection, manifest: dict[str, Any]) -> None:
    """Keep ``manifest`` inside a projections file (a replay)."""
    con.execute(f"CREATE OR REPLACE TABLE {MANIFEST_TABLE} (manifest JSON NOT NULL)")
    con.execute(f"INSERT INTO {MANIFEST_TABLE} VALUES (?)", [json.dumps(manifest)])


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of an export directory (its ``manifest.json``) or of a replay file."""
    if not path.is_file() and not path.is_dir():
        raise ConfigError(f"--projections {path}: not a regular file or a directory")
    if path.is_file():
        with path.open("rb") as handle:
            if handle.read(16)[8:12] != b"DUCK":
                raise ConfigError(
                    f"--projections {path}: neither a replay file (DuckDB) nor an export directory"
                )
    try:
        if path.is_dir():
            manifest: dict[str, Any] = json.loads((path / MANIFEST_FILE).read_text())
            return manifest
        con = connect(path, read_only=True)
        try:
            row = con.execute(f"SELECT manifest FROM {MANIFEST_TABLE}").fetchone()
        finally:
            con.close()
    except (OSError, ValueError, duckdb.Error) as exc:
        raise ProjectionsError(f"{path}: no readable projections manifest ({exc})") from exc
    if row is None:
        raise ProjectionsError(f"{path}: its projections manifest is empty")
    manifest = json.loads(row[0])
    return manifest


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def verify_projections(
    path: Path,
    store: LedgerStore,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Rebuild the projections ``path`` describes (an export directory or a replay file) from
    ``store`` and compare; the manifest when every table matches.

    ``ProjectionsDifferError`` names the first table whose rows differ, or the exported file whose
    bytes differ from the hash its manifest gives; ``ProjectionsError`` when the manifest is
    missing, of another ledger, or of another cx-ledger or schema version."""
    manifest = read_manifest(path)
    ledger = manifest.get("ledger") or {}
    if ledger.get("origin") != store.origin:
        raise ProjectionsError(
            f"{path} was built from ledger {ledger.get('origin')!r}, not {store.origin!r}"
        )
    if manifest.get("projection_schema") != SCHEMA_VERSION:
        raise ProjectionsError(
            f"{path} has projection schema {manifest.get('projection_schema')}, this cx-ledger "
            f"builds {SCHEMA_VERSION}: rebuild it to compare"
        )
    position = int(ledger.get("through_position", 0))
    size, root = store.checkpoint_through(position)
    if size != ledger.get("events") or base64.b64encode(root).decode() != ledger.get("root"):
        raise ProjectionsDifferError(
            f"{path}: the ledger up to position {position:,} is not the one it was built from "
            f"(its root was {ledger.get('root')}, it is now {base64.b64encode(root).decode()})"
        )
    fmt = _export_format(path) if path.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="cxl-verify-") as building:
        con = connect(Path(building) / "rebuilt.duckdb")
        try:
            catch_up(
                con,
                store,
                as_of=_instant(manifest.get("as_of")),
                known_at=_instant(manifest.get("known_at")),
                through=position,
                on_progress=on_progress,
            )
            rebuilt = table_digests(con)
            files = {} if fmt is None else table_file_digests(con, Path(building), fmt)
        finally:
            con.close()
    recorded = manifest.get("tables") or {}
    held = recorded if fmt is not None else _file_tables(path)
    for name in TABLES:
        for claimed, what in ((recorded.get(name), "its manifest"), (held.get(name), "it")):
            if claimed != rebuilt[name]:
                raise ProjectionsDifferError(
                    f"{path}: table {name} in {what} differs from a rebuild from the ledger "
                    f"({(claimed or {}).get('rows')} rows, {rebuilt[name]['rows']} rebuilt)"
                )
    for name, digest in files.items():
        try:
            actual = hashlib.sha256((path / name).read_bytes()).hexdigest()
        except OSError as exc:
            raise ProjectionsDifferError(
                f"{path}: {name} is missing or unreadable ({exc.strerror})"
            ) from None
        if actual != digest:
            raise ProjectionsDifferError(f"{path}: {name} differs from a rebuild from the ledger")
    return manifest


def copy_table(con: duckdb.DuckDBPyConnection, name: str, target: Path, fmt: str) -> None:
    """Write table or view ``name`` to ``target`` as Parquet or CSV, rows sorted: the same
    rows always make the same bytes."""
    options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
    quoted = str(target).replace("'", "''")
    con.execute(f"COPY (SELECT * FROM {name} ORDER BY ALL) TO '{quoted}' ({options})")


def table_file_digests(con: duckdb.DuckDBPyConnection, scratch: Path, fmt: str) -> dict[str, str]:
    """SHA-256 of the file each projection table exports to (written under ``scratch``)."""
    digests: dict[str, str] = {}
    for name in TABLES:
        target = scratch / f"{name}.{fmt}"
        copy_table(con, name, target, fmt)
        digests[target.name] = hashlib.sha256(target.read_bytes()).hexdigest()
        target.unlink()
    return digests


def _export_format(directory: Path) -> str:
    for fmt in ("parquet", "csv"):
        if (directory / f"{TABLES[0]}.{fmt}").is_file():
            return fmt
    raise ProjectionsError(f"{directory}: no {TABLES[0]}.parquet or .csv to verify")


def _file_tables(path: Path) -> dict[str, dict[str, Any]]:
    con = connect(path, read_only=True)
    try:
        return table_digests(con)
    finally:
        con.close()
