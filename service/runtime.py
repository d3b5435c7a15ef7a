"""What ``cxl serve`` keeps running behind the HTTP server, each in its own thread.

- the **ingest pipeline** (consume → seal, relay, checkpoints; ``consumers.pipeline``);
- the **live projector**: the projections caught up continuously (not only when asked), and a
  copy published for other processes when they ask (``projections.served``);
- the **alerter**: alerts due (at risk, overdue, broken, complaint SLAs) published to
  ``cx.alerts``, each once (``consumers.alerts``);
- the **verifier**: the whole ledger re-verified whenever it grew, at most every
  ``VERIFY_EVERY_S`` and at most ``WHOLE_PASS_SHARE`` of the time (``paced``), so the dashboard
  and ``/v1/verify`` state what was last proved, and when.

A component that fails records its error and sets ``failed``: the server then stops (exit
non-zero) rather than serve figures that no longer move.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from consumers.alerts import AlertLog, AlertLogBusyError, AlertPublisher
from consumers.checkpoints import CheckpointPublisher
from consumers.ingest import IngestStats
from consumers.pipeline import IngestPipeline
from ledger.audit import verify_chains
from ledger.errors import (
    BrokerUnavailableError,
    ChainBrokenError,
    CxlError,
    LedgerTamperedError,
)
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.alerts import alerts_due
from projections.errors import ProjectionsError
from projections.follower import catch_up
from projections.live import open_caught_up
from projections.schema import applied_position
from projections.served import SNAPSHOT_NAME, publish_snapshot

log = logging.getLogger("cxl.serve")
T = TypeVar("T")
SHUTDOWN_WAIT_S = 30.0
RETRY_S = 5.0

VERIFY_EVERY_S = 120.0
PROJECT_EVERY_S = 1.0
PUBLISH_EVERY_S = 30.0
WHOLE_PASS_SHARE = 0.1


def paced(took_s: float, every_s: float) -> float:
    """Seconds until the next pass over the whole ledger or the whole projections file (a
    verification, a published copy), after one that took ``took_s``: at least ``every_s``, and
    long enough that such passes take at most ``WHOLE_PASS_SHARE`` of the service's time — when
    one takes minutes, ingest and readers are not starved by repeating it."""
    return max(every_s, took_s / WHOLE_PASS_SHARE - took_s)


class Component:
    """A named background thread; its first unexpected error is kept and reported."""

    name = "component"
    stop_wait_s = 20.0
    """How long the service waits for it to finish when stopping."""

    def __init__(self, stopping: threading.Event, on_failure: Callable[[Component], None]) -> None:
        self.stopping = stopping
        self.error: BaseException | None = None
        self._on_failure = on_failure
        self._thread = threading.Thread(target=self._guarded, name=f"cxl-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _guarded(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self.error = exc
            log.error("%s stopped: %s", self.name, exc)
            self._on_failure(self)

    def run(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask the component to finish; ``stopping`` is shared and set by the service too."""


class IngestComponent(Component):
    """The ingest pipeline, built in its own thread (a SQLite connection stays in the thread
    that opened it)."""

    name = "ingest"

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        owns_broker: bool,
        stopping: threading.Event,
        on_failure: Callable[[Component], None],
    ) -> None:
        super().__init__(stopping, on_failure)
        self.settings = settings
        self.bootstrap = bootstrap
        self.owns_broker = owns_broker
        self.pipeline: IngestPipeline | None = None
        self.started = threading.Event()
        self.broker_error: str | None = None

    @property
    def stats(self) -> IngestStats:
        return IngestStats() if self.pipeline is None else self.pipeline.stats

    @property
    def checkpoints(self) -> CheckpointPublisher | None:
        return None if self.pipeline is None else self.pipeline.checkpoints

    def run(self) -> None:
        """Run the pipeline; when a configured broker goes away, say so (``broker_error``, not
        ready) and start again every ``RETRY_S`` until it answers: a service outlives a broker
        outage. Losing the embedded broker (memory only, every topic with it) is fatal."""
        with LedgerStore.for_settings(self.settings) as store:
            while not self.stopping.is_set():
                self.pipeline = IngestPipeline(
                    self.settings, store, self.bootstrap, owns_broker=self.owns_broker
                )
                self.started.set()
                try:
                    self.pipeline.run()
                except BrokerUnavailableError as exc:
                    if self.owns_broker:
                        raise  # the embedded broker is gone with every topic: nothing to wait for
                    self.broker_error = str(exc)
                    log.error("ingest: %s; retrying in %.0f s", exc, RETRY_S)
                    self.stopping.wait(RETRY_S)
                    continue
                self.broker_error = None
                if not self.stopping.is_set():
                    raise CxlError("the ingest consumer returned without being asked to stop")

    def stop(self) -> None:
        """With a broker of its own (memory only), seal everything accepted before it goes:
        drain the events topic first, and stop outright only if that takes too long."""
        self.started.wait(SHUTDOWN_WAIT_S)
        if self.pipeline is None:
            return
        if self.owns_broker:
            self.pipeline.drain()
            if self.join(SHUTDOWN_WAIT_S):
                return
            log.error("the events topic did not drain within %.0f s; stopping", SHUTDOWN_WAIT_S)
        self.pipeline.stop()


