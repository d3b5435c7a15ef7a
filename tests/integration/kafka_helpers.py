"""Reading and writing test topics directly with kafka-python (the ledger's code is not used here)."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def produce(
    bootstrap: str, topic: str, values: list[bytes], keys: list[bytes | None] | None = None
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        for i, value in enumerate(values):
            producer.send(topic, key=keys[i] if keys else None, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def read_all(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[Any]:
    """Every record of ``topic``, read until each partition is at its high watermark."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=300)
            for messages in polled.values():
                records.extend(messages)
            done = all(
                consumer.highwater(tp) is not None
                and consumer.position(tp) >= consumer.highwater(tp)
                for tp in tps
            )
            quiet = 0 if polled else quiet + 1
            if (done and not polled) or quiet >= 6:
                break
        return records
    finally:
        consumer.close()
