"""Every projection table and view to Parquet or CSV, one file each, for BI tools without DuckDB."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from ledger.store import LedgerStore
from projections.at_risk import DEFAULT_HORIZON
from projections.errors import ProjectionsError
from projections.live import replay
from projections.manifest import MANIFEST_FILE, copy_table, read_manifest
from projections.schema import connect
from projections.targets import refuse_protected, replaced_on_success, require_directory
from projections.views import TABLES, VIEWS


def export_all(
    con: duckdb.DuckDBPyConnection,
    directory: Path,
    fmt: str,
    protected: Sequence[Path] = (),
    manifest: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Write ``directory/<name>.<fmt>`` for every table and view; returns the rows of each.

    With a ``manifest`` (``projections.manifest``), also ``directory/manifest.json``: the
    manifest with the SHA-256 of every file written, last, so that a complete manifest means a
    complete export.

    ``directory`` is created when missing (its parent must exist). Each file is written under a
    temporary name and renamed into place when complete, and none may be a ``protected`` file.
    Rows are sorted (by every column), so the same figures always export to the same bytes.
    """
    targets = {name: directory / f"{name}.{fmt}" for name in (*TABLES, *VIEWS)}
    for target in targets.values():
        refuse_protected(target, protected)
    require_directory(directory.parent)
    try:
        directory.mkdir(exist_ok=True)
    except OSError as exc:
        raise ProjectionsError(
            f"cannot create directory {directory}: {exc.strerror or exc}"
        ) from exc
    written: dict[str, int] = {}
    for name, target in targets.items():
        with replaced_on_success(target) as temporary:
            try:
                copy_table(con, name, temporary, fmt)
            except duckdb.Error as exc:
                reason = str(exc).strip().splitlines()[0]
                raise ProjectionsError(f"cannot write {target}: {reason}") from exc
        row = con.execute(f"SELECT count(*) FROM {name}").fetchone()
        written[name] = int(row[0]) if row else 0
    if manifest is not None:
        files = {t.name: _file_sha256(t) for t in targets.values()}
        target = directory / MANIFEST_FILE
        refuse_protected(target, protected)
        with replaced_on_success(target) as temporary:
            temporary.write_text(json.dumps({**manifest, "files": files}, indent=2) + "\n")
    return written


def export_replay(
    store: LedgerStore,
    directory: Path,
    fmt: str,
    as_of: datetime,
    known_at: datetime | None,
    protected: Sequence[Path] = (),
    on_progress: Callable[[int, int], None] | None = None,
    within: timedelta = DEFAULT_HORIZON,
) -> dict[str, int]:
    """``export_all`` of a replay as of ``as_of`` / ``known_at``, built in a temporary file beside
    ``directory`` (removed afterwards): what the live projections cannot answer."""
    require_directory(directory.parent)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".cxl-export-") as building:
        path = Path(building) / "replay.duckdb"
        replay(
            store,
            as_of,
            path,
            known_at=known_at,
            protected=protected,
            on_progress=on_progress,
            within=within,
        )
        manifest = read_manifest(path)
        con = connect(path, read_only=True)
        try:
            return export_all(con, directory, fmt, protected, manifest)
        finally:
            con.close()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