class BrokerWatch(Component):
    """The embedded broker holds every topic in memory: when its process ends, the service ends
    (exit 5) rather than wait on a port where another broker may start."""

    name = "broker-watch"
    stop_wait_s = 2.0

    def __init__(
        self,
        running: Callable[[], bool],
        stopping: threading.Event,
        on_failure: Callable[[Component], None],
    ) -> None:
        super().__init__(stopping, on_failure)
        self._running = running

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            if not self._running():
                raise BrokerUnavailableError(
                    "the embedded broker exited, and every topic with it (memory only)"
                )


class LedgerReader:
    """The ledger, read-only, for request handlers: one thread owns the connection and runs
    each question in turn."""

    def __init__(self, settings: Settings) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxl-ledger-reader")
        self._store: LedgerStore | None = None
        self._settings = settings

    def ask(self, question: Callable[[LedgerStore], T]) -> T:
        return self._pool.submit(self._answer, question).result()

    def _answer(self, question: Callable[[LedgerStore], T]) -> T:
        if self._store is None:
            self._store = LedgerStore.for_settings(self._settings, read_only=True)
        return question(self._store)

    def close(self) -> None:
        def closing() -> None:
            if self._store is not None:
                self._store.close()

        self._pool.submit(closing).result()
        self._pool.shutdown()


class LiveProjector(Component):
    """Keeps the projections caught up (every ``PROJECT_EVERY_S``) through their only read-write
    connection; request handlers get cursors of it. The copy for other processes is published
    when one of them asks (``copy_wanted``) and otherwise at most every ``PUBLISH_EVERY_S``
    (``paced``: a copy costs a pass over the whole file)."""

    name = "projector"

    def __init__(
        self,
        settings: Settings,
        stopping: threading.Event,
        on_failure: Callable[[Component], None],
        copy_wanted: threading.Event | None = None,
    ) -> None:
        super().__init__(stopping, on_failure)
        self.settings = settings
        self.position = 0
        self.ledger_position = 0
        self.caught_up_at: datetime | None = None
        self.ready = threading.Event()
        self.copy_wanted = copy_wanted or threading.Event()
        """Set (on SIGUSR1, from a reader in another process) to publish a fresh copy now."""
        self._con: Any = None
        self._lock = threading.Lock()

    @property
    def lag(self) -> int:
        """Sealed events not yet in the projections."""
        return max(self.ledger_position - self.position, 0)

    def cursor(self) -> Any:
        """A connection of one's own to the live projections (close it when done)."""
        with self._lock:
            if self._con is None:
                raise ProjectionsError("the projections are not open yet; try again in a moment")
            return self._con.cursor()

    def ask(self, question: Callable[[Any], T]) -> T:
        """``question`` asked of a cursor of one's own, closed afterwards."""
        cursor = self.cursor()
        try:
            return question(cursor)
        finally:
            cursor.close()

    def run(self) -> None:
        snapshot = self.settings.home / SNAPSHOT_NAME
        with LedgerStore.for_settings(self.settings, read_only=True) as store:
            con = open_caught_up(
                self.settings.projections_path,
                store,
                on_rebuild=lambda why: log.info("rebuilding the projections: %s", why),
                within=self.settings.horizon,
            )
            with self._lock:
                self._con = con
            try:
                published = -1
                published_at = 0.0
                publish_every = PUBLISH_EVERY_S
                while True:
                    catch_up(con, store)
                    self.position = applied_position(con)
                    self.ledger_position = max(store.max_position(), self.position)
                    self.caught_up_at = datetime.now(UTC)
                    now = time.monotonic()
                    asked = self.copy_wanted.is_set()
                    if self.position != published and (
                        asked or now - published_at >= publish_every
                    ):
                        self.copy_wanted.clear()
                        publish_snapshot(con, snapshot)
                        published, published_at = self.position, time.monotonic()
                        publish_every = paced(published_at - now, PUBLISH_EVERY_S)
                    elif asked:
                        self.copy_wanted.clear()
                    self.ready.set()
                    if self.stopping.wait(PROJECT_EVERY_S):
                        break
            finally:
                with self._lock:
                    self._con = None
                con.close()


