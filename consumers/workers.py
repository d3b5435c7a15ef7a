"""Parallel ingest: one process per share of the events topic's partitions.

A customer's events live on one partition (publishers key by ``customer_id``), so each worker owns
its customers' chains outright: workers never need each other's state, only the store's lock for
the moment of a commit. Python runs one thread at a time per process, so on a multi-core machine
this is how ingest uses more than one core. If a publisher mis-keys and a customer shows up on two
partitions, the store's optimistic concurrency catches it and the later writer re-reads and retries.

Workers are spawned (not forked: no client or connection is shared), stop with the parent (they
check that it is alive on every poll) and report errors back as one-line messages with exit codes.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from consumers.checkpoints import CheckpointPublisher
from consumers.ingest import IngestConsumer, IngestStats, discover_partitions
from consumers.relay import LedgerRelay
from ledger.errors import CxlError
from ledger.settings import Settings
from ledger.store import LedgerStore

_COUNTERS = ("consumed", "sealed", "duplicates", "erased", "dead_lettered", "invalid", "conflicts")


class WorkerFailedError(CxlError):
    """An ingest worker stopped with an error; the others were stopped too."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _worker(
    index: int,
    settings_json: str,
    bootstrap: str,
    partitions: list[int] | None,
    owns_broker: bool,
    accept_reset: bool,
    until_idle: bool,
    stop: Any,
    drain: Any,
    progress: Any,
    lag: Any,
    results: Any,
    parent: int,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        settings = Settings.model_validate_json(settings_json)
        with LedgerStore.for_settings(settings) as store:
            consumer = IngestConsumer(
                settings,
                store,
                bootstrap,
                owns_broker=owns_broker,
                accept_reset=accept_reset,
                partitions=partitions,
            )
            signal.signal(signal.SIGTERM, lambda *_: consumer.stop())

            reported: set[int] = set()

            def report(stats: IngestStats) -> None:
                for i, name in enumerate(_COUNTERS):
                    progress[index * len(_COUNTERS) + i] = getattr(stats, name)
                for partition in reported - stats.lag.keys():  # moved to another group member
                    lag[partition] = -1
                for partition, behind in stats.lag.items():
                    lag[partition] = behind
                reported.clear()
                reported.update(stats.lag)
                if stop.is_set() or os.getppid() != parent:
                    consumer.stop()
                if drain.is_set():
                    consumer.drain()

            consumer.on_progress = report
            stats = consumer.run(until_idle=until_idle)
        results.put((index, "ok", 0, {f.name: getattr(stats, f.name) for f in fields(stats)}))
    except CxlError as exc:
        results.put((index, "error", exc.exit_code, str(exc)))
    except BaseException as exc:  # reported, then the parent fails loudly
        results.put((index, "error", 1, f"{type(exc).__name__}: {exc}"))


class ParallelIngest:
    """Runs ``workers`` ingest processes over disjoint partition shares; the relay runs here."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        *,
        workers: int,
        owns_broker: bool = False,
        accept_reset: bool = False,
        relay: LedgerRelay | None = None,
        checkpoints: CheckpointPublisher | None = None,
        on_progress: Callable[[IngestStats], None] | None = None,
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.workers = workers
        self.owns_broker = owns_broker
        self.accept_reset = accept_reset
        self.relay = relay
        self.checkpoints = checkpoints
        self.on_progress = on_progress
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._drain = self._context.Event()
        self.stats = IngestStats()

    def stop(self) -> None:
        self._stop.set()

    def drain(self) -> None:
        """Let every worker finish once its partitions are caught up."""
        self._drain.set()

    def run(self, store: LedgerStore, *, until_idle: bool = False) -> IngestStats:
        partitions = discover_partitions(self.settings, self.bootstrap)
        shares: list[list[int] | None] = [
            share for share in (partitions[i :: self.workers] for i in range(self.workers)) if share
        ]
        if self.settings.consumer_group is not None:  # each worker a member; the group assigns
            shares = [None] * self.workers
        progress = self._context.Array("q", len(shares) * len(_COUNTERS), lock=False)
        lag = self._context.Array("q", [-1] * (max(partitions, default=0) + 1), lock=False)
        results = self._context.Queue()
        processes = [
            self._context.Process(
                target=_worker,
                name=f"cxl-ingest-{i}",
                args=(
                    i,
                    self.settings.model_dump_json(),
                    self.bootstrap,
                    share,
                    self.owns_broker,
                    self.accept_reset,
                    until_idle,
                    self._stop,
                    self._drain,
                    progress,
                    lag,
                    results,
                    os.getpid(),
                ),
                daemon=True,
            )
            for i, share in enumerate(shares)
        ]
        for process in processes:
            process.start()
        finished: dict[int, dict[str, Any]] = {}

        def take_result(timeout: float) -> bool:
            try:
                index, outcome, exit_code, payload = results.get(timeout=timeout)
            except queue.Empty:
                return False
            if outcome != "ok":
                raise WorkerFailedError(f"ingest worker {index}: {payload}", exit_code)
            finished[index] = payload
            return True

        try:
            while len(finished) < len(processes):
                took = take_result(0.2)
                if not took and not any(p.is_alive() for p in processes) and not take_result(2):
                    raise WorkerFailedError("an ingest worker died without a word (killed?)", 1)
                self._publish_progress(progress, len(shares), lag)
        finally:
            self._stop.set()
            for process in processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
        totals = IngestStats(
            started=self.stats.started,
            relayed=self.stats.relayed,
            checkpoints=self.stats.checkpoints,
        )
        for payload in finished.values():
            totals.merge(IngestStats(**payload))
        self.stats = totals
        if self.relay is not None:
            while sent := self.relay.publish_pending():
                self.stats.relayed += sent
        if self.on_progress is not None:
            self.on_progress(self.stats)
        return self.stats

    def _publish_progress(self, progress: Any, workers: int, lag: Any) -> None:
        if self.relay is not None:
            self.stats.relayed += self.relay.publish_pending()
        if self.checkpoints is not None:
            self.stats.checkpoints += self.checkpoints.maybe_publish()
        for i, name in enumerate(_COUNTERS):
            setattr(self.stats, name, sum(progress[w * len(_COUNTERS) + i] for w in range(workers)))
        self.stats.lag = {p: behind for p, behind in enumerate(lag) if behind >= 0}
        if self.on_progress is not None:
            self.on_progress(self.stats)
