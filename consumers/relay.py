"""Relay: every sealed event, in ledger order, to ``cx.ledger`` — at-least-once, without gaps.

Each record is keyed by customer and carries ``seq``, ``hash`` and its ledger ``position``, so
readers drop repeats by (customer, seq). Records are sent in batches, each flushed before the next
starts; every record carries its batch's first position (header ``cxl-batch-start``). So on start
(and after any producer error) the topic itself says where to resume: the largest batch start found
in the last record of each partition — everything before it was fully delivered.

Offsets only grow within one life of a topic. Every acknowledgement says at which offset a record
landed; when a page lands at or below an offset the relay already wrote to that partition, the
topic was deleted and recreated (or the broker lost its storage) since: the relay publishes again
from position 1. After a producer error it also compares each partition's high watermark with what
it wrote there, and a shorter log is a reset too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from consumers.kafka_clients import make_consumer, make_producer
from consumers.topics import ensure_topics
from ledger.errors import BrokerUnavailableError
from ledger.settings import Settings
from ledger.store import LedgerStore, SealedEvent

BATCH_START = "cxl-batch-start"
POSITION = "cxl-position"


def ledger_record(event: SealedEvent) -> bytes:
    return orjson.dumps(
        {
            "position": event.position,
            "customer_id": event.customer_id,
            "seq": event.seq,
            "event_id": event.event_id,
            "type": event.type,
            "recorded_at": event.recorded_at,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
            "event": event.body,
        }
    )


class LedgerRelay:
    def __init__(
        self,
        store: LedgerStore,
        bootstrap: str,
        topic: str,
        *,
        partitions: int,
        timeout_s: float,
        batch_size: int = 5000,
        retries: int = 5,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.retries = retries
        self._producer: KafkaProducer | None = None
        self._next: int | None = None
        # Highest offset this relay wrote to each partition of the topic's current life.
        self._written: dict[int, int] = {}
        # Lowest and highest offset of the last page sent, per partition.
        self._landed: dict[int, tuple[int, int]] = {}
        self.resets = 0

    @classmethod
    def for_settings(cls, store: LedgerStore, bootstrap: str, settings: Settings) -> LedgerRelay:
        return cls(
            store,
            bootstrap,
            settings.ledger_topic,
            partitions=settings.partitions,
            timeout_s=settings.kafka_timeout_s,
            batch_size=settings.batch_size,
        )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.timeout_s)
            self._producer = None

    def resume_position(self) -> int:
        """First ledger position not known to be fully delivered to the topic."""
        return self._read_end()[0]

    def _read_end(self) -> tuple[int, dict[int, int]]:
        """The resume position, and the high watermark of each partition read to its end."""
        ensure_topics(self.bootstrap, {self.topic: self.partitions}, self.timeout_s)
        consumer = make_consumer(self.bootstrap, self.timeout_s)
        try:
            tps = [
                TopicPartition(self.topic, p)
                for p in sorted(consumer.partitions_for_topic(self.topic) or ())
            ]
            if not tps:
                return 1, {}
            consumer.assign(tps)
            ends = consumer.end_offsets(tps, timeout_ms=int(self.timeout_s * 1000))
            pending = {tp for tp in tps if ends.get(tp)}
            for tp in pending:
                # On the test broker end_offsets is the last batch's base offset, not the high
                # watermark; starting one before it and reading to the end works on both.
                consumer.seek(tp, max(0, ends[tp] - 1))
            last_batch_start = 0
            deadline = time.monotonic() + self.timeout_s
            while pending and time.monotonic() < deadline:
                for messages in consumer.poll(timeout_ms=200).values():
                    headers = dict(messages[-1].headers or [])
                    last_batch_start = max(last_batch_start, int(headers.get(BATCH_START, b"0")))
                for tp in list(pending):
                    high = consumer.highwater(tp)
                    if high is not None and consumer.position(tp) >= high:
                        pending.discard(tp)
            if pending:
                raise BrokerUnavailableError(
                    f"could not read the end of {self.topic} within {self.timeout_s:.0f}s"
                )
            highs = {
                tp.partition: high for tp in tps if (high := consumer.highwater(tp)) is not None
            }
            return max(1, last_batch_start), highs
        finally:
            consumer.close()

    def publish_pending(self, limit: int | None = None) -> int:
        """Send what the store sealed since the last call; returns how many records were sent."""
        for attempt in range(self.retries + 1):
            try:
                return self._publish(limit)
            except KafkaError as exc:
                # A restarted broker leaves an idempotent producer broken for good
                # (UnknownProducerIdError, then InitProducerId errors): start over from the topic.
                self.close()
                self._next = None
                if attempt == self.retries:
                    raise BrokerUnavailableError(
                        f"relay to {self.topic} failed {self.retries + 1} times: {exc}"
                    ) from exc
                time.sleep(min(2.0, 0.2 * (attempt + 1)))
        return 0

    def _publish(self, limit: int | None) -> int:
        if self._next is None:
            resume, highs = self._read_end()
            if any(p in highs and highs[p] <= offset for p, offset in self._written.items()):
                # The topic holds fewer records than this relay wrote to it: it is a new log.
                self._reset()
            else:
                self._next = resume
        if self._producer is None:
            self._producer = make_producer(self.bootstrap, self.timeout_s)
        sent = 0
        while True:
            reset = False
            for page in self.store.read(self._next or 1, page=self.batch_size):
                sent += self._send_page(page)
                if self._was_reset():
                    reset = True
                    break
                self._next = page[-1].position + 1
                if limit is not None and sent >= limit:
                    return sent
            if not reset:
                return sent
            # The topic is a new log (deleted and recreated, or a new cluster): it holds at most
            # what was written since, so everything is published again from the first position.
            self._reset()

    def _reset(self) -> None:
        self.resets += 1
        self._written.clear()
        self._landed.clear()
        self._next = 1
        ensure_topics(self.bootstrap, {self.topic: self.partitions}, self.timeout_s)

    def _send_page(self, page: list[SealedEvent]) -> int:
        """Send one page and wait for every acknowledgement; note where each record landed."""
        assert self._producer is not None
        batch_start = str(page[0].position).encode()
        futures = [
            self._producer.send(
                self.topic,
                key=event.customer_id.encode(),
                value=ledger_record(event),
                headers=[(BATCH_START, batch_start), (POSITION, str(event.position).encode())],
            )
            for event in page
        ]
        self._producer.flush(timeout=self.timeout_s * 3)
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for future in futures:
            metadata = future.get(timeout=0)  # surfaces a failed delivery as KafkaError
            p, offset = metadata.partition, metadata.offset
            first[p] = min(first.get(p, offset), offset)
            last[p] = max(last.get(p, offset), offset)
        self._landed = {p: (first[p], last[p]) for p in first}
        return len(page)

    def _was_reset(self) -> bool:
        """True when the last page landed at or below an offset this relay already wrote to.

        Offsets only grow within one life of a partition, so a lower one is a new log: detected by
        identity (where our own records land), not by comparing lengths.
        """
        reset = any(
            first <= self._written[p]
            for p, (first, _) in self._landed.items()
            if p in self._written
        )
        for p, (_, last) in self._landed.items():
            self._written[p] = last
        return reset

    def run(
        self,
        *,
        until_idle: bool,
        should_stop: Callable[[], bool],
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        total = 0
        while not should_stop():
            sent = self.publish_pending()
            total += sent
            if on_progress is not None:
                on_progress(total)
            if sent == 0:
                if until_idle:
                    break
                time.sleep(0.5)
        return total
