"""Ingest: ``cx.events`` → validate → dedupe → seal, exactly-once from at-least-once delivery.

Per partition batch, in one store transaction: the sealed events and the Kafka position
(``Tracking("kafka:<topic>:<partition>:<epoch>", last offset)``). Rejects go to the dead-letter
topic *before* that commit. On restart each partition resumes at the recorded position + 1.

Kafka offsets only mean something within one life of a topic. An *epoch* counts those lives per
partition (itself stored as a tracking row ``epoch:kafka:<topic>:<partition>``). When the
partition's high watermark falls below the position the ledger would resume from, the log was
reset: with a broker this process started (embedded) or ``accept_reset``, a new epoch begins at
offset 0 and ``event_id`` dedupe keeps it exactly-once; otherwise ingest stops with
``LogResetError`` rather than skip silently.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import Tracking
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from consumers.dead_letters import DeadLetterQueue
from consumers.kafka_clients import make_consumer, make_producer
from consumers.records import InboundRecord, validate_records
from consumers.relay import LedgerRelay
from consumers.topics import ensure_topics
from ledger.errors import BrokerUnavailableError, LogResetError
from ledger.settings import Settings
from ledger.store import LedgerStore, SealReport


@dataclass
class IngestStats:
    consumed: int = 0
    sealed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    relayed: int = 0
    resets: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def add(self, report: SealReport) -> None:
        self.sealed += report.sealed
        self.duplicates += report.duplicates
        self._add_anomalies(report.anomalies)

    def merge(self, other: IngestStats) -> None:
        """Add another writer's counts (parallel ingest adds up its workers')."""
        for name in ("consumed", "sealed", "duplicates", "dead_lettered", "relayed", "resets"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self._add_anomalies(other.anomalies)

    def _add_anomalies(self, anomalies: dict[str, int]) -> None:
        for name, count in anomalies.items():
            self.anomalies[name] = self.anomalies.get(name, 0) + count

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.consumed / elapsed if elapsed > 0 else 0.0


LINGER_S = 0.5


def wait_for_partitions(consumer: KafkaConsumer, topic: str, timeout_s: float) -> list[int]:
    """The topic's partitions, waiting up to ``timeout_s`` for its metadata to appear."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        if time.monotonic() > deadline:
            raise BrokerUnavailableError(f"topic {topic} has no partitions after {timeout_s:.0f}s")
        time.sleep(0.1)


def discover_partitions(settings: Settings, bootstrap: str) -> list[int]:
    """The events topic's partitions, creating the ledger's topics first if they are missing."""
    ensure_topics(bootstrap, settings.topics, settings.kafka_timeout_s)
    consumer = make_consumer(bootstrap, settings.kafka_timeout_s)
    try:
        return wait_for_partitions(consumer, settings.events_topic, settings.kafka_timeout_s)
    finally:
        consumer.close()


def tracking_name(topic: str, partition: int, epoch: int) -> str:
    return f"kafka:{topic}:{partition}:{epoch}"


def epoch_name(topic: str, partition: int) -> str:
    return f"epoch:kafka:{topic}:{partition}"


