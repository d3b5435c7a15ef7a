"""The relay re-publishes completely when ``cx.ledger`` is reset under it: no position is missing."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from consumers.broker import EmbeddedBroker, free_port
from consumers.kafka_clients import make_admin
from consumers.relay import LedgerRelay
from consumers.topics import delete_topics, ensure_topics
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import valid
from tests.integration.conftest import EXTERNAL_KAFKA
from tests.integration.kafka_helpers import read_all


def _seal(store: LedgerStore, count: int, tag: str) -> None:
    store.seal([valid(customer_id=f"c{i % 7}", promise_id=f"{tag}{i}") for i in range(count)])


def _positions(bootstrap: str, topic: str) -> set[int]:
    return {orjson.loads(r.value)["position"] for r in read_all(bootstrap, topic)}


def _sealed_positions(store: LedgerStore) -> set[int]:
    """Every ledger position the store holds: what ``cx.ledger`` must hold, none missing."""
    return {e.position for page in store.read() for e in page}


def _wait_until_gone(bootstrap: str, topic: str) -> None:
    admin = make_admin(bootstrap, 10)
    try:
        deadline = time.monotonic() + 20
        while topic in admin.list_topics():
            assert time.monotonic() < deadline, f"{topic} was not deleted"
            time.sleep(0.1)
    finally:
        admin.close()


def test_relay_republishes_every_position_after_the_ledger_topic_is_recreated(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.kafka_bootstrap
    bootstrap = settings.kafka_bootstrap
    with LedgerStore(str(tmp_path / "l.sqlite")) as store:
        relay = LedgerRelay.for_settings(
            store, bootstrap, settings.model_copy(update={"batch_size": 100})
        )
        try:
            _seal(store, 350, "a")
            assert relay.publish_pending() == 350
            delete_topics(bootstrap, [settings.ledger_topic], 10)
            _wait_until_gone(bootstrap, settings.ledger_topic)
            ensure_topics(bootstrap, {settings.ledger_topic: settings.partitions}, 10)

            _seal(store, 120, "b")
            relay.publish_pending()
            assert relay.resets == 1
        finally:
            relay.close()
        sealed = _sealed_positions(store)
    assert len(sealed) == 470
    assert _positions(bootstrap, settings.ledger_topic) == sealed


@pytest.mark.skipif(bool(EXTERNAL_KAFKA), reason="restarts a broker of its own")
def test_relay_republishes_every_position_after_its_broker_restarts_empty(
    tmp_path: Path,
) -> None:
    port = free_port()
    settings = Settings(
        home=tmp_path,
        kafka_bootstrap=f"127.0.0.1:{port}",
        ledger_topic=f"l-{uuid.uuid4().hex[:6]}",
        partitions=2,
        kafka_timeout_s=5,
        batch_size=100,
    )
    with LedgerStore(str(tmp_path / "l.sqlite")) as store:
        relay = LedgerRelay.for_settings(store, f"127.0.0.1:{port}", settings)
        try:
            with EmbeddedBroker(port=port, log_dir=tmp_path):
                _seal(store, 250, "a")
                assert relay.publish_pending() == 250
            with EmbeddedBroker(port=port, log_dir=tmp_path):  # a brand-new, empty cluster
                _seal(store, 60, "b")
                relay.publish_pending()
                sealed = _sealed_positions(store)
                assert len(sealed) == 310
                assert _positions(f"127.0.0.1:{port}", settings.ledger_topic) == sealed
        finally:
            relay.close()
