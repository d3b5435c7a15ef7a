"""Alert contract v1: what ``cx.alerts`` carries, as pydantic models (schemas in ``schemas/v1/alerts``).

An alert is raised once per subject (a promise or a complaint), alert type and due date in force:
``alert_id`` is a UUID (v5) of exactly those, so a consumer can drop repeats — the alerter may
publish one again after a crash between delivery and recording it (at-least-once), and an agreed
renegotiation that moves a promise's due date makes new alerts for the new date. Alerts hold ids,
figures and times, never personal text. The Kafka key is the ``customer_id``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ledger.canonical import format_instant
from ledger.contract import CONTRACT_VERSION, Ident, PromiseKind

ALERT_NAMESPACE = uuid.UUID("5b0c53d2-2f53-4a0e-9d55-6c786c656467")

PromiseAlertType = Literal["promise.at_risk", "promise.overdue", "promise.broken"]
ComplaintAlertType = Literal["complaint.unacknowledged", "complaint.unresolved"]
ALERT_TYPES: tuple[str, ...] = (
    "promise.at_risk",
    "promise.overdue",
    "promise.broken",
    "complaint.unacknowledged",
    "complaint.unresolved",
)


def alert_id(alert_type: str, customer_id: str, subject_id: str, due_at: datetime) -> str:
    """The deterministic id of the alert of ``alert_type`` about a subject with due date in force
    ``due_at`` (a promise's, or a complaint's deadline)."""
    name = "\n".join((alert_type, customer_id, subject_id, format_instant(due_at)))
    return str(uuid.uuid5(ALERT_NAMESPACE, name))


class _Alert(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    alert_id: str = Field(description="UUID v5 of type, customer, subject and due date in force.")
    schema_version: Literal[1] = 1
    customer_id: Ident
    raised_at: datetime = Field(description="The instant the condition was evaluated at.")
    due_at: datetime = Field(description="Due date in force (promises) or deadline (complaints).")


class PromiseAlert(_Alert):
    """A promise entering the at-risk horizon, past its due date unsettled, or broken."""

    type: PromiseAlertType
    promise_id: Ident
    made_by: Ident
    on_behalf_of: Ident | None = None
    channel: str
    kind: PromiseKind
    weight: float = Field(gt=0)
    hours_left: float = Field(description="Hours from raised_at to due_at (negative when past).")
    risk: float | None = Field(
        default=None,
        description="1 − the team's on-time rate for this kind over the 90 days before "
        "raised_at (promise.at_risk only; null without history).",
    )
    broken_at: datetime | None = None


class ComplaintAlert(_Alert):
    """A complaint not acknowledged, or not resolved, by the target for its severity."""

    type: ComplaintAlertType
    complaint_id: Ident
    severity: int = Field(ge=1, le=5)
    channel: str
    category: str
    filed_at: datetime
    target_hours: float = Field(description="The target for its severity, in hours.")


ALERT_MODELS: dict[str, type[_Alert]] = {
    **{t: PromiseAlert for t in ALERT_TYPES if t.startswith("promise.")},
    **{t: ComplaintAlert for t in ALERT_TYPES if t.startswith("complaint.")},
}


def alert_json(alert: _Alert) -> bytes:
    """The record value published: the alert's JSON, instants as the ledger writes them."""
    data = alert.model_dump(mode="json")
    for name in ("raised_at", "due_at", "broken_at", "filed_at"):
        value = getattr(alert, name, None)
        if value is not None:
            data[name] = format_instant(value)
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def alert_schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schema of every alert type, keyed by its path under ``schemas/v1``."""
    schemas: dict[str, dict[str, Any]] = {}
    for alert_type in ALERT_TYPES:
        model = ALERT_MODELS[alert_type]
        schema = model.model_json_schema(mode="serialization")
        schema["properties"]["type"] = {"const": alert_type, "type": "string", "title": "Type"}
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = (
            f"https://cx-ledger.example/schemas/v{CONTRACT_VERSION}/alerts/{alert_type}.json"
        )
        schema["title"] = f"alert {alert_type} v{CONTRACT_VERSION}"
        schemas[f"alerts/{alert_type}.json"] = schema
    return schemas
