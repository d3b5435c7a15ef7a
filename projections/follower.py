"""Follows the ledger's notification log into the DuckDB projections, incrementally and exactly once.

Each transaction appends the facts of a run of sealed events, re-folds the promises they touch, and
moves ``projection_position`` to the last position applied; a crash rolls all of it back, so nothing
is counted twice. A full rebuild runs the same code from position 0, optionally keeping only events
with ``occurred_at <= as_of`` — the auditors' replay.

The stored JSON of each sealed event is handed to DuckDB as is and taken apart there, in bulk:
decoding and re-packing every event in Python cost more than reading the log itself.

Personal fields (``ledger.personal``) are never taken into the projections: they hold figures, ids
and times, and stay the same when a customer is erased.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import duckdb
import pyarrow as pa

from ledger.store import LedgerStore
from projections.ledger_binding import LedgerMark, first_event_hash, record_mark, recorded_mark
from projections.promise_fold import fold_sql

# One parse per stored event into a typed struct (from_json), then plain column access: extracting
# fields one by one with ->> re-parsed the document for every field.
_STATE_SHAPE = {
    "seq": "BIGINT",
    "event_id": "VARCHAR",
    "hash": "VARCHAR",
    "recorded_at": "TIMESTAMPTZ",
    "body": {
        "customer_id": "VARCHAR",
        "type": "VARCHAR",
        "occurred_at": "TIMESTAMPTZ",
        "source": "VARCHAR",
        "data": {
            "promise_id": "VARCHAR",
            "made_by": "VARCHAR",
            "channel": "VARCHAR",
            "kind": "VARCHAR",
            "on_behalf_of": "VARCHAR",
            "due_at": "TIMESTAMPTZ",
            "weight": "DOUBLE",
            "fraction": "DOUBLE",
            "new_due_at": "TIMESTAMPTZ",
            "agreed_by_customer": "BOOLEAN",
            "complaint_id": "VARCHAR",
            "category": "VARCHAR",
            "severity": "INTEGER",
            "promise_ids": ["VARCHAR"],
            "customer_satisfied": "BOOLEAN",
            "direction": "VARCHAR",
            "automated": "BOOLEAN",
            "purpose": "VARCHAR",
            "duration_s": "DOUBLE",
        },
    },
}

_FACTS = {
    "ledger_events": (
        "TRUE",
        "position, s.body.customer_id, s.seq, s.event_id, s.body.type, s.body.occurred_at, s.recorded_at, "
        "s.body.source, s.hash",
    ),
    "promise_events": (
        "starts_with(s.body.type, 'promise.')",
        "position, s.body.customer_id, s.body.data.promise_id, s.body.type, s.body.occurred_at, "
        "s.body.data.made_by, s.body.data.channel, s.body.data.kind, s.body.data.due_at, s.body.data.weight, "
        "s.body.data.fraction, s.body.data.new_due_at, s.body.data.agreed_by_customer, s.recorded_at, "
        "s.body.data.on_behalf_of",
    ),
    "complaint_events": (
        "starts_with(s.body.type, 'complaint.')",
        "position, s.body.customer_id, s.body.data.complaint_id, s.body.type, s.body.occurred_at, "
        "s.body.data.channel, s.body.data.category, s.body.data.severity, s.body.data.promise_ids, "
        "s.body.data.customer_satisfied, s.recorded_at",
    ),
    "touchpoints": (
        "starts_with(s.body.type, 'touchpoint.')",
        "position, s.body.customer_id, s.body.occurred_at, s.body.data.channel, s.body.data.direction, "
        "s.body.data.automated, s.body.data.purpose, s.body.data.duration_s, s.recorded_at",
    ),
}


def _refold(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute the ``promises`` rows of every promise in ``staged``, from all its events."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT s.body.customer_id AS customer_id, "
        "s.body.data.promise_id AS promise_id FROM staged WHERE starts_with(s.body.type, 'promise.')"
    )
    con.execute(
        "DELETE FROM promises p USING touched t "
        "WHERE p.customer_id = t.customer_id AND p.promise_id = t.promise_id"
    )
    source = "SELECT e.* FROM promise_events e SEMI JOIN touched t USING (customer_id, promise_id)"
    con.execute(f"INSERT INTO promises {fold_sql(source)}")
    con.execute("DROP TABLE touched")


def apply_states(
    con: duckdb.DuckDBPyConnection,
    positions: list[int],
    states: list[bytes],
    last_position: int,
    as_of: datetime | None = None,
    *,
    known_at: datetime | None = None,
    first_hash: str | None = None,
) -> int:
    """Apply sealed events (their stored JSON) and record ``last_position``, in one transaction.

    With the position go the hash of the event there (the last of ``states``) and ``first_hash``,
    the ledger's identity (see ``ledger_binding``), so the file knows which ledger it follows.
    """
    position_hash = json.loads(states[-1])["hash"] if states else None
    con.execute("BEGIN TRANSACTION")
    try:
        con.register(
            "incoming",
            pa.table(
                {
                    "position": pa.array(positions, pa.int64()),
                    "state": pa.array(states, pa.binary()),
                }
            ),
        )
        limits = {"as_of": as_of, "known_at": known_at}
        wanted = {k: v for k, v in limits.items() if v is not None}
        cutoff = " AND ".join(
            f"s.{'body.occurred_at' if k == 'as_of' else 'recorded_at'} <= ${k}" for k in wanted
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE staged AS SELECT * FROM "
            f"(SELECT position, from_json(decode(state), '{json.dumps(_STATE_SHAPE)}') AS s FROM incoming)"
            f"{' WHERE ' + cutoff if cutoff else ''}",
            wanted or None,
        )
        con.unregister("incoming")
        for table, (where, columns) in _FACTS.items():
            con.execute(
                f"INSERT INTO {table} SELECT {columns} FROM staged WHERE {where} ORDER BY position"
            )
        row = con.execute("SELECT count(*) FROM staged").fetchone()
        applied = int(row[0]) if row else 0
        if applied:
            _refold(con)
        con.execute("DROP TABLE staged")
        record_mark(con, LedgerMark(last_position, position_hash, first_hash))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return applied


def _batches(
    store: LedgerStore, start: int, stop: int | None, batch_events: int
) -> Iterator[tuple[list[int], list[bytes]]]:
    positions: list[int] = []
    states: list[bytes] = []
    for page_positions, page_states in store.read_states(start, stop=stop, page=10_000):
        positions += page_positions
        states += page_states
        if len(positions) >= batch_events:
            yield positions, states
            positions, states = [], []
    if positions:
        yield positions, states


def catch_up(
    con: duckdb.DuckDBPyConnection,
    store: LedgerStore,
    *,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
    through: int | None = None,
    batch_events: int = 100_000,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Apply everything sealed after the recorded position; returns the number of events applied.

    With ``as_of``, events that occurred after it are passed over (the position still advances), so
    the result is the projection as an auditor would have seen the world at that instant; with
    ``known_at``, so are events sealed after it (what the ledger knew then). ``through`` stops at
    that ledger position (a rebuild of a file that was made up to it). The next
    batch is read from the store while DuckDB applies the current one (both release the GIL).
    """
    mark = recorded_mark(con)
    start = mark.position + 1
    target = store.max_position() if through is None else through
    first_hash = mark.first_hash or first_event_hash(store)
    applied = 0
    batches = _batches(store, start, through, batch_events)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-reader") as reader:
        upcoming = reader.submit(next, batches, None)
        while (batch := upcoming.result()) is not None:
            upcoming = reader.submit(next, batches, None)
            positions, states = batch
            applied += apply_states(
                con,
                positions,
                states,
                positions[-1],
                as_of,
                known_at=known_at,
                first_hash=first_hash,
            )
            if on_progress is not None:
                on_progress(positions[-1], target)
    return applied
