"""The dead-letter topic: every rejected record, byte for byte, with its reason and origin.

Headers: ``cxl-reason`` (field: reason; …), ``cxl-origin-topic``, ``cxl-origin-partition``,
``cxl-origin-offset``. The key is the original key. Delivery is at-least-once: a crash between the
dead-letter send and the ledger commit re-sends it, so readers may drop repeats by origin.

Every dead letter is confirmed: ``flush`` waits for each one's acknowledgement and raises
``DeadLetterError`` if any could not be delivered, so ingest stops *before* committing the batch's
position and the record is read again on restart — a reject is never dropped.

A record too large to be dead-lettered whole (over the producer's ``max_request_size``, or refused
by the broker as too large) is dead-lettered as a truncated copy: its first ``TRUNCATED_BYTES``
(64 KiB) with headers ``cxl-truncated: true``, ``cxl-original-size`` (bytes) and
``cxl-original-sha256`` (hex) of the full value, besides the usual reason and origin. So one
oversized record never stalls a partition, and the original can still be identified and fetched
from the source topic.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from consumers.kafka_clients import describe, make_consumer
from consumers.records import InboundRecord
from ledger.errors import BrokerUnavailableError, CxlError

TRUNCATED_BYTES = 64 * 1024
# Room for the record batch, record framing, key and headers under max_request_size.
_OVERHEAD = 4 * 1024

_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


class DeadLetterError(BrokerUnavailableError):
    """A rejected record could not be written to the dead-letter topic; nothing was committed."""

    def __init__(self, topic: str, failures: list[tuple[str, str]]) -> None:
        self.topic = topic
        self.failures = failures
        origin, reason = failures[0]
        more = f" (and {len(failures) - 1:,} more)" if len(failures) > 1 else ""
        super().__init__(
            f"could not dead-letter {origin} to {topic}: {reason}{more}. Ingest stopped without "
            "committing the batch's position, so nothing is lost: it is read again on restart. "
            "Check that the broker is up and accepts writes to the dead-letter topic."
        )


@dataclass
class _Pending:
    record: InboundRecord
    headers: list[tuple[str, bytes]]
    future: Any | None
    truncated: bool
    error: BaseException | None = None


class DeadLetterQueue:
    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self.sent = 0
        self.truncated = 0
        self._pending: list[_Pending] = []

    @property
    def producer(self) -> KafkaProducer:
        return self._producer

    def replace_producer(self, producer: KafkaProducer) -> KafkaProducer:
        """Use ``producer`` from now on; returns the old one for the caller to close.

        After a broker restart an idempotent producer never recovers (DESIGN.md), so ingest gives
        its dead-letter queue a new one when it starts a new epoch.
        """
        old, self._producer = self._producer, producer
        return old

    @property
    def max_record_bytes(self) -> int:
        """Largest value sent whole; beyond it the truncated copy goes instead."""
        limit = int(getattr(self._producer, "config", {}).get("max_request_size", 1024 * 1024))
        return max(TRUNCATED_BYTES, limit - _OVERHEAD)

    def send(self, record: InboundRecord, reason: str) -> None:
        """Queue ``record`` for the dead-letter topic; ``flush`` confirms it."""
        headers = [("cxl-reason", reason.encode("utf-8"))]
        if record.topic is not None:
            headers += [
                ("cxl-origin-topic", record.topic.encode()),
                ("cxl-origin-partition", str(record.partition).encode()),
                ("cxl-origin-offset", str(record.offset).encode()),
            ]
        size = len(record.value) + len(record.key or b"")
        pending = _Pending(record, headers, None, truncated=size > self.max_record_bytes)
        self._send(pending)
        self._pending.append(pending)

    def _send(self, pending: _Pending) -> None:
        record = pending.record
        value, headers = record.value, pending.headers
        if pending.truncated:
            value = record.value[:TRUNCATED_BYTES]
            headers = [
                *headers,
                ("cxl-truncated", b"true"),
                ("cxl-original-size", str(len(record.value)).encode()),
                ("cxl-original-sha256", hashlib.sha256(record.value).hexdigest().encode()),
            ]
        pending.error = None
        try:
            pending.future = self._producer.send(
                self.topic, key=record.key, value=value, headers=headers
            )
        except KafkaError as exc:
            pending.future = None
            pending.error = exc

    def flush(self, timeout_s: float) -> None:
        """Wait for every dead letter queued since the last flush; raise if any was not delivered.

        A record refused as too large is sent again truncated (once). Raises ``DeadLetterError``
        naming the first undeliverable record; the caller must then not commit its position.
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._settle(pending, timeout_s)
        # A refused batch may have held small records too: each is sent again on its own, and
        # truncated only if it is larger than the truncated copy.
        for p in pending:
            if not p.truncated and isinstance(p.error, _TOO_LARGE):
                p.truncated = len(p.record.value) > TRUNCATED_BYTES
                self._send(p)
                self._settle([p], timeout_s)
        failures = [(p.record.origin, describe(p.error)) for p in pending if p.error is not None]
        if failures:
            raise DeadLetterError(self.topic, failures)
        self.sent += len(pending)
        self.truncated += sum(1 for p in pending if p.truncated)

    def _settle(self, pending: list[_Pending], timeout_s: float) -> None:
        try:
            self._producer.flush(timeout=timeout_s * 3)
        except KafkaError as exc:
            for p in pending:
                if p.future is not None and not p.future.is_done:
                    p.error = exc
        for p in pending:
            if p.future is None or p.error is not None:
                continue
            try:
                p.future.get(timeout=0.001 if p.future.is_done else timeout_s)
            except KafkaError as exc:
                p.error = exc
            except Exception as exc:  # a future that never settled, or any client failure
                p.error = exc


