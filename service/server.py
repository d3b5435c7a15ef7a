"""``cxl serve``: the ledger as a long-running service, in one process tree.

Start-up: the broker (embedded when ``CXL_KAFKA_BOOTSTRAP`` is unset), the topics, the lock that
makes this the only writer of the projections on ``CXL_HOME``, then the ingest pipeline, the live
projector and the verifier (``service.runtime``), and the HTTP server. SIGTERM or SIGINT: the HTTP
server stops taking requests and finishes those in flight, then ingest seals and commits the
batches it holds, a last checkpoint is published, and the process exits 0 — within
``SHUTDOWN_S`` per stage. A component that fails stops the whole service with its error.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import uvicorn

from consumers.broker import wait_for_port
from consumers.kafka_access import kafka_access
from consumers.topics import ensure_topics
from ledger.errors import ConfigError, CxlError
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.served import SNAPSHOT_NAME, ServingLock
from service.access import AccessKeys, RateLimiter
from service.intake import EventIntake
from service.metrics import Readings, RequestLatency, registry_of
from service.runtime import (
    Alerter,
    BrokerWatch,
    Component,
    IngestComponent,
    LedgerReader,
    LedgerVerifier,
    LiveProjector,
)

log = logging.getLogger("cxl.serve")

SHUTDOWN_S = 20.0


@dataclass
class HttpCounters:
    accepted: int = 0
    rejected: int = 0


class Service:
    """Everything a request handler may use, and the lifecycle of what runs behind them."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        owns_broker: bool,
        copy_wanted: threading.Event | None = None,
        broker_running: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.owns_broker = owns_broker
        self.stopping = threading.Event()
        self.failure: Component | None = None
        self.on_failure: Callable[[], None] = lambda: None
        self.access = AccessKeys(settings.access_keys_path)
        self.limiter = RateLimiter()
        self.intake = EventIntake(bootstrap, settings.events_topic, settings.kafka_timeout_s)
        self.http = HttpCounters()
        self.latency = RequestLatency()
        self.registry = registry_of(self.readings, self.latency)
        self.ingest = IngestComponent(settings, bootstrap, owns_broker, self.stopping, self._failed)
        self.projector = LiveProjector(settings, self.stopping, self._failed, copy_wanted)
        self.verifier = LedgerVerifier(settings, self.stopping, self._failed)
        self.alerter = Alerter(settings, bootstrap, self.projector, self.stopping, self._failed)
        self.broker_watch = (
            None
            if broker_running is None
            else BrokerWatch(broker_running, self.stopping, self._failed)
        )
        self.ledger = LedgerReader(settings)
        self.started_at = time.time()

    @property
    def components(self) -> tuple[Component, ...]:
        """What runs behind the API; in a consumer group (other hosts seal too) alerts are
        published apart, once per ledger (`cxl alerts`), as the relay is (`cxl relay`)."""
        running: tuple[Component, ...] = (self.ingest, self.projector, self.verifier)
        if self.settings.consumer_group is None:
            running += (self.alerter,)
        if self.broker_watch is not None:
            running += (self.broker_watch,)
        return running

    def _failed(self, component: Component) -> None:
        if self.failure is None and not self.stopping.is_set():
            self.failure = component
            self.on_failure()

    def start(self) -> None:
        for component in self.components:
            component.start()

    def stop(self) -> None:
        """Finish in-flight batches and stop every component (each within ``SHUTDOWN_S``)."""
        self.stopping.set()
        for component in self.components:
            component.stop()
        for component in self.components:
            if not component.join(component.stop_wait_s):
                log.error("%s did not stop within %.0f s", component.name, component.stop_wait_s)
        self.intake.close()
        self.ledger.close()

    def readings(self) -> Readings:
        stats = self.ingest.stats
        checkpoints = self.ingest.checkpoints
        published_at = None if checkpoints is None else checkpoints.last_published_at
        verification = self.verifier.last
        return Readings(
            sealed=stats.sealed,
            rejected=stats.invalid,
            duplicates=stats.duplicates,
            conflicts=stats.conflicts,
            refused_erased=stats.erased,
            dead_lettered=stats.dead_lettered,
            relayed=stats.relayed,
            checkpoints=0 if checkpoints is None else checkpoints.published,
            accepted_http=self.http.accepted,
            rejected_http=self.http.rejected,
            consumer_lag=dict(stats.lag),
            projected_position=self.projector.position,
            ledger_position=self.projector.ledger_position,
            checkpoint_age_s=None if published_at is None else time.time() - published_at,
            verified_ok=None if verification is None else verification.ok,
            alerts_published=self.alerter.published,
        )

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` checks: the broker and the store answer, the projections keep up."""
        checks: dict[str, Any] = {}
        position = self.projector.ledger_position
        try:
            position = self.ledger.ask(lambda store: store.max_position())
            checks["store"] = {"ok": True, "position": position}
        except Exception as exc:  # any failure to answer is "not ready", said as such
            checks["store"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        first = self.bootstrap.split(",")[0]
        host, _, port = first.rpartition(":")
        try:
            wait_for_port(host or "127.0.0.1", int(port), 1.0)
            problem = self.ingest.broker_error
            checks["broker"] = {"ok": self.ingest.alive and problem is None}
            if problem is not None:
                checks["broker"]["error"] = problem
        except CxlError as exc:
            checks["broker"] = {"ok": False, "error": str(exc)}
        checks["broker"]["bootstrap"] = self.bootstrap
        lag = max(position - self.projector.position, 0)
        checks["projections"] = {
            "ok": self.projector.ready.is_set() and lag <= self.settings.serve_max_lag,
            "lag": lag,
            "max_lag": self.settings.serve_max_lag,
        }
        checks["ok"] = all(c["ok"] for c in checks.values() if isinstance(c, dict))
        return checks


def serve(settings: Settings, say: Callable[[str], None]) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or a component's failure (its exit code)."""
    from service.app import create_app
    from service.logs import configure_logging

    configure_logging(settings.log_format)
    if settings.consumer_group is not None and settings.is_embedded:
        raise ConfigError(
            f"CXL_CONSUMER_GROUP {settings.consumer_group}: a group shares a broker with other "
            "hosts; set CXL_KAFKA_BOOTSTRAP (the embedded broker is this process's alone)"
        )
    # Readers signal the pid in the lock as soon as it is there: SIGUSR1 must never end us.
    copy_wanted = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: copy_wanted.set())
    AccessKeys(settings.access_keys_path).check()
    lock = ServingLock(settings.home)
    with ExitStack() as stack:
        lock.acquire("starting")
        stack.callback(lock.release)
        # Its copy for other terminals means something only while it runs.
        stack.callback((settings.home / SNAPSHOT_NAME).unlink, missing_ok=True)
        listening = stack.enter_context(_listen(settings.http_host, settings.http_port))
        kafka = stack.enter_context(kafka_access(settings, may_embed=True))
        ensure_topics(kafka.bootstrap, settings.topics, settings.kafka_timeout_s)
        LedgerStore.for_settings(settings).close()  # created (or checked) before anyone reads it
        broker = kafka.broker
        watched = None if broker is None else (lambda: broker.running)
        service = Service(settings, kafka.bootstrap, kafka.owns_broker, copy_wanted, watched)
        app = create_app(service)
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(SHUTDOWN_S),
            server_header=False,
            proxy_headers=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        service.on_failure = lambda: setattr(server, "should_exit", True)
        service.start()
        stack.callback(service.stop)
        announce = threading.Thread(
            target=_announce, args=(server, settings, lock, kafka.bootstrap, say), daemon=True
        )
        announce.start()
        # uvicorn restores the handlers it found and re-raises the signal it caught once it has
        # shut down: these make that re-raise a no-op instead of killing the process before
        # ingest has committed.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
        server.run(sockets=[listening])
    if service.failure is not None and service.failure.error is not None:
        error = service.failure.error
        if isinstance(error, CxlError):
            raise error
        raise CxlError(f"{service.failure.name} failed: {type(error).__name__}: {error}")
    return 0


def _announce(
    server: uvicorn.Server,
    settings: Settings,
    lock: ServingLock,
    bootstrap: str,
    say: Callable[[str], None],
) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if not server.started:
        return
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    lock.announce(url)
    say(f"serving on {url} (dashboard {url}/, OpenAPI {url}/openapi.json); Kafka at {bootstrap}")


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything starts: a port in use is said at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted connections: without it a keep-alive response waits ~40 ms for the
    # client's delayed ACK (measured: 44 ms a request instead of 2.5).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"cannot listen on {host}:{port}: {reason} (CXL_HTTP_HOST/--host, CXL_HTTP_PORT/--port)"
        ) from None
    return sock
