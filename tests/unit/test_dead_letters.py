"""Dead letters the broker refuses as too large are sent again truncated; other failures raise.

The test broker enforces no size limit, so a stand-in producer plays the broker that refuses
(``MessageSizeTooLargeError`` in the acknowledgement); the real-broker path is covered by
tests/integration/test_delivery.py.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from consumers.dead_letters import TRUNCATED_BYTES, DeadLetterError, DeadLetterQueue
from consumers.records import InboundRecord


class Acknowledgement:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.is_done = True

    def get(self, timeout: float | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return None


class RefusingProducer:
    """Acknowledges values up to ``limit`` bytes; refuses larger ones, or everything when down."""

    def __init__(self, limit: int, down: bool = False) -> None:
        self.config = {"max_request_size": 1024 * 1024}
        self.limit = limit
        self.down = down
        self.sent: list[tuple[bytes, dict[str, bytes]]] = []

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Any) -> Acknowledgement:
        if self.down:
            return Acknowledgement(KafkaTimeoutError("Expiring 1 record(s)"))
        if len(value) > self.limit:
            return Acknowledgement(MessageSizeTooLargeError())
        self.sent.append((value, dict(headers)))
        return Acknowledgement(None)

    def flush(self, timeout: float | None = None) -> None:
        return None


def _record(value: bytes) -> InboundRecord:
    return InboundRecord(value, "cx.events/2@41", b"c1", "cx.events", 2, 41)


def test_a_record_the_broker_refuses_as_too_large_is_dead_lettered_truncated() -> None:
    producer = RefusingProducer(limit=200_000)
    queue = DeadLetterQueue(producer, "dlq")
    big = b"y" * 500_000
    queue.send(_record(big), "data: not valid")
    queue.send(_record(b"{small"), "not valid JSON")
    queue.flush(1)

    assert (queue.sent, queue.truncated) == (2, 1)
    by_size = {len(value): headers for value, headers in producer.sent}
    headers = by_size[TRUNCATED_BYTES]
    assert headers["cxl-truncated"] == b"true"
    assert headers["cxl-original-size"] == b"500000"
    assert headers["cxl-original-sha256"] == hashlib.sha256(big).hexdigest().encode()
    assert headers["cxl-origin-offset"] == b"41"
    assert "cxl-truncated" not in by_size[len(b"{small")]


def test_a_dead_letter_that_is_not_acknowledged_raises_and_names_the_record() -> None:
    queue = DeadLetterQueue(RefusingProducer(limit=10**9, down=True), "dlq")
    queue.send(_record(b"{bad"), "not valid JSON")
    with pytest.raises(DeadLetterError) as caught:
        queue.flush(1)
    assert "cx.events/2@41" in str(caught.value)
    assert caught.value.exit_code == 5
    assert queue.sent == 0
