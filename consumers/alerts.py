"""Publishing alerts to ``cx.alerts``, each once per topic life, and remembering what was published.

``AlertLog`` (``HOME/alerts.sqlite``) records the id of every alert the broker confirmed
(``acks=all``), with the id of the topic it went to: an alert is recorded only after its delivery
was confirmed (a crash in between publishes it once more, and consumers drop the repeat by
``alert_id``), and a topic that was deleted and recreated, or a broker restarted without its
storage (a new topic id), gets the alerts that still hold again — its readers never saw them.
"""

from __future__ import annotations

import fcntl
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from consumers.kafka_clients import close_producer, describe, make_producer
from consumers.log_identity import NO_TOPIC_ID
from ledger.alert_contract import ComplaintAlert, PromiseAlert, alert_json
from ledger.errors import BrokerUnavailableError, ConfigError, StoreError

Alert = PromiseAlert | ComplaintAlert


class AlertLogBusyError(ConfigError):
    """Another process holds this ledger's alert log."""


class AlertLog:
    """Which alert ids were confirmed delivered to which life (topic id) of the alerts topic."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # One alerter per ledger home: two would both find an alert unpublished and send it twice.
        self._lock = path.with_name(path.name + ".lock").open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise AlertLogBusyError(
                f"another alerter (`cxl alerts`, or `cxl serve` outside a consumer group) already "
                f"publishes the alerts of this ledger ({path}): one alerter per ledger"
            ) from None
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS published_alerts (alert_id TEXT NOT NULL, "
                "topic_id TEXT NOT NULL, type TEXT NOT NULL, customer_id TEXT NOT NULL, "
                "due_at TEXT NOT NULL, published_at TEXT NOT NULL, PRIMARY KEY (alert_id, topic_id))"
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the alert log {path}: {exc}") from exc

    def published(self, alert_ids: Sequence[str], topic_id: str) -> set[str]:
        """Those of ``alert_ids`` already delivered to the topic life ``topic_id``."""
        found: set[str] = set()
        for start in range(0, len(alert_ids), 500):
            chunk = list(alert_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT alert_id FROM published_alerts WHERE topic_id = ? AND alert_id IN ({marks})",
                [topic_id, *chunk],
            )
            found.update(row[0] for row in rows)
        return found

    def record(self, alerts: Iterable[Alert], topic_id: str) -> None:
        now = datetime.now(UTC).isoformat()
        rows = [
            (a.alert_id, topic_id, a.type, a.customer_id, a.due_at.isoformat(), now) for a in alerts
        ]
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO published_alerts VALUES (?, ?, ?, ?, ?, ?)", rows
            )

    def count(self) -> int:
        row = self._db.execute("SELECT count(*) FROM published_alerts").fetchone()
        return int(row[0])

    def close(self) -> None:
        self._db.close()
        self._lock.close()


class AlertPublisher:
    """Sends the alerts not yet delivered to the current life of ``topic``; returns only once each
    was confirmed or the round failed (``BrokerUnavailableError``, after recording the confirmed)."""

    def __init__(self, log: AlertLog, bootstrap: str, topic: str, timeout_s: float) -> None:
        self.log = log
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout_s = timeout_s
        self.published = 0

    def publish(self, alerts: Iterable[Alert]) -> int:
        due = {a.alert_id: a for a in alerts}
        if not due:
            return 0
        producer = make_producer(self.bootstrap, self.timeout_s)
        try:
            topic_id = self._topic_id(producer)
            done = self.log.published(list(due), topic_id)
            new = [a for alert_id, a in due.items() if alert_id not in done]
            sent = [
                (a, producer.send(self.topic, key=a.customer_id.encode(), value=alert_json(a)))
                for a in new
            ]
            delivered: list[Alert] = []
            failure: BaseException | None = None
            deadline = time.monotonic() + self.timeout_s * 3
            for alert, future in sent:
                try:
                    future.get(timeout=max(deadline - time.monotonic(), 0.1))
                    delivered.append(alert)
                except KafkaError as exc:
                    failure = failure or exc
            self.log.record(delivered, topic_id)
            self.published += len(delivered)
            if failure is not None:
                raise BrokerUnavailableError(
                    f"alerts to {self.topic}: {len(delivered):,} of {len(new):,} confirmed "
                    f"delivered ({describe(failure)}); the rest are sent again next round"
                )
            return len(delivered)
        finally:
            close_producer(producer, self.timeout_s)

    def _topic_id(self, producer: Any) -> str:
        """The current life of the topic, from fresh metadata (the producer is new each round)."""
        try:
            if not producer.partitions_for(self.topic):
                raise BrokerUnavailableError(f"the broker does not know the topic {self.topic}")
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"no metadata for {self.topic} from {self.bootstrap} ({describe(exc)})"
            ) from exc
        topic_id = producer._metadata.topic_id(self.topic)
        return NO_TOPIC_ID if topic_id is None else str(topic_id)
