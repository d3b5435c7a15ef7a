from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import ConfigError
from ledger.settings import load_settings


def test_defaults_are_the_embedded_sqlite_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CXL_HOME", "CXL_STORE", "CXL_KAFKA_BOOTSTRAP"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.is_embedded
    assert settings.store_url == str(Path(".cxl") / "ledger.sqlite")
    assert settings.events_topic == "cx.events"


def test_environment_is_read_with_the_cxl_prefix_and_flags_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXL_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("CXL_EVENTS_TOPIC", "from-env")
    settings = load_settings(events_topic="from-flag", ledger_topic=None)
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.events_topic == "from-flag"
    assert not settings.is_embedded


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXL_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match="CXL_BATCH_SIZE"):
        load_settings()


def test_a_store_url_of_another_database_is_refused() -> None:
    with pytest.raises(ConfigError, match="CXL_STORE"):
        load_settings(store="mysql://localhost/x")
