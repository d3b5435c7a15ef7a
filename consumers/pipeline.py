"""The ingest pipeline as one object: consume and seal (in this process, or in one worker process
per share of the partitions), relay, and publish checkpoints — what ``cxl consume``, ``cxl demo``
and ``cxl serve`` all run, wired in one place."""

from __future__ import annotations

from collections.abc import Callable

from consumers.checkpoints import CheckpointPublisher
from consumers.ingest import IngestConsumer, IngestStats
from consumers.relay import LedgerRelay
from consumers.workers import ParallelIngest
from ledger.settings import Settings
from ledger.store import LedgerStore


class IngestPipeline:
    """``settings.ingest_workers`` sealing processes (this one when 1), the relay to the ledger
    topic (unless ``relay=False``, or in a consumer group) and the checkpoint publisher, run until
    stopped or idle. In a consumer group (``CXL_CONSUMER_GROUP``) each worker is a member of it.

    ``stop()`` may be called from any thread or a signal handler: the batches in flight are sealed
    and committed, a last checkpoint is published, and ``run`` returns the totals.
    """

    def __init__(
        self,
        settings: Settings,
        store: LedgerStore,
        bootstrap: str,
        *,
        owns_broker: bool,
        accept_reset: bool = False,
        relay: bool = True,
        on_progress: Callable[[IngestStats], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        # In a consumer group, processes on other hosts seal too: one relay per ledger runs apart.
        relay = relay and settings.consumer_group is None
        self.relay = LedgerRelay.for_settings(store, bootstrap, settings) if relay else None
        self.checkpoints = CheckpointPublisher.for_settings(store, bootstrap, settings)
        self.runner: ParallelIngest | IngestConsumer
        if settings.ingest_workers > 1:
            self.runner = ParallelIngest(
                settings,
                bootstrap,
                workers=settings.ingest_workers,
                owns_broker=owns_broker,
                accept_reset=accept_reset,
                relay=self.relay,
                checkpoints=self.checkpoints,
                on_progress=on_progress,
            )
        else:
            self.runner = IngestConsumer(
                settings,
                store,
                bootstrap,
                owns_broker=owns_broker,
                accept_reset=accept_reset,
                relay=self.relay,
                checkpoints=self.checkpoints,
                on_progress=on_progress,
            )

    @property
    def stats(self) -> IngestStats:
        """The totals so far (updated as batches are sealed)."""
        return self.runner.stats

    def stop(self) -> None:
        self.runner.stop()

    def drain(self) -> None:
        """Finish once everything on the events topic is sealed (``run`` then returns)."""
        self.runner.drain()

    def run(self, *, until_idle: bool = False) -> IngestStats:
        try:
            if isinstance(self.runner, ParallelIngest):
                stats = self.runner.run(self.store, until_idle=until_idle)
            else:
                stats = self.runner.run(until_idle=until_idle)
            stats.checkpoints += self.checkpoints.maybe_publish(final=True)
            return stats
        finally:
            self.checkpoints.close()
            if self.relay is not None:
                self.relay.close()
