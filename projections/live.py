"""The live projections file under ``CXL_HOME``, caught up with its ledger before every question;
and the auditors' replay into a file of their own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from ledger.errors import ConfigError
from ledger.store import LedgerStore
from projections.at_risk import DEFAULT_HORIZON
from projections.follower import catch_up
from projections.ledger_binding import ledger_mismatch
from projections.manifest import build_manifest, store_manifest
from projections.schema import clear, connect, outdated
from projections.targets import refuse_protected, replaced_on_success, store_files
from projections.views import create_views


def open_caught_up(
    path: Path,
    store: LedgerStore,
    on_progress: Callable[[int, int], None] | None = None,
    on_rebuild: Callable[[str], None] | None = None,
    within: timedelta = DEFAULT_HORIZON,
) -> duckdb.DuckDBPyConnection:
    """A read-write connection to the live projections, with everything sealed in ``store`` applied.

    When the projections were built from another ledger (replaced, truncated, rebuilt: see
    ``ledger_binding``), they are emptied and rebuilt from ``store`` instead of caught up, and
    ``on_rebuild`` is told why in one line. Stale figures are never served, no event is skipped.
    ``within`` is the horizon of the ``promises_at_risk`` view.
    """
    reason = outdated(path)
    if reason is not None:
        if on_rebuild is not None:
            on_rebuild(reason)
        for stale in (path, path.with_name(path.name + ".wal")):
            stale.unlink(missing_ok=True)
    con = connect(path)
    try:
        create_views(con, within=within)
        reason = ledger_mismatch(con, store)
        if reason is not None:
            if on_rebuild is not None:
                on_rebuild(reason)
            clear(con)
        catch_up(con, store, on_progress=on_progress)
    except BaseException:
        con.close()
        raise
    return con


def replay(
    store: LedgerStore,
    as_of: datetime,
    to: Path,
    *,
    known_at: datetime | None = None,
    overwrite: bool = False,
    protected: Sequence[Path] = (),
    on_progress: Callable[[int, int], None] | None = None,
    within: timedelta = DEFAULT_HORIZON,
) -> int:
    """Build every projection into ``to`` from the events that occurred by ``as_of`` (and were
    sealed by ``known_at``, when given: what the ledger knew then).

    ``to`` may not be the ledger store or any ``protected`` file (the live projections). The file
    is built under a temporary name beside ``to`` and renamed onto it only when complete: a failed
    replay leaves whatever ``to`` held before untouched.
    """
    refuse_protected(to, [*protected, *store_files(store.url)])
    if to.exists() and not overwrite:
        raise ConfigError(f"{to} exists; choose another file or pass --force to replace it")
    with replaced_on_success(to) as building:
        con = connect(building)
        try:
            applied = catch_up(con, store, as_of=as_of, known_at=known_at, on_progress=on_progress)
            create_views(con, as_of, within)
            con.execute(
                "CREATE TABLE replay_info AS SELECT ?::TIMESTAMPTZ AS as_of, "
                "?::TIMESTAMPTZ AS known_at, now() AS built_at",
                [as_of, known_at],
            )
            store_manifest(con, build_manifest(con, store, as_of=as_of, known_at=known_at))
        finally:
            con.close()
    return applied
