"""Signed checkpoints published while ``cxl consume`` runs, so copies live outside the operator's
store: whoever reads ``cx.checkpoints`` can later prove the ledger against any of them."""

from __future__ import annotations

import time

from kafka import KafkaProducer
from kafka.errors import KafkaError

from consumers.kafka_clients import make_producer
from consumers.topics import ensure_topics
from ledger.checkpoint import Checkpoint, CheckpointSigner
from ledger.errors import BrokerUnavailableError
from ledger.settings import Settings
from ledger.store import LedgerStore


class CheckpointPublisher:
    """Signs a checkpoint of the store's Merkle tree after every ``every`` newly sealed events, or
    ``interval_s`` seconds after the last one when anything was sealed since, and publishes it to
    ``topic`` (one partition, keyed by the ledger's origin). A checkpoint counts as published only
    once the broker acknowledged it (``acks=all``)."""

    def __init__(
        self,
        store: LedgerStore,
        bootstrap: str,
        signer: CheckpointSigner,
        *,
        topic: str,
        every: int,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.signer = signer
        self.topic = topic
        self.every = every
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.published = 0
        self.last: Checkpoint | None = None
        self.last_note: str | None = None
        """The signed note of ``last``, as published."""
        self.last_published_at: float | None = None
        """When ``last`` was published (``time.time()``)."""
        self._covered = store.recorder.tree_size()
        self._at = time.monotonic()
        self._producer: KafkaProducer | None = None

    @classmethod
    def for_settings(
        cls, store: LedgerStore, bootstrap: str, settings: Settings
    ) -> CheckpointPublisher:
        return cls(
            store,
            bootstrap,
            CheckpointSigner(settings.checkpoint_key_path),
            topic=settings.checkpoints_topic,
            every=settings.checkpoint_every,
            interval_s=settings.checkpoint_interval_s,
            timeout_s=settings.kafka_timeout_s,
        )

    def maybe_publish(self, *, final: bool = False) -> int:
        """Publish a checkpoint when one is due (``final``: whenever anything is uncovered);
        returns how many were published (0 or 1)."""
        size = self.store.recorder.tree_size()
        if size == self._covered:
            return 0
        due = (
            final
            or size - self._covered >= self.every
            or time.monotonic() - self._at >= self.interval_s
        )
        if not due:
            return 0
        size, root = self.store.tree_root(size)
        checkpoint = Checkpoint(self.store.origin, size, root)
        note = self.signer.sign(checkpoint)
        self._send(checkpoint.origin, note)
        self._covered, self._at, self.last = size, time.monotonic(), checkpoint
        self.last_note, self.last_published_at = note, time.time()
        self.published += 1
        return 1

    def _send(self, origin: str, note: str) -> None:
        try:
            if self._producer is None:
                ensure_topics(self.bootstrap, {self.topic: 1}, self.timeout_s)
                self._producer = make_producer(self.bootstrap, self.timeout_s)
            future = self._producer.send(self.topic, key=origin.encode(), value=note.encode())
            future.get(timeout=self.timeout_s * 3)
        except KafkaError as exc:
            self.close()
            raise BrokerUnavailableError(
                f"could not publish a checkpoint to {self.topic}: {exc}"
            ) from exc

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.timeout_s)
            self._producer = None