class IngestConsumer:
    """Moves ``settings.events_topic`` (all partitions, or the ``partitions`` given) into the store.

    It is the only writer of its partitions' customers; ``ParallelIngest`` runs one per share.
    """

    def __init__(
        self,
        settings: Settings,
        store: LedgerStore,
        bootstrap: str,
        *,
        owns_broker: bool = False,
        accept_reset: bool = False,
        relay: LedgerRelay | None = None,
        on_progress: Callable[[IngestStats], None] | None = None,
        partitions: list[int] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bootstrap = bootstrap
        self.owns_broker = owns_broker
        self.accept_reset = accept_reset
        self.relay = relay
        self.on_progress = on_progress
        self.stats = IngestStats()
        self.stop_requested = threading.Event()
        self._topic = settings.events_topic
        self._only = partitions
        self._epochs: dict[int, int] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False, idle_polls: int = 3) -> IngestStats:
        """Consume until stopped (or, with ``until_idle``, until every partition is caught up)."""
        s = self.settings
        ensure_topics(self.bootstrap, s.topics, s.kafka_timeout_s)
        consumer = make_consumer(self.bootstrap, s.kafka_timeout_s, max_poll_records=s.batch_size)
        producer = make_producer(self.bootstrap, s.kafka_timeout_s)
        dead_letters = DeadLetterQueue(producer, s.dlq_topic)
        # A batch keeps ~10^4 young objects alive (records, events, aggregates' state): with the
        # default thresholds the cyclic GC rescans them over and over. Long-lived state is frozen
        # out of its sight and the young generation allowed to grow; restored on exit.
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(100_000, 50, 50)
        try:
            partitions = [
                p
                for p in wait_for_partitions(consumer, self._topic, s.kafka_timeout_s)
                if self._only is None or p in self._only
            ]
            consumer.assign([TopicPartition(self._topic, p) for p in partitions])
            for p in partitions:
                self._position_partition(consumer, p, fresh_log=self.owns_broker)
            quiet = 0
            buffered: dict[int, list[Any]] = {}
            since: dict[int, float] = {}

            def flush(partition: int) -> None:
                since.pop(partition, None)
                messages = buffered.pop(partition, None)
                if messages:
                    self._process(partition, messages, dead_letters)

            while not self.stop_requested.is_set():
                polled = consumer.poll(timeout_ms=200, max_records=s.batch_size)
                now = time.monotonic()
                for tp, messages in polled.items():
                    buffered.setdefault(tp.partition, []).extend(messages)
                    since.setdefault(tp.partition, now)
                self._detect_resets(consumer, flush)
                # A partition's records are sealed in batches of up to batch_size (one transaction,
                # one fsync each), or sooner when the topic goes quiet or they have waited LINGER_S.
                for partition in list(buffered):
                    if (
                        not polled
                        or len(buffered[partition]) >= s.batch_size
                        or now - since[partition] >= LINGER_S
                    ):
                        flush(partition)
                if self.relay is not None:
                    self.stats.relayed += self.relay.publish_pending()
                if self.on_progress is not None:
                    self.on_progress(self.stats)
                if polled:
                    quiet = 0
                    continue
                quiet += 1
                if until_idle and quiet >= idle_polls and self._caught_up(consumer):
                    break
            for partition in list(buffered):
                flush(partition)
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"Kafka failed during ingest from {self.bootstrap}: {exc}"
            ) from exc
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            consumer.close()
            producer.close(timeout=s.kafka_timeout_s)
        return self.stats

    def stop(self) -> None:
        self.stop_requested.set()

    # -- positions and resets ------------------------------------------------------------------

    def _position_partition(
        self, consumer: KafkaConsumer, partition: int, *, fresh_log: bool
    ) -> None:
        epoch = self.store.position(epoch_name(self._topic, partition)) or 0
        last = self.store.position(tracking_name(self._topic, partition, epoch))
        if fresh_log and last is not None:
            # A broker this process started is a new, empty cluster: its offsets start a new epoch.
            epoch = self._new_epoch(partition, epoch)
            last = None
        self._epochs[partition] = epoch
        consumer.seek(TopicPartition(self._topic, partition), 0 if last is None else last + 1)

    def _new_epoch(self, partition: int, epoch: int) -> int:
        self.store.record_position(Tracking(epoch_name(self._topic, partition), epoch + 1))
        self.stats.resets += 1
        return epoch + 1

    def _detect_resets(self, consumer: KafkaConsumer, flush: Callable[[int], None]) -> None:
        for partition in list(self._epochs):
            tp = TopicPartition(self._topic, partition)
            high = consumer.highwater(tp)
            position = consumer.position(tp)
            if high is None or position is None or high >= position:
                continue
            if not (self.owns_broker or self.accept_reset):
                raise LogResetError(self._topic, partition, position, high)
            flush(partition)  # what was fetched before the reset belongs to the old epoch
            s = self.settings
            ensure_topics(self.bootstrap, s.topics, s.kafka_timeout_s)
            self._epochs[partition] = self._new_epoch(partition, self._epochs[partition])
            consumer.seek(tp, 0)

    def _caught_up(self, consumer: KafkaConsumer) -> bool:
        for partition in self._epochs:
            tp = TopicPartition(self._topic, partition)
            high = consumer.highwater(tp)
            position = consumer.position(tp)
            if high is None:
                # Nothing fetched yet for this partition: caught up only if it never had records.
                if position not in (None, 0):
                    return False
                continue
            if position is None or position < high:
                return False
        return True

    # -- one batch -----------------------------------------------------------------------------

    def _process(self, partition: int, messages: list, dead_letters: DeadLetterQueue) -> None:
        records = [
            InboundRecord(
                value=m.value or b"",
                origin=f"{m.topic}/{m.partition}@{m.offset}",
                key=m.key,
                topic=m.topic,
                partition=m.partition,
                offset=m.offset,
            )
            for m in messages
        ]
        batch = validate_records(records)
        tracking = Tracking(
            tracking_name(self._topic, partition, self._epochs[partition]), messages[-1].offset
        )

        def dead_letter_refusals(report: SealReport) -> None:
            for record, error in batch.invalid:
                dead_letters.send(record, error.reason)
            for rejection in report.rejected:
                dead_letters.send(batch.record_of(rejection.event), rejection.reason)
            if batch.invalid or report.rejected:
                dead_letters.flush(self.settings.kafka_timeout_s)

        report = self.store.seal(batch.valid, tracking, before_commit=dead_letter_refusals)
        self.stats.consumed += len(messages)
        if not report.already_done:
            self.stats.add(report)
            self.stats.dead_lettered += len(batch.invalid) + len(report.rejected)
