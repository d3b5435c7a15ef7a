from __future__ import annotations

import os
import pwd
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


def test_keys_live_apart_from_the_ledger_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/nonexistent")  # the KEK's place comes from the user database
    for name in ("CXL_HOME", "CXL_KEY_STORE", "CXL_KEK_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(home=Path("/srv/ledger"))
    assert settings.key_store_path == Path("/srv/ledger/keys.sqlite")
    user_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert settings.kek_path == user_home / ".config" / "cx-ledger" / "kek"
    assert load_settings(kek_file=Path("/k")).kek_path == Path("/k")


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


@pytest.mark.parametrize(
    ("store", "why"),
    [
        ("postgresql://postgres@127.0.0.1/test?schema=bad;drop", "not a plain SQL identifier"),
        ('postgresql://postgres@127.0.0.1/test?schema=a"b', "not a plain SQL identifier"),
        ("postgresql://postgres@127.0.0.1/test?sslmode=require", "unknown parameter 'sslmode'"),
        ("postgresql://postgres@127.0.0.1/test?schema=a&schema=b", "more than once"),
    ],
)
def test_a_postgres_store_url_takes_only_a_plain_schema_name(store: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"CXL_STORE: .*{why}"):
        load_settings(store=store)


def test_a_timeout_must_be_a_finite_number() -> None:
    with pytest.raises(ConfigError, match="CXL_KAFKA_TIMEOUT_S: Input should be a finite number"):
        load_settings(kafka_timeout_s=float("nan"))


def test_durations_and_severity_targets_are_read_as_documented() -> None:
    from datetime import timedelta

    settings = load_settings(
        at_risk_horizon="90m", complaint_ack_targets="1:3d, 2:48h,3:24h,4:8h,5:30m"
    )
    assert settings.horizon == timedelta(minutes=90)
    assert settings.complaint_targets.acknowledge[5] == timedelta(minutes=30)
    assert settings.complaint_targets.acknowledge[1] == timedelta(days=3)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("at_risk_horizon", "0h", "not a duration"),
        ("at_risk_horizon", "1.5h", "not a duration"),
        ("alerts_lookback", "week", "not a duration"),
        ("complaint_ack_targets", "5:4h,4:8h,3:24h,2:48h", "no target for severity 1"),
        ("complaint_resolve_targets", "5:4h,5:8h,3:24h,2:48h,1:1d", "severity 5 is given twice"),
        ("complaint_resolve_targets", "6:4h", "a severity 1–5"),
    ],
)
def test_a_bad_duration_or_target_names_the_setting(field: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**{field: value})
    assert f"CXL_{field.upper()}" in str(caught.value) and reason in str(caught.value)


def test_a_group_join_waits_by_default_as_long_as_a_healthy_rebalance_can_take() -> None:
    from consumers.ingest import membership

    group = membership(
        load_settings(consumer_group="g", group_session_timeout_s=6, group_max_poll_interval_s=20)
    )
    assert group is not None and group.join_bound_s == 2 * 20 + 6
    bounded = membership(load_settings(consumer_group="g", group_join_timeout_s=8))
    assert bounded is not None and bounded.join_bound_s == 8
    assert membership(load_settings()) is None
