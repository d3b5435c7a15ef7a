"""Which Kafka a command talks to: the configured one, or an embedded broker it may start itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from consumers.broker import EmbeddedBroker, wait_for_port
from ledger.errors import BrokerUnavailableError, ConfigError
from ledger.settings import Settings


@dataclass(frozen=True)
class KafkaAccess:
    bootstrap: str
    owns_broker: bool
    broker: EmbeddedBroker | None = None
    """The embedded broker this command started (memory only), to notice it dying: a broker
    started later on the same port would otherwise be taken for it."""


NO_BROKER = (
    "no Kafka broker is configured, and an embedded one would vanish with this command and take "
    "its records along. Run `cxl broker` in another terminal, then "
    "CXL_KAFKA_BOOTSTRAP=127.0.0.1:<port> (or --bootstrap); `cxl demo` runs everything in one process."
)


@contextmanager
def kafka_access(settings: Settings, *, may_embed: bool) -> Iterator[KafkaAccess]:
    """Yield the broker to use; start (and stop) an embedded one only when ``may_embed``."""
    if settings.kafka_bootstrap:
        first = settings.kafka_bootstrap.split(",")[0]
        host, _, port = first.rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"CXL_KAFKA_BOOTSTRAP {settings.kafka_bootstrap!r} is not host:port")
        try:
            wait_for_port(host or "127.0.0.1", int(port), min(settings.kafka_timeout_s, 5.0))
        except BrokerUnavailableError as exc:
            raise BrokerUnavailableError(
                f"no Kafka broker answers at {settings.kafka_bootstrap}: {exc}. Check "
                "CXL_KAFKA_BOOTSTRAP, or start one with `cxl broker`."
            ) from exc
        yield KafkaAccess(settings.kafka_bootstrap, owns_broker=False)
        return
    if not may_embed:
        raise ConfigError(NO_BROKER)
    with EmbeddedBroker(log_dir=settings.home) as broker:
        yield KafkaAccess(broker.bootstrap, owns_broker=True, broker=broker)
