"""Which ledger a projections file follows, and whether the store in hand is still that ledger.

Alongside the last applied position, ``projection_position`` records the hash of the ledger's first
sealed event (its identity) and the hash of the event at that position, written in the transaction
that applies the rows. A store that was replaced, truncated or rebuilt — or another store pointed at
the same ``CXL_HOME`` — no longer has that event at that position, or has another first event: the
projections then describe some other history, and must be rebuilt rather than caught up (their
position would otherwise skip the new store's events, silently).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from ledger.store import LedgerStore, SealedEvent


@dataclass(frozen=True)
class LedgerMark:
    """How far a projections file went, and in which ledger."""

    position: int
    position_hash: str | None
    first_hash: str | None


def recorded_mark(con: duckdb.DuckDBPyConnection, name: str = "ledger") -> LedgerMark:
    """The mark of the last applied transaction; position 0 and no hashes when nothing was applied."""
    row = con.execute(
        "SELECT position, position_hash, first_hash FROM projection_position WHERE name = ?", [name]
    ).fetchone()
    if row is None:
        return LedgerMark(0, None, None)
    return LedgerMark(int(row[0]), row[1], row[2])


def record_mark(con: duckdb.DuckDBPyConnection, mark: LedgerMark, name: str = "ledger") -> None:
    """Upsert the mark; call it inside the transaction that applied the rows it describes."""
    con.execute(
        "INSERT INTO projection_position (name, position, position_hash, first_hash) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
        "position_hash = excluded.position_hash, first_hash = excluded.first_hash",
        [name, mark.position, mark.position_hash, mark.first_hash],
    )


def _event_at(store: LedgerStore, position: int) -> SealedEvent | None:
    page = next(store.read(position, stop=position, page=1), [])
    return page[0] if page and page[0].position == position else None


def first_event_hash(store: LedgerStore) -> str | None:
    """The ledger's identity: the hash of its first sealed event (``None`` while it is empty)."""
    page = next(store.read(1, page=1), [])
    return page[0].hash if page else None


def ledger_mismatch(con: duckdb.DuckDBPyConnection, store: LedgerStore) -> str | None:
    """Why the projections no longer follow ``store`` (one line), or ``None`` when they still do."""
    mark = recorded_mark(con)
    if mark.position == 0:
        return None
    if mark.first_hash is None or mark.position_hash is None:
        return "the projections do not record which ledger they follow (built by an older version)"
    first = first_event_hash(store)
    if first is None:
        return (
            f"the ledger is empty, but the projections hold events up to position {mark.position}"
        )
    if first != mark.first_hash:
        return "the ledger's first event is not the one the projections were built from (another or a rebuilt ledger)"
    event = _event_at(store, mark.position)
    if event is None:
        return f"the ledger has no event at position {mark.position}, the last one projected (truncated or replaced)"
    if event.hash != mark.position_hash:
        return f"the ledger's event at position {mark.position} is not the one projected (replaced or rewritten)"
    return None
