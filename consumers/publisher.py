"""``cxl publish``: JSON lines → ``cx.events``, keyed by customer, validated client-side.

The key is the ``customer_id``, partitioned with kafka-python's default (murmur2, as Java's), so
one customer's events stay on one partition and in order.

A line counts as delivered only once the broker acknowledged it (``acks=all``): ``flush()`` does
not raise on a failed delivery, so every send's outcome is collected through callbacks. Memory
stays bounded: at most ``max_in_flight`` records are unacknowledged at any time, and only the
origins of failed lines are kept. A record the broker or client refuses (too large, invalid) is
reported and the rest go on; a broker that stops answering ends the run with
``BrokerUnavailableError`` naming how many lines were confirmed delivered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from consumers.kafka_clients import describe
from consumers.records import InboundRecord
from ledger.contract import parse_event
from ledger.errors import BrokerUnavailableError, InvalidEventError

MAX_IN_FLIGHT = 50_000


class PublishInterruptedError(BrokerUnavailableError):
    """The broker stopped answering mid-publish; only ``delivered`` records are known to be in."""

    def __init__(self, topic: str, cause: BaseException, delivered: int, offered: int) -> None:
        self.topic = topic
        self.delivered = delivered
        self.offered = offered
        super().__init__(
            f"the broker stopped answering while publishing to {topic} ({describe(cause)}): "
            f"{delivered:,} of {offered:,} records sent were confirmed delivered; the rest may or "
            "may not have been delivered. Publishing the same files again is safe (event_id "
            "dedupe seals each event once)."
        )


@dataclass(frozen=True)
class Undelivered:
    """A line the broker or client refused; ``origin`` is ``file:line``."""

    origin: str
    reason: str

    def __str__(self) -> str:
        return f"{self.origin}: not delivered: {self.reason}"


@dataclass
class PublishReport:
    """What happened to every line: ``delivered`` counts only acknowledged records."""

    delivered: int = 0
    rejected: list[InvalidEventError] = field(default_factory=list)
    undelivered: list[Undelivered] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.undelivered)

    @property
    def sent(self) -> int:
        """Records sent and acknowledged (the same as ``delivered``)."""
        return self.delivered


def is_broker_failure(exc: BaseException) -> bool:
    """True when ``exc`` says the broker is unreachable or lost state, not that a record is bad."""
    if isinstance(exc, KafkaTimeoutError):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


class _Deliveries:
    """Outcomes of sends, counted from the producer's I/O thread; failed origins are kept."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.pending = 0
        self.delivered = 0
        self.undelivered: list[Undelivered] = []
        self.broker_failure: BaseException | None = None

    def track(self, future: Any, origin: str) -> None:
        with self._lock:
            self.pending += 1
        future.add_callback(self._ok)
        future.add_errback(self._failed, origin)

    def _ok(self, _metadata: Any) -> None:
        with self._lock:
            self.pending -= 1
            self.delivered += 1
            self._lock.notify_all()

    def _failed(self, origin: str, exc: BaseException) -> None:
        with self._lock:
            self.pending -= 1
            if is_broker_failure(exc):
                if self.broker_failure is None:
                    self.broker_failure = exc
            else:
                self.undelivered.append(Undelivered(origin, describe(exc)))
            self._lock.notify_all()

    def confirmed(self) -> int:
        with self._lock:
            return self.delivered

    def refused(self, origin: str, exc: BaseException) -> None:
        with self._lock:
            self.undelivered.append(Undelivered(origin, describe(exc)))

    def wait_below(self, limit: int, timeout_s: float) -> bool:
        """Wait until fewer than ``limit`` sends are unacknowledged; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self.pending >= limit and self.broker_failure is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 1.0))
        return True


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
    max_in_flight: int = MAX_IN_FLIGHT,
    shared: bool = False,
) -> PublishReport:
    """Send every valid record (every record with ``validate=False``) and confirm each delivery.

    ``shared``: other threads send through ``producer`` too; only this call's records are waited
    for, not a flush of everything.

    Returns the report when the broker answered for every record sent (some may have been
    refused: ``report.undelivered``). Raises ``BrokerUnavailableError`` when the broker stopped
    answering (``PublishInterruptedError``, naming how many were confirmed delivered before).
    """
    report = PublishReport()
    deliveries = _Deliveries()
    # Once every send has been handed over, the producer retries for up to its delivery timeout.
    settle_s = timeout_s * 3 + 5
    offered = 0

    def broker_gone(exc: BaseException) -> PublishInterruptedError:
        return PublishInterruptedError(topic, exc, deliveries.confirmed(), offered)

    for record in records:
        if validate:
            try:
                event = parse_event(record.value, record.origin)
            except InvalidEventError as exc:
                report.rejected.append(exc)
                continue
            key: bytes | None = event.customer_id.encode()
        else:
            key = record.key if record.key is not None else _key_of_unvalidated(record.value)
        if deliveries.broker_failure is not None:
            raise broker_gone(deliveries.broker_failure)
        if not deliveries.wait_below(max_in_flight, settle_s):
            raise broker_gone(KafkaTimeoutError("no acknowledgement within the delivery timeout"))
        try:
            future = producer.send(topic, key=key, value=record.value)
        except KafkaError as exc:
            if is_broker_failure(exc):
                raise broker_gone(exc) from exc
            deliveries.refused(record.origin, exc)  # e.g. MessageSizeTooLargeError
            continue
        offered += 1
        deliveries.track(future, record.origin)
        if on_progress is not None and offered % 10_000 == 0:
            on_progress(deliveries.delivered)
    if shared:
        # Others' records share the producer: wait for ours only (sent within linger_ms).
        settled = deliveries.wait_below(1, settle_s)
    else:
        try:
            producer.flush(timeout=settle_s)
        except KafkaError as exc:
            raise broker_gone(exc) from exc
        settled = deliveries.wait_below(1, 5.0)
    if not settled:
        raise broker_gone(KafkaTimeoutError("no acknowledgement within the delivery timeout"))
    if deliveries.broker_failure is not None:
        raise broker_gone(deliveries.broker_failure)
    report.delivered = deliveries.delivered
    report.undelivered = deliveries.undelivered
    return report
