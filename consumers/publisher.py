"""``cxl publish``: JSON lines → ``cx.events``, keyed by customer, validated client-side.

The key is the ``customer_id``, partitioned with kafka-python's default (murmur2, as Java's), so
one customer's events stay on one partition and in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from consumers.records import InboundRecord
from ledger.contract import parse_event
from ledger.errors import BrokerUnavailableError, InvalidEventError


@dataclass
class PublishReport:
    sent: int = 0
    rejected: list[InvalidEventError] = field(default_factory=list)


def _key_of_unvalidated(value: bytes) -> bytes | None:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    customer = obj.get("customer_id") if isinstance(obj, dict) else None
    return customer.encode() if isinstance(customer, str) else None


def publish_records(
    records: Iterable[InboundRecord],
    producer: KafkaProducer,
    topic: str,
    *,
    validate: bool = True,
    timeout_s: float = 10.0,
    on_progress: Callable[[int], None] | None = None,
) -> PublishReport:
    """Send every valid record (every record with ``validate=False``); report the rejected ones."""
    report = PublishReport()
    try:
        for record in records:
            if validate:
                try:
                    event = parse_event(record.value, record.origin)
                except InvalidEventError as exc:
                    report.rejected.append(exc)
                    continue
                key: bytes | None = event.customer_id.encode()
            else:
                key = _key_of_unvalidated(record.value)
            producer.send(topic, key=key, value=record.value)
            report.sent += 1
            if on_progress is not None and report.sent % 10_000 == 0:
                on_progress(report.sent)
        producer.flush(timeout=timeout_s * 3)
    except KafkaError as exc:
        raise BrokerUnavailableError(
            f"publishing to {topic} failed after {report.sent} records: {exc}"
        ) from exc
    return report
