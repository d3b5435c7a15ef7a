"""Inbound records from any source (Kafka or a JSON-lines file) and their validation as a batch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ledger.contract import ValidEvent, parse_event
from ledger.errors import InvalidEventError


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """Raw bytes plus where they came from; ``origin`` is how errors name the record."""

    value: bytes
    origin: str
    key: bytes | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass
class ValidatedBatch:
    valid: list[ValidEvent] = field(default_factory=list)
    invalid: list[tuple[InboundRecord, InvalidEventError]] = field(default_factory=list)
    records_by_event: dict[int, InboundRecord] = field(default_factory=dict)

    def record_of(self, event: ValidEvent) -> InboundRecord:
        return self.records_by_event[id(event)]


def validate_records(records: Iterable[InboundRecord]) -> ValidatedBatch:
    """Split records into contract-valid events and rejects; one bad record never stops the rest."""
    batch = ValidatedBatch()
    for record in records:
        try:
            event = parse_event(record.value, record.origin)
        except InvalidEventError as exc:
            batch.invalid.append((record, exc))
            continue
        batch.valid.append(event)
        batch.records_by_event[id(event)] = record
    return batch


def read_jsonl(path: str) -> Iterable[InboundRecord]:
    """Non-blank lines of a JSON-lines file, each named ``path:line``."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if stripped:
                yield InboundRecord(value=stripped, origin=f"{path}:{number}")
