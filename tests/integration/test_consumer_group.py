"""``cxl consume --group``: three processes share the events topic through a Kafka consumer group,
on one PostgreSQL store, while members join, leave (SIGTERM) and die (SIGKILL) under load.

Positions come from the store on every assignment, so a partition moved to another member resumes
exactly where its last commit left it: every valid event sealed once, each customer's events in
the order they were published. The CI size is ~20k events; ``-m slow`` runs 100k
(``CXL_GROUP_EVENTS`` overrides both). Group timing is the test broker's (DESIGN: joins take half
the session timeout), set through the settings a deployment would use.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from consumers.topics import ensure_topics
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.test_faults import (
    Load,
    Publisher,
    _seed,
    assert_sealed_exactly_once,
    kill_group,
    make_load,
    start_consume,
)


def group_sizes() -> Iterator[object]:
    override = os.environ.get("CXL_GROUP_EVENTS")
    if override:
        yield int(override)
        return
    yield 20_000
    yield pytest.param(100_000, marks=pytest.mark.slow)


def _published_order(load: Load) -> dict[str, list[str]]:
    """Per customer, the valid event ids in the order they were published (first occurrences)."""
    order: dict[str, list[str]] = {}
    seen: set[str] = set()
    for chunk in load.chunks:
        for line in chunk.read_bytes().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            event_id = event.get("event_id") if isinstance(event, dict) else None
            if event_id in load.valid_ids and event_id not in seen:
                seen.add(event_id)
                order.setdefault(event["customer_id"], []).append(event_id)
    return order


def _group_env(settings: Settings, postgres_url: str, **extra: str) -> dict[str, str]:
    """One worker per member on ``postgres_url``, with the test broker's group timing."""
    return cxl_env(
        settings,
        CXL_STORE=postgres_url,
        CXL_INGEST_WORKERS="1",
        CXL_GROUP_SESSION_TIMEOUT_S="6",
        CXL_GROUP_HEARTBEAT_S="0.5",
        CXL_GROUP_MAX_POLL_INTERVAL_S="20",
        **extra,
    )


def _sealed(store_url: str) -> int:
    with LedgerStore(store_url) as store:
        return sum(len(page) for page in store.read())


@pytest.mark.parametrize("events", list(group_sizes()))
def test_three_group_members_joining_leaving_and_killed_seal_everything_once_in_order(
    settings: Settings, tmp_path: Path, postgres_url: str, events: int
) -> None:
    assert settings.kafka_bootstrap
    seed = _seed()
    load = make_load(tmp_path, events, seed)
    env = _group_env(settings, postgres_url)
    group = f"g-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "consume.log"

    def member() -> subprocess.Popen[bytes]:
        return start_consume(env, log, "--group", group)

    publisher = Publisher(load, env).start()
    members = [member() for _ in range(3)]
    time.sleep(8)
    members[1].send_signal(signal.SIGTERM)  # leaves the group: its share moves after a commit
    assert members[1].wait(timeout=60) == 0, log.read_text()[-3000:]
    time.sleep(4)
    kill_group(members[2])  # dies mid-batch: its share moves after the session timeout
    members[1:] = [member(), member()]
    publisher.join()
    deadline = time.monotonic() + 240
    while _sealed(postgres_url) < len(load.valid_ids):
        for process in members:
            assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, (
            f"{_sealed(postgres_url):,} sealed\n" + log.read_text()[-3000:]
        )
        time.sleep(1)
    # Every member started (three, then two): each logs its first line once its stop signals
    # are caught, and must then stop cleanly however soon the signal comes.
    while log.read_text().count("does not relay") < 5:
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    for process in members:
        process.send_signal(signal.SIGTERM)
    for process in members:
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]

    assert_sealed_exactly_once(postgres_url, load)
    with LedgerStore(postgres_url) as store:
        sealed: dict[str, list[str]] = {}
        for page in store.read():
            for event in page:
                sealed.setdefault(event.customer_id, []).append(event.event_id)
    assert sealed == _published_order(load)
    verified = run_cxl(["verify", "--format", "json"], env)
    assert verified.returncode == 0, verified.stderr
    assert "does not relay" in log.read_text()
    print(log.read_text()[-4000:])


def test_group_members_run_until_idle_leave_nothing_behind(
    settings: Settings, tmp_path: Path, postgres_url: str
) -> None:
    """``--until-idle`` in a group: a member is not idle before its assignment has been fetched,
    nor while a rebalance is under way, so two members leave nothing unsealed when both exit."""
    seed = _seed()
    load = make_load(tmp_path, 3_000, seed, chunks=2)
    env = _group_env(settings, postgres_url)
    Publisher(load, env).start().join()
    log = tmp_path / "consume.log"
    group = f"g-{uuid.uuid4().hex[:8]}"
    members = [start_consume(env, log, "--group", group, "--until-idle") for _ in range(2)]
    for process in members:
        assert process.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert_sealed_exactly_once(postgres_url, load)


def test_a_member_the_group_never_assigns_stops_with_a_broker_error_after_the_join_timeout(
    settings: Settings, tmp_path: Path, postgres_url: str
) -> None:
    """A member that holds the group's partitions and stops polling keeps every rebalance waiting
    (up to its own max poll interval). A new ``cxl consume --group`` does not wait with it in
    silence: past ``CXL_GROUP_JOIN_TIMEOUT_S`` it exits with the broker error code, naming the
    group and the setting."""
    assert settings.kafka_bootstrap
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = _group_env(settings, postgres_url, CXL_GROUP_JOIN_TIMEOUT_S="8")
    ensure_topics(settings.kafka_bootstrap, settings.topics, 10)
    squatter = KafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        max_poll_interval_ms=300_000,  # its heartbeats keep it in the group without polling
        enable_auto_commit=False,
    )
    try:
        deadline = time.monotonic() + 60
        while not squatter.assignment():
            assert time.monotonic() < deadline, "the squatting member was never assigned"
            squatter.poll(timeout_ms=200)
        started = time.monotonic()
        stopped = run_cxl(["consume", "--group", group], env, timeout=120)
        waited = time.monotonic() - started
    finally:
        squatter.close()
    assert stopped.returncode == 5, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert group in last and "CXL_GROUP_JOIN_TIMEOUT_S" in last and "8 s" in last, last
    assert "Traceback" not in stopped.stderr
    assert 8 <= waited < 60, waited
