"""Ingest: ``cx.events`` → validate → dedupe → seal, exactly-once from at-least-once delivery.

Per partition batch, in one store transaction: the sealed events, the Kafka position
(``Tracking("kafka:<topic>:<partition>:<epoch>", last offset)``) and the identity of the log at that
position (topic id and the last record's fingerprint, ``consumers.log_identity``). Rejects go to
the dead-letter topic, and are acknowledged, *before* that commit. On restart each partition
resumes at the recorded position + 1.

Kafka offsets only mean something within one life of a topic. An *epoch* counts those lives per
partition (itself stored as a tracking row ``epoch:kafka:<topic>:<partition>``). The log is taken
for a new one — a reset — when its topic id differs from the recorded one, when the record at the
recorded position is missing or has another fingerprint, or when the high watermark falls below the
resume position: whatever the new log's length. Then, with a broker this process started
(embedded) or ``accept_reset``, a new epoch begins at offset 0 and ``event_id`` dedupe keeps it
exactly-once; otherwise ingest stops with ``LogResetError`` rather than skip silently.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import Tracking
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from consumers.checkpoints import CheckpointPublisher
from consumers.dead_letters import DeadLetterQueue
from consumers.kafka_clients import (
    GroupMembership,
    close_producer,
    make_consumer,
    make_producer,
)
from consumers.log_identity import (
    NO_TOPIC_ID,
    TopicIdentity,
    record_fingerprint,
    source_mark,
    split_mark,
)
from consumers.records import InboundRecord, validate_records
from consumers.relay import LedgerRelay
from consumers.topics import ensure_topics
from ledger.errors import BrokerUnavailableError, LedgerTamperedError, LogResetError
from ledger.recorders import mark_mismatch
from ledger.settings import Settings
from ledger.store import LedgerStore, SealReport


@dataclass
class IngestStats:
    consumed: int = 0
    sealed: int = 0
    duplicates: int = 0
    erased: int = 0
    dead_lettered: int = 0
    invalid: int = 0
    """Records the contract refused (dead-lettered)."""
    conflicts: int = 0
    """Events whose ``event_id`` was sealed before with other content (dead-lettered)."""
    relayed: int = 0
    resets: int = 0
    checkpoints: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)
    """Per partition, records on the topic past the consumer's position, as of the last poll."""
    started: float = field(default_factory=time.monotonic)

    def add(self, report: SealReport) -> None:
        self.sealed += report.sealed
        self.duplicates += report.duplicates
        self.erased += report.erased
        self._add_anomalies(report.anomalies)

    def merge(self, other: IngestStats) -> None:
        """Add another writer's counts (parallel ingest adds up its workers')."""
        for name in (
            "consumed",
            "sealed",
            "duplicates",
            "erased",
            "dead_lettered",
            "invalid",
            "conflicts",
            "relayed",
            "resets",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self._add_anomalies(other.anomalies)
        self.lag.update(other.lag)

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


def membership(settings: Settings) -> GroupMembership | None:
    """The consumer group of ``settings`` (``CXL_CONSUMER_GROUP``), if any, with its timing."""
    if settings.consumer_group is None:
        return None
    return GroupMembership(
        settings.consumer_group,
        settings.group_session_timeout_s,
        settings.group_heartbeat_s,
        settings.group_max_poll_interval_s,
        settings.group_join_timeout_s,
    )


class _Rebalance(ConsumerRebalanceListener):
    """Hands the group's decisions to the ingest consumer's own thread.

    kafka-python calls a listener from its network thread (while the ingest thread waits in
    ``poll``, so never in the middle of a seal), where the store's connections (bound to the thread
    that opened them) cannot be used: a revocation marks the partitions; an assignment pauses them
    (nothing is fetched before they are positioned from the store) and marks them.
    ``IngestConsumer.rebalanced`` does the rest after ``poll`` returns."""

    def __init__(self, ingest: IngestConsumer, consumer: KafkaConsumer) -> None:
        self._ingest = ingest
        self._consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        with self._ingest.sealing:
            self._ingest._revoked.update(tp.partition for tp in revoked)
            self._ingest._joined = False  # until the rebalance assigns again
            self._ingest._unassigned_since = time.monotonic()

    def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            self._consumer.pause(*assigned)
        with self._ingest.sealing:
            self._ingest._assigned.update(tp.partition for tp in assigned)
            self._ingest._joined = True


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
        checkpoints: CheckpointPublisher | None = None,
        on_progress: Callable[[IngestStats], None] | None = None,
        partitions: list[int] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bootstrap = bootstrap
        self.owns_broker = owns_broker
        self.accept_reset = accept_reset
        self.relay = relay
        self.checkpoints = checkpoints
        self.on_progress = on_progress
        self.stats = IngestStats()
        self.stop_requested = threading.Event()
        self.draining = threading.Event()
        self._topic = settings.events_topic
        self._only = partitions
        self._epochs: dict[int, int] = {}
        self._probes: dict[int, tuple[int, str]] = {}
        # Per partition, fetched records waiting to be sealed, in chunks tagged with the metadata
        # generation that must have completed before they may be (``TopicIdentity``).
        self._pending: dict[int, list[tuple[int, list[Any]]]] = {}
        self._since: dict[int, float] = {}
        self._topic_id = NO_TOPIC_ID
        self._joined = settings.consumer_group is None
        """In a group, whether the coordinator has assigned this member its partitions yet."""
        self._unassigned_since = time.monotonic()
        """Since when, in a group, this member has waited for an assignment (``_check_join``)."""
        self._revoked: set[int] = set()
        self._assigned: set[int] = set()
        self.sealing = threading.Lock()
        """Guards the marks above (set from kafka-python's thread) and is held while a batch is
        sealed."""

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False, idle_polls: int = 3) -> IngestStats:
        """Consume until stopped (or, with ``until_idle``, until every partition is caught up)."""
        s = self.settings
        ensure_topics(self.bootstrap, s.topics, s.kafka_timeout_s)
        group = membership(s)
        consumer = make_consumer(
            self.bootstrap, s.kafka_timeout_s, max_poll_records=s.batch_size, group=group
        )
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
            self._identity = TopicIdentity(consumer, self._topic)
            if group is None:
                consumer.assign([TopicPartition(self._topic, p) for p in partitions])
                self._topic_id = self._identity.refresh_now(s.kafka_timeout_s)
                for p in partitions:
                    self._position_partition(consumer, p, dead_letters, fresh_log=self.owns_broker)
            else:
                self._topic_id = self._identity.refresh_now(s.kafka_timeout_s)
                consumer.subscribe([self._topic], listener=_Rebalance(self, consumer))
            quiet = 0
            lag_at = 0.0
            self._unassigned_since = time.monotonic()
            while not self.stop_requested.is_set():
                polled = consumer.poll(timeout_ms=200, max_records=s.batch_size)
                if group is not None:
                    self._check_join(group)
                    stale = self.rebalanced(consumer, dead_letters)
                    if stale:
                        quiet = 0
                    polled = {
                        tp: m
                        for tp, m in polled.items()
                        if tp.partition in self._epochs and tp.partition not in stale
                    }
                now = time.monotonic()
                if polled:
                    vouching = self._identity.required_generation()
                for tp, messages in polled.items():
                    messages = self._check_probe(consumer, tp.partition, messages, dead_letters)
                    if messages:
                        self._pending.setdefault(tp.partition, []).append((vouching, messages))
                        self._since.setdefault(tp.partition, now)
                self._detect_resets(consumer, dead_letters)
                if now - lag_at >= 1.0:
                    self._measure_lag(consumer)
                    lag_at = now
                # A partition's records are sealed in batches of up to batch_size (one transaction,
                # one fsync each), or sooner when the topic goes quiet or they have waited LINGER_S,
                # once a metadata refresh after their arrival has vouched for the log's identity.
                due = [
                    p
                    for p, chunks in self._pending.items()
                    if not polled
                    or sum(len(m) for _, m in chunks) >= s.batch_size
                    or now - self._since[p] >= LINGER_S
                ]
                if due:
                    self._confirm_identity(consumer, dead_letters)
                    for partition in due:
                        self._flush(partition, dead_letters, vouched_only=True)
                if self.relay is not None:
                    self.stats.relayed += self.relay.publish_pending()
                if self.checkpoints is not None:
                    self.stats.checkpoints += self.checkpoints.maybe_publish()
                if self.on_progress is not None:
                    self.on_progress(self.stats)
                if polled or self._pending:
                    quiet = 0
                    continue
                quiet += 1
                idle_ends = until_idle or self.draining.is_set()
                if idle_ends and quiet >= idle_polls and self._caught_up(consumer):
                    break
            if self._pending:
                self._seal_pending(consumer, dead_letters, list(self._pending))
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"Kafka failed during ingest from {self.bootstrap}: {exc}"
            ) from exc
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            consumer.close()
            close_producer(dead_letters.producer, s.kafka_timeout_s)
        return self.stats

    def stop(self) -> None:
        self.stop_requested.set()

    def _check_join(self, group: GroupMembership) -> None:
        """A member left unassigned (since it started, or since its partitions were revoked)
        for longer than the group's join bound stops with a broker error."""
        if not self._joined and time.monotonic() - self._unassigned_since > group.join_bound_s:
            raise BrokerUnavailableError(
                f"consumer group {group.group_id!r} at {self.bootstrap}: the coordinator assigned "
                f"this member no partitions within {group.join_bound_s:g} s "
                "(CXL_GROUP_JOIN_TIMEOUT_S); check the broker and the group's other members, "
                "then start again"
            )

    def _seal_pending(
        self, consumer: KafkaConsumer, dead_letters: DeadLetterQueue, partitions: list[int]
    ) -> None:
        """Seal everything fetched for ``partitions`` now, once fresh metadata vouches for it."""
        self._identity.refresh_now(self.settings.kafka_timeout_s)
        self._confirm_identity(consumer, dead_letters)
        for partition in partitions:
            self._flush(partition, dead_letters)

    def rebalanced(self, consumer: KafkaConsumer, dead_letters: DeadLetterQueue) -> set[int]:
        """Apply what the group decided since the last poll, in this (the sealing) thread: forget
        revoked partitions — what was fetched from them and not sealed is read again by their
        next owner — and position newly assigned ones from the position the ledger store recorded
        for them (whoever sealed them last; never an offset Kafka committed), then let them be
        fetched. Returns the partitions positioned now: records polled for them before are stale."""
        with self.sealing:
            revoked, self._revoked = self._revoked, set()
            assigned, self._assigned = self._assigned, set()
        for partition in revoked | assigned:
            for state in (self._epochs, self._probes, self._pending, self._since, self.stats.lag):
                state.pop(partition, None)
        for partition in sorted(assigned):
            self._position_partition(consumer, partition, dead_letters, fresh_log=False)
        if assigned:
            consumer.resume(*(TopicPartition(self._topic, p) for p in assigned))
        return revoked | assigned

    def drain(self) -> None:
        """Finish once every partition is caught up (as ``until_idle`` does), then return."""
        self.draining.set()

    def _measure_lag(self, consumer: KafkaConsumer) -> None:
        for tp in consumer.assignment():
            if tp.partition not in self._epochs:  # revoked, or not positioned yet
                continue
            highwater = consumer.highwater(tp)
            position = consumer.position(tp, timeout_ms=0)
            if highwater is not None and isinstance(position, int):
                pending = sum(len(m) for _, m in self._pending.get(tp.partition, []))
                self.stats.lag[tp.partition] = max(highwater - position + pending, 0)

    # -- positions and resets ------------------------------------------------------------------

    def _position_partition(
        self,
        consumer: KafkaConsumer,
        partition: int,
        dead_letters: DeadLetterQueue,
        *,
        fresh_log: bool,
    ) -> None:
        epoch = self.store.position(epoch_name(self._topic, partition)) or 0
        name = tracking_name(self._topic, partition, epoch)
        last = self.store.position(name)
        tp = TopicPartition(self._topic, partition)
        self._epochs[partition] = epoch
        if last is None:
            consumer.seek(tp, 0)
            return
        if fresh_log:
            # A broker this process started is a new, empty cluster: its offsets start a new epoch.
            self._reset(consumer, partition, dead_letters, last, "the embedded broker is new")
            return
        mark = self.store.source_mark(name)
        mismatch = mark_mismatch(last, mark)
        if mark is None or mismatch is not None:
            raise LedgerTamperedError(
                None,
                f"{mismatch}: the store was edited outside cx-ledger, run `cxl verify`",
                place=f"source position {name}",
            )
        topic_id, fingerprint = split_mark(mark.fingerprint)
        if NO_TOPIC_ID not in (topic_id, self._topic_id) and topic_id != self._topic_id:
            why = f"topic id {self._topic_id}, not {topic_id} as when last consumed"
            self._reset(consumer, partition, dead_letters, last, why)
            return
        # Read the last consumed record again: the same record, or another log.
        self._probes[partition] = (last, fingerprint)
        consumer.seek(tp, last)

    def _check_probe(
        self,
        consumer: KafkaConsumer,
        partition: int,
        messages: list[Any],
        dead_letters: DeadLetterQueue,
    ) -> list[Any]:
        """Drop the re-read record at the resume position once it proves the log is the same."""
        probe = self._probes.pop(partition, None)
        if probe is None:
            return messages
        offset, fingerprint = probe
        first = messages[0]
        if first.offset == offset and record_fingerprint(first) == fingerprint:
            return messages[1:]
        why = (
            f"the record at offset {offset} is not the one consumed there"
            if first.offset == offset
            else f"offset {offset} is gone (the log starts again at {first.offset})"
        )
        self._reset(consumer, partition, dead_letters, offset, why)
        return []

    def _detect_resets(self, consumer: KafkaConsumer, dead_letters: DeadLetterQueue) -> None:
        for partition in list(self._epochs):
            tp = TopicPartition(self._topic, partition)
            high = consumer.highwater(tp)
            if high is None:
                continue
            probe = self._probes.get(partition)
            if probe is not None and high <= probe[0]:
                why = f"it holds {high} records, fewer than the {probe[0] + 1} consumed"
                self._reset(consumer, partition, dead_letters, probe[0], why)
                continue
            position = consumer.position(tp)
            if position is not None and high < position:
                why = f"its high watermark {high} is below the resume position {position}"
                self._reset(consumer, partition, dead_letters, position - 1, why)

    def _confirm_identity(self, consumer: KafkaConsumer, dead_letters: DeadLetterQueue) -> None:
        """The topic id as of the latest metadata refresh must be the one positions were read in."""
        current = self._identity.current()
        if current == self._topic_id or NO_TOPIC_ID in (current, self._topic_id):
            return
        why = f"its topic id changed from {self._topic_id} to {current} while consuming"
        previous, self._topic_id = self._topic_id, current
        try:
            for partition in list(self._epochs):
                resume = consumer.position(TopicPartition(self._topic, partition)) or 0
                self._reset(consumer, partition, dead_letters, resume - 1, why)
        except LogResetError:
            self._topic_id = previous
            raise

    def _reset(
        self,
        consumer: KafkaConsumer,
        partition: int,
        dead_letters: DeadLetterQueue,
        resume_at: int,
        why: str,
    ) -> None:
        if not (self.owns_broker or self.accept_reset):
            raise LogResetError(self._topic, partition, resume_at, why)
        # What was fetched before the reset was noticed is sealed under the old epoch; anything
        # in it that came from the new log is read again in the new epoch as a duplicate.
        self._flush(partition, dead_letters)
        self._probes.pop(partition, None)
        s = self.settings
        ensure_topics(self.bootstrap, s.topics, s.kafka_timeout_s)
        if not self.owns_broker:  # a restarted broker leaves the old producer broken for good
            fresh = make_producer(self.bootstrap, s.kafka_timeout_s)
            close_producer(dead_letters.replace_producer(fresh), 0)
        self._epochs[partition] = self._new_epoch(partition, self._epochs[partition])
        consumer.seek(TopicPartition(self._topic, partition), 0)

    def _new_epoch(self, partition: int, epoch: int) -> int:
        self.store.record_position(Tracking(epoch_name(self._topic, partition), epoch + 1))
        self.stats.resets += 1
        return epoch + 1

    def _caught_up(self, consumer: KafkaConsumer) -> bool:
        if not self._joined:
            return False
        for partition in self._epochs:
            if partition in self._probes:
                return False
            tp = TopicPartition(self._topic, partition)
            high = consumer.highwater(tp)
            position = consumer.position(tp)
            if high is None:
                # Nothing fetched yet for this partition: caught up only if it never had records
                # (in a group, not before a first fetch after the assignment has said so).
                if position not in (None, 0) or self.settings.consumer_group is not None:
                    return False
                continue
            if position is None or position < high:
                return False
        return True

    # -- one batch -----------------------------------------------------------------------------

    def _flush(
        self, partition: int, dead_letters: DeadLetterQueue, *, vouched_only: bool = False
    ) -> None:
        """Seal the partition's pending records (with ``vouched_only``, those a completed metadata
        refresh vouches for), in transactions of at most ``batch_size``."""
        chunks = self._pending.pop(partition, [])
        ready: list[Any] = []
        while chunks and (not vouched_only or chunks[0][0] <= self._identity.generation):
            ready += chunks.pop(0)[1]
        if chunks:
            self._pending[partition] = chunks
            self._identity.required_generation()  # keep refreshes coming for the rest
        else:
            self._since.pop(partition, None)
        size = self.settings.batch_size
        for start in range(0, len(ready), size):
            self._process(partition, ready[start : start + size], dead_letters)

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

        with self.sealing:
            if partition in self._revoked:
                return  # the group took it away meanwhile: its next owner reads these again
            report = self.store.seal(
                batch.valid,
                tracking,
                before_commit=dead_letter_refusals,
                mark=source_mark(self._topic_id, messages[-1]),
            )
        self.stats.consumed += len(messages)
        if not report.already_done:
            self.stats.add(report)
            self.stats.dead_lettered += len(batch.invalid) + len(report.rejected)
            self.stats.invalid += len(batch.invalid)
            self.stats.conflicts += len(report.rejected)
