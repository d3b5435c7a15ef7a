"""Kafka clients with bounded timeouts, created lazily, the only place they are configured.

Every call that can wait on a broker is bounded so that a dead broker is reported in seconds
(DESIGN.md: ``committed()`` without a timeout blocked for minutes on the test broker).
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaConfigurationError, KafkaError

from ledger.errors import BrokerUnavailableError


def _timeouts(timeout_s: float) -> dict[str, Any]:
    ms = int(timeout_s * 1000)
    return {
        "request_timeout_ms": ms,
        "bootstrap_timeout_ms": ms,
        "reconnect_backoff_max_ms": 1000,
    }


def _unreachable(bootstrap: str, exc: Exception) -> BrokerUnavailableError:
    return BrokerUnavailableError(
        f"no Kafka broker answers at {bootstrap} ({exc.__class__.__name__}). Check "
        "CXL_KAFKA_BOOTSTRAP / --bootstrap, or run a local one with `cxl broker`."
    )


def make_producer(bootstrap: str, timeout_s: float, **overrides: Any) -> KafkaProducer:
    """Idempotent, ``acks=all`` producer: a retried send is never written twice to a partition."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap.split(","),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_block_ms": int(timeout_s * 1000),
        "delivery_timeout_ms": int(timeout_s * 3000),
        **_timeouts(timeout_s),
    }
    config["request_timeout_ms"] = min(config["request_timeout_ms"], config["delivery_timeout_ms"])
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except KafkaConfigurationError:
        raise
    except KafkaError as exc:
        raise _unreachable(bootstrap, exc) from exc


def make_consumer(bootstrap: str, timeout_s: float, max_poll_records: int = 5000) -> KafkaConsumer:
    """Manually assigned consumer (no group join: the store, not Kafka, holds positions)."""
    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_poll_records,
            fetch_max_wait_ms=200,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            **_timeouts(timeout_s),
        )
    except KafkaConfigurationError:
        raise
    except KafkaError as exc:
        raise _unreachable(bootstrap, exc) from exc


def make_admin(bootstrap: str, timeout_s: float) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), **_timeouts(timeout_s))
    except KafkaConfigurationError:
        raise
    except KafkaError as exc:
        raise _unreachable(bootstrap, exc) from exc
