"""The dead-letter topic: every rejected record, byte for byte, with its reason and origin.

Headers: ``cxl-reason`` (field: reason; …), ``cxl-origin-topic``, ``cxl-origin-partition``,
``cxl-origin-offset``. The key is the original key. Delivery is at-least-once: a crash between the
dead-letter send and the ledger commit re-sends it, so readers may drop repeats by origin.
"""

from __future__ import annotations

from kafka import KafkaProducer

from consumers.records import InboundRecord


class DeadLetterQueue:
    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self.sent = 0

    def send(self, record: InboundRecord, reason: str) -> None:
        headers = [("cxl-reason", reason.encode("utf-8"))]
        if record.topic is not None:
            headers += [
                ("cxl-origin-topic", record.topic.encode()),
                ("cxl-origin-partition", str(record.partition).encode()),
                ("cxl-origin-offset", str(record.offset).encode()),
            ]
        self._producer.send(self.topic, key=record.key, value=record.value, headers=headers)
        self.sent += 1

    def flush(self, timeout_s: float) -> None:
        self._producer.flush(timeout=timeout_s)