class Alerter(Component):
    """Publishes the alerts due (``projections.alerts``) every ``CXL_ALERTS_INTERVAL_S``, from
    the live projections once they are caught up. A broker that does not answer is logged and
    tried again next round: alerts wait, nothing else stops."""

    name = "alerter"
    stop_wait_s = 2.0  # holds nothing to flush: an alert sent and not yet recorded is sent again

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        projector: LiveProjector,
        stopping: threading.Event,
        on_failure: Callable[[Component], None],
    ) -> None:
        super().__init__(stopping, on_failure)
        self.settings = settings
        self.bootstrap = bootstrap
        self.projector = projector
        self.last_round_at: datetime | None = None
        self.error_text: str | None = None
        self.published = 0

    def run(self) -> None:
        while not self.projector.ready.wait(PROJECT_EVERY_S):
            if self.stopping.is_set():
                return
        while True:
            try:
                log_ = AlertLog(self.settings.alerts_log_path)
                break
            except AlertLogBusyError as exc:  # a `cxl alerts` holds it: serve reads on
                log.error(
                    "alerts: %s; trying again in %.0f s", exc, self.settings.alerts_interval_s
                )
                if self.stopping.wait(self.settings.alerts_interval_s):
                    return
        publisher = AlertPublisher(
            log_, self.bootstrap, self.settings.alerts_topic, self.settings.kafka_timeout_s
        )
        try:
            while not self.stopping.is_set():
                now = datetime.now(UTC)
                alerts = self.projector.ask(partial(alerts_due, settings=self.settings, now=now))
                if self.stopping.is_set():
                    break
                try:
                    sent = publisher.publish(alerts)
                    self.error_text = None
                    if sent:
                        log.info("published %d new alerts to %s", sent, self.settings.alerts_topic)
                except BrokerUnavailableError as exc:
                    self.error_text = str(exc)
                    log.error("alerts: %s", exc)
                self.published = publisher.published
                self.last_round_at = now
                self.stopping.wait(self.settings.alerts_interval_s)
        finally:
            log_.close()


@dataclass(frozen=True)
class Verification:
    """The outcome of the last verification of the whole ledger."""

    ok: bool
    at: datetime
    position: int
    row: dict[str, Any] | None
    summary: str


class LedgerVerifier(Component):
    name = "verifier"

    def __init__(
        self, settings: Settings, stopping: threading.Event, on_failure: Callable[[Component], None]
    ) -> None:
        super().__init__(stopping, on_failure)
        self.settings = settings
        self.last: Verification | None = None

    def run(self) -> None:
        with LedgerStore.for_settings(self.settings, read_only=True) as store:
            verified = -1
            while not self.stopping.is_set():
                position = store.max_position()
                pause = VERIFY_EVERY_S
                if position != verified:
                    started = time.monotonic()
                    self.last = self._verify(store, position)
                    verified = position
                    took = time.monotonic() - started
                    pause = paced(took, VERIFY_EVERY_S)
                    log.info("verified %s in %.1f s; next check in %.0f s", position, took, pause)
                if self.stopping.wait(pause):
                    break

    def _verify(self, store: LedgerStore, position: int) -> Verification:
        at = datetime.now(UTC)
        try:
            report = verify_chains(store)
        except (ChainBrokenError, LedgerTamperedError) as exc:
            log.error("cxl verify FAILED: %s", exc)
            return Verification(False, at, position, None, f"cxl verify FAILED: {exc}")
        return Verification(True, at, report.events, report.as_row(), report.summary())
