"""Kafka clients with bounded timeouts, created lazily, the only place they are configured.

Every call that can wait on a broker is bounded so that a dead broker is reported in seconds
(DESIGN.md: ``committed()`` without a timeout blocked for minutes on the test broker).
"""

from __future__ import annotations

from dataclasses import dataclass
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


def close_producer(producer: KafkaProducer, timeout_s: float) -> None:
    """Close ``producer``, abandoning what it could not deliver within ``timeout_s``.

    Used after delivery outcomes were already collected: ``close`` raises when records are still
    unacknowledged (a broker that went away), and that must not hide the error being reported.
    """
    try:
        producer.close(timeout=timeout_s)
    except KafkaError:
        # close() flushes first and raises if that times out, leaving the I/O thread running and
        # the producer open (its __del__ would try again). kafka-python has no public way to
        # abandon unsent records, so stop the sender the way close() itself does after a timeout.
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        producer._closed = True


@dataclass(frozen=True)
class GroupMembership:
    """A consumer group to join (``CXL_CONSUMER_GROUP``) and its timing: the coordinator hands a
    silent member's partitions to others after ``session_timeout_s``; a member that does not poll
    for ``max_poll_interval_s`` leaves the group. A rebalance waits up to ``max_poll_interval_s``
    for every member to rejoin, so a healthy join ends within twice that plus a session; a member
    still unassigned after ``join_timeout_s`` gives up rather than wait on a coordinator that will
    never answer (kafka-python retries a join without bound)."""

    group_id: str
    session_timeout_s: float
    heartbeat_s: float
    max_poll_interval_s: float
    join_timeout_s: float | None = None

    @property
    def join_bound_s(self) -> float:
        if self.join_timeout_s is not None:
            return self.join_timeout_s
        return 2 * self.max_poll_interval_s + self.session_timeout_s

    def config(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "session_timeout_ms": int(self.session_timeout_s * 1000),
            "heartbeat_interval_ms": int(self.heartbeat_s * 1000),
            "max_poll_interval_ms": int(self.max_poll_interval_s * 1000),
        }


def make_consumer(
    bootstrap: str,
    timeout_s: float,
    max_poll_records: int = 5000,
    group: GroupMembership | None = None,
) -> KafkaConsumer:
    """A consumer with no committed offsets of its own: the store, not Kafka, holds positions.
    Without ``group`` it is assigned partitions by hand; with one it joins that group (partitions
    are assigned by the coordinator, and positioned by the caller on assignment)."""
    membership: dict[str, Any] = {"group_id": None} if group is None else group.config()
    timeouts = _timeouts(timeout_s)
    if group is not None:  # requests (a JoinGroup among them) must outlast a session
        timeouts["request_timeout_ms"] = max(
            timeouts["request_timeout_ms"], membership["session_timeout_ms"] + 5000
        )
    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_poll_records,
            fetch_max_wait_ms=200,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            **membership,
            **timeouts,
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


def describe(exc: BaseException) -> str:
    """A client error as one line: its class name and message, once each."""
    text = str(exc).strip()
    name = exc.__class__.__name__
    if not text or text == name:
        return name
    return text if text.startswith(name) else f"{name}: {text}"
