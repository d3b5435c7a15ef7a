"""Migrations of the ledger's own tables, run by ``cxl store migrate``.

The store records the version of its own tables (``schema_version`` in ``cxl_ledger``); a writer
refuses any other version (``LedgerStore``), so that no process writes into tables it does not
know. Each migration is idempotent — a rerun after a crash finishes the job — and the version is
recorded only once its migration is complete. Run it with every writer stopped (it takes no lock
across its read and write phases; writers of an older cx-ledger do not know the version). A
migration's memory does not grow with the ledger: migration 2 folds one stream at a time. The
event store's own tables (``stored_events``, ``tracking``) belong to eventsourcing, which
migrates them itself.

- **2** — ``cxl_stream_heads``: each customer's stream head, folded from their sealed events.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from ledger.errors import StoreError
from ledger.store import (
    CREATED_TOPIC,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SEALED_TOPIC,
    LedgerStore,
    schema_version_of,
)
from ledger.stream_head import StreamHead

Progress = Callable[[str], None]
_WRITE_CHUNK = 5000


def _fill_stream_heads(store: LedgerStore, progress: Progress) -> None:
    """Fold the streams one at a time, walking the events table in stream order, and store each
    head as its stream ends (an upsert: idempotent). Memory holds one page of rows and one chunk
    of heads, whatever the number of customers."""
    pending: list[StreamHead] = []
    written = read = 0
    head: StreamHead | None = None
    stream = ""

    def write() -> None:
        nonlocal written
        with store.recorder.sealing() as tx:
            tx.insert([], tracking=None, event_ids=[], mark=None, heads=pending)
        written += len(pending)
        pending.clear()
        progress(f"stream heads: {read:,} rows read, {written:,} heads written")

    for page in store.stream_rows():
        for row in page:
            if row.originator_id != stream:
                if head is not None:
                    pending.append(head)
                stream, head = row.originator_id, None
            state = orjson.loads(row.state)
            if row.topic == CREATED_TOPIC and row.originator_version == 1:
                head = StreamHead(state["customer_id"])
            elif row.topic == SEALED_TOPIC and head is not None:
                head.note(state["body"], state["seq"], state["hash"])
            else:
                raise StoreError(
                    f"ledger position {row.position}: stream {row.originator_id} version "
                    f"{row.originator_version} ({row.topic}) does not follow its creation row; "
                    "run `cxl verify`"
                )
        read += len(page)
        if len(pending) >= _WRITE_CHUNK:
            write()
    if head is not None:
        pending.append(head)
    if pending:
        write()


MIGRATIONS: dict[int, tuple[str, Callable[[LedgerStore, Progress], None]]] = {
    2: ("stream heads (cxl_stream_heads)", _fill_stream_heads),
}


def schema_version(store: LedgerStore) -> int:
    """The version the store's own tables are at (1: before versions were recorded)."""
    return schema_version_of(store.recorder.ledger_meta().get(SCHEMA_VERSION_KEY))


def migrate(store: LedgerStore, progress: Progress = lambda _: None) -> list[str]:
    """Bring the store's own tables to ``SCHEMA_VERSION``; the migrations applied, by name."""
    applied: list[str] = []
    for version in range(schema_version(store) + 1, SCHEMA_VERSION + 1):
        name, run = MIGRATIONS[version]
        run(store, progress)
        store.recorder.set_meta(SCHEMA_VERSION_KEY, str(version), replace=True)
        applied.append(f"{version}: {name}")
    return applied
