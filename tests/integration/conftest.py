"""Real parts: a Kafka-protocol broker over TCP, SQLite files, the PostgreSQL server, DuckDB files.

The broker is the embedded Tansu (one per test session) unless ``CXL_TEST_KAFKA_BOOTSTRAP`` names
another Kafka. Topic names are unique per test and deleted afterwards (the test broker keeps them
in memory).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from consumers.broker import EmbeddedBroker
from consumers.topics import delete_topics
from ledger.settings import Settings
from ledger.store import LedgerStore

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
EXTERNAL_KAFKA = os.environ.get("CXL_TEST_KAFKA_BOOTSTRAP")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if EXTERNAL_KAFKA:
        yield EXTERNAL_KAFKA
        return
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("broker")) as broker:
        yield broker.bootstrap


def unique_settings(root: Path, bootstrap: str) -> Settings:
    """A home under ``root`` and topics of its own on ``bootstrap``."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        home=root / "home",
        kafka_bootstrap=bootstrap,
        events_topic=f"t-{suffix}.events",
        ledger_topic=f"t-{suffix}.ledger",
        dlq_topic=f"t-{suffix}.dlq",
        checkpoints_topic=f"t-{suffix}.checkpoints",
        alerts_topic=f"t-{suffix}.alerts",
        partitions=3,
        batch_size=500,
        kafka_timeout_s=10,
        kek_file=root / "kek",
    )


def drop_topics(settings: Settings) -> None:
    delete_topics(
        settings.kafka_bootstrap or "",
        [
            settings.events_topic,
            settings.ledger_topic,
            settings.dlq_topic,
            settings.checkpoints_topic,
            settings.alerts_topic,
        ],
        10,
    )


@pytest.fixture
def settings(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Settings]:
    s = unique_settings(tmp_path, kafka_bootstrap)
    yield s
    drop_topics(s)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    schema = f"cxl_test_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_ADMIN}?schema={schema}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A database of its own (dropped after): terminating its connections or restoring into it
    touches no one else's."""
    name = f"cxl_db_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[LedgerStore]:
    with LedgerStore(store_url) as opened:
        yield opened


def cxl_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXL_")}
    env.update(
        CXL_HOME=str(settings.home),
        CXL_EVENTS_TOPIC=settings.events_topic,
        CXL_LEDGER_TOPIC=settings.ledger_topic,
        CXL_DLQ_TOPIC=settings.dlq_topic,
        CXL_CHECKPOINTS_TOPIC=settings.checkpoints_topic,
        CXL_ALERTS_TOPIC=settings.alerts_topic,
        CXL_CHECKPOINT_EVERY=str(settings.checkpoint_every),
        CXL_PARTITIONS=str(settings.partitions),
        CXL_BATCH_SIZE=str(settings.batch_size),
        # The key-encryption key beside the test's home, not in the user's ~/.config.
        CXL_KEK_FILE=str(settings.kek_file or settings.home.parent / "kek"),
    )
    if settings.kafka_bootstrap:
        env["CXL_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    if settings.store:
        env["CXL_STORE"] = settings.store
    if settings.key_store:
        env["CXL_KEY_STORE"] = str(settings.key_store)
    env.update(extra)
    return env


def run_cxl(
    args: list[str], env: dict[str, str], timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``cxl`` entry point in a child process, as a user would (``input``: its
    standard input)."""
    return subprocess.run(
        [sys.executable, "-m", "cxl.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=input,
    )


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Any]:
    """One ``cxl serve`` for the API tests of the session (its own home and topics)."""
    from tests.integration.serve_helpers import serving

    settings = unique_settings(tmp_path_factory.mktemp("served"), kafka_bootstrap)
    env = cxl_env(settings, CXL_INGEST_WORKERS="1", CXL_ALERTS_INTERVAL_S="1")
    with serving(env) as running:
        yield running
    drop_topics(settings)
