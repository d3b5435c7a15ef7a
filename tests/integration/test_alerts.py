"""``cxl alerts`` against a real broker: each alert once per subject, type and due date in force —
across restarts (each run is a new process), and again only after an agreed renegotiation."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ledger.settings import Settings
from tests.events import event_dict, write_jsonl
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.kafka_helpers import read_all
from tests.integration.projection_helpers import broken, promise, renegotiated

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "v1" / "alerts"
MADE = "2026-03-01T00:00:00+00:00"


def _seal(settings: Settings, env: dict[str, str], name: str, events: list[dict]) -> None:
    path = settings.home.parent / f"{name}.jsonl"
    write_jsonl(path, events)
    result = run_cxl(["ingest", str(path)], env)
    assert result.returncode == 0, result.stderr


def _round(env: dict[str, str], now: str) -> int:
    result = run_cxl(["alerts", "--now", now], env)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[1])


def test_alerts_are_published_once_across_restarts_and_again_after_an_agreed_renegotiation(
    settings: Settings,
) -> None:
    env = cxl_env(
        settings, CXL_AT_RISK_HORIZON="48h", CXL_COMPLAINT_ACK_TARGETS="5:4h,4:8h,3:24h,2:48h,1:72h"
    )
    _seal(
        settings,
        env,
        "history",
        [
            promise("p1", MADE, "2026-03-10T12:00:00+00:00"),
            promise("p2", MADE, "2026-03-09T12:00:00+00:00"),
            broken("p2", "2026-03-09T13:00:00+00:00"),
            promise("old", "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"),
            event_dict(
                "complaint.filed",
                customer_id="c1",
                occurred_at="2026-03-09T00:00:00+00:00",
                complaint_id="k1",
                severity=5,
            ),
        ],
    )
    assert (
        _round(env, "2026-03-09T00:00:00+00:00") == 2
    )  # p1 and p2 at risk; "old" is past lookback
    assert _round(env, "2026-03-09T00:00:00+00:00") == 0  # a restart sends nothing twice
    assert _round(env, "2026-03-09T14:00:00+00:00") == 2  # p2 broken; k1 not acknowledged in 4h
    _seal(
        settings,
        env,
        "moved",
        [renegotiated("p1", "2026-03-09T15:00:00+00:00", "2026-03-11T12:00:00+00:00", True)],
    )
    assert _round(env, "2026-03-10T00:00:00+00:00") == 1  # p1 at risk for its new due date
    assert (
        _round(env, "2026-03-11T12:00:00+00:00") == 2
    )  # p1 overdue at exactly its due; k1 unresolved

    records = read_all(settings.kafka_bootstrap or "", settings.alerts_topic)
    alerts = [json.loads(r.value) for r in records]
    assert len(alerts) == 7
    assert len({a["alert_id"] for a in alerts}) == 7
    assert sorted(
        (a["type"], a.get("promise_id") or a.get("complaint_id"), a["due_at"]) for a in alerts
    ) == [
        ("complaint.unacknowledged", "k1", "2026-03-09T04:00:00.000000Z"),
        ("complaint.unresolved", "k1", "2026-03-11T00:00:00.000000Z"),
        ("promise.at_risk", "p1", "2026-03-10T12:00:00.000000Z"),
        ("promise.at_risk", "p1", "2026-03-11T12:00:00.000000Z"),
        ("promise.at_risk", "p2", "2026-03-09T12:00:00.000000Z"),
        ("promise.broken", "p2", "2026-03-09T12:00:00.000000Z"),
        ("promise.overdue", "p1", "2026-03-11T12:00:00.000000Z"),
    ]
    for alert, record in zip(alerts, records, strict=True):
        assert record.key == alert["customer_id"].encode()
        schema = json.loads((SCHEMAS / f"{alert['type']}.json").read_text())
        jsonschema.validate(alert, schema)


def test_alerts_need_a_configured_broker(settings: Settings) -> None:
    env = cxl_env(settings)
    env.pop("CXL_KAFKA_BOOTSTRAP")
    result = run_cxl(["alerts", "--until-idle"], env)
    assert result.returncode == 2
    assert "no Kafka broker is configured" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--at-risk-horizon", "2 days", "CXL_AT_RISK_HORIZON"),
        ("--complaint-ack-targets", "5:4h,4:8h", "CXL_COMPLAINT_ACK_TARGETS"),
    ],
)
def test_a_bad_threshold_is_one_line_naming_the_setting(
    settings: Settings, flag: str, value: str, named: str
) -> None:
    result = run_cxl([flag, value, "at-risk"], cxl_env(settings))
    assert result.returncode == 2
    assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_second_alerter_on_one_ledger_is_refused_in_one_line(settings: Settings) -> None:
    from consumers.alerts import AlertLog

    settings.home.mkdir(parents=True)
    held = AlertLog(settings.alerts_log_path)  # as a running alerter holds it
    try:
        result = run_cxl(["alerts", "--until-idle"], cxl_env(settings))
    finally:
        held.close()
    assert result.returncode == 2
    assert "one alerter per ledger" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
