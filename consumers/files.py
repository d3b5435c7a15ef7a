"""``cxl ingest``: JSON-lines files straight into the store, no broker, same validation and sealing.

Files carry no source position: re-ingesting a file is made harmless by ``event_id`` dedupe
(duplicates are counted and reported, never sealed again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice

from consumers.records import InboundRecord, validate_records
from ledger.errors import InvalidEventError
from ledger.store import LedgerStore, SealReport


@dataclass
class FileIngestReport:
    lines: int = 0
    seal: SealReport = field(default_factory=SealReport)
    invalid: list[InvalidEventError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.invalid) + len(self.seal.rejected)


def ingest_records(
    records: Iterable[InboundRecord],
    store: LedgerStore,
    *,
    batch_size: int = 5000,
    on_batch: Callable[[FileIngestReport], None] | None = None,
) -> FileIngestReport:
    report = FileIngestReport()
    iterator = iter(records)
    while chunk := list(islice(iterator, batch_size)):
        batch = validate_records(chunk)
        report.lines += len(chunk)
        report.invalid.extend(error for _, error in batch.invalid)
        report.seal.add(store.seal(batch.valid))
        if on_batch is not None:
            on_batch(report)
    return report
