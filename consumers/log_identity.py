"""Which log a Kafka partition is: identity, not length.

Offsets mean something only within one life of a topic. A broker restarted without its storage, a
topic deleted and recreated, or a bootstrap address that now names another cluster all start the
offsets again at 0 — and the new log may be as long as, or longer than, the position the ledger
resumes from. Two facts tell the lives apart:

- the topic's id (a UUID the broker gives each topic it creates, reported in metadata by Kafka
  2.8+ and by the test broker), recorded with every committed position;
- the fingerprint of the record at the committed position (SHA-256 over its key, value and
  timestamp), checked on resume by reading that record again: a broker that reports no topic id is
  still caught.

Records fetched while running are sealed only after a metadata refresh that completed after they
arrived has confirmed the topic id, so a restart in the middle of a run is caught before anything
fetched from the new log is taken for the old one.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError

NO_TOPIC_ID = "-"


def record_fingerprint(message: Any) -> str:
    """SHA-256 over a consumed record's key, value and timestamp."""
    digest = hashlib.sha256()
    for part in (message.key, message.value):
        data = part or b""
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    digest.update(str(message.timestamp).encode("ascii"))
    return digest.hexdigest()


def source_mark(topic_id: str, message: Any) -> str:
    """What is stored with a committed position: ``"<topic id> <record fingerprint>"``."""
    return f"{topic_id} {record_fingerprint(message)}"


def split_mark(mark: str) -> tuple[str, str]:
    topic_id, _, fingerprint = mark.partition(" ")
    return topic_id, fingerprint


class TopicIdentity:
    """Follows a topic's id through the consumer's own metadata refreshes.

    ``generation`` counts completed refreshes. Records that arrive while a refresh is in flight
    (whose request may predate them) must wait for the one after it: ``required_generation``.
    """

    def __init__(self, consumer: KafkaConsumer, topic: str) -> None:
        self._consumer = consumer
        self._topic = topic
        self.generation = 0
        self._future: Any = None

    @property
    def _cluster(self) -> Any:
        return self._consumer._cluster

    def current(self) -> str:
        topic_id = self._cluster.topic_id(self._topic)
        return NO_TOPIC_ID if topic_id is None else str(topic_id)

    def required_generation(self) -> int:
        """Ask for a refresh now; the generation whose topic id vouches for records that just
        arrived."""
        future = self._cluster.request_update()
        in_flight = future is self._future
        if not in_flight:
            self._future = future
            future.add_callback(self._completed)
        return self.generation + (2 if in_flight else 1)

    def _completed(self, _: Any) -> None:
        self.generation += 1

    def refresh_now(self, timeout_s: float) -> str:
        """A blocking refresh (start-up, shutdown); returns the topic id it reports."""
        wanted = self.required_generation()
        deadline = time.monotonic() + timeout_s
        consumer: Any = self._consumer
        while self.generation < wanted:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise KafkaTimeoutError(f"no metadata for {self._topic} within {timeout_s:.0f}s")
            self.required_generation()  # follows each new refresh's future
            consumer._net.run(consumer._manager.wait_for, self._future, remaining_ms)
        return self.current()
