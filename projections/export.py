"""Every projection table and view to Parquet or CSV, one file each, for BI tools without DuckDB."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from projections.errors import ProjectionsError
from projections.targets import refuse_protected, replaced_on_success, require_directory
from projections.views import TABLES, VIEWS


def export_all(
    con: duckdb.DuckDBPyConnection,
    directory: Path,
    fmt: str,
    protected: Sequence[Path] = (),
) -> dict[str, int]:
    """Write ``directory/<name>.<fmt>`` for every table and view; returns the rows of each.

    ``directory`` is created when missing (its parent must exist). Each file is written under a
    temporary name and renamed into place when complete, and none may be a ``protected`` file.
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
    options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
    written: dict[str, int] = {}
    for name, target in targets.items():
        with replaced_on_success(target) as temporary:
            quoted = str(temporary).replace("'", "''")
            try:
                con.execute(f"COPY (SELECT * FROM {name}) TO '{quoted}' ({options})")
            except duckdb.Error as exc:
                reason = str(exc).strip().splitlines()[0]
                raise ProjectionsError(f"cannot write {target}: {reason}") from exc
        row = con.execute(f"SELECT count(*) FROM {name}").fetchone()
        written[name] = int(row[0]) if row else 0
    return written