class NoSuchPartitionError(CxlError):
    """A dead-letter page was asked of a partition the topic does not have."""

    exit_code = 2


@dataclass(frozen=True)
class DeadLetterPage:
    """Dead letters of one partition from an offset on; ``next_offset`` continues after them."""

    partition: int
    rows: list[dict[str, Any]]
    next_offset: int


def read_dead_letters(
    bootstrap: str, topic: str, partition: int, offset: int, limit: int, timeout_s: float
) -> DeadLetterPage:
    """Up to ``limit`` dead letters of ``topic``/``partition`` from ``offset`` on, each with its
    reason, origin and value (UTF-8 text, or base64 when it is not), oldest first."""
    consumer = make_consumer(bootstrap, timeout_s, max_poll_records=limit)
    try:
        tp = TopicPartition(topic, partition)
        partitions = consumer.partitions_for_topic(topic) or set()
        if partition not in partitions:
            raise NoSuchPartitionError(
                f"{topic} has no partition {partition} (it has {len(partitions)})"
            )
        consumer.assign([tp])
        consumer.seek(tp, offset)
        rows: list[dict[str, Any]] = []
        empty = 0
        while len(rows) < limit and empty < 2:
            polled = consumer.poll(timeout_ms=300, max_records=limit - len(rows)).get(tp, [])
            empty = 0 if polled else empty + 1
            for message in polled:
                headers = {k: v.decode("utf-8", "replace") for k, v in message.headers or []}
                try:
                    value, encoding = message.value.decode("utf-8"), "utf-8"
                except UnicodeDecodeError:
                    value, encoding = base64.b64encode(message.value).decode("ascii"), "base64"
                rows.append(
                    {
                        "partition": message.partition,
                        "offset": message.offset,
                        "reason": headers.get("cxl-reason", ""),
                        "origin_topic": headers.get("cxl-origin-topic"),
                        "origin_partition": _int_or_none(headers.get("cxl-origin-partition")),
                        "origin_offset": _int_or_none(headers.get("cxl-origin-offset")),
                        "truncated": headers.get("cxl-truncated") == "true",
                        "key": None
                        if message.key is None
                        else message.key.decode("utf-8", "replace"),
                        "value": value,
                        "value_encoding": encoding,
                    }
                )
        return DeadLetterPage(partition, rows, rows[-1]["offset"] + 1 if rows else offset)
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot read {topic}: {describe(exc)}") from exc
    finally:
        consumer.close()


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None
