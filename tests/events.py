"""Builders of v1 events for tests: valid by default, each field overridable."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from ledger.contract import ValidEvent, parse_event

DEFAULT_DATA: dict[str, dict[str, Any]] = {
    "touchpoint.recorded": {
        "channel": "phone",
        "direction": "inbound",
        "automated": False,
        "purpose": "service",
    },
    "promise.made": {
        "promise_id": "p1",
        "made_by": "billing",
        "channel": "email",
        "kind": "refund",
        "due_at": "2026-03-10T12:00:00+00:00",
    },
    "promise.kept": {"promise_id": "p1"},
    "promise.broken": {"promise_id": "p1", "reason": "warehouse lost it"},
    "promise.renegotiated": {
        "promise_id": "p1",
        "new_due_at": "2026-03-20T12:00:00+00:00",
        "agreed_by_customer": True,
    },
    "complaint.filed": {
        "complaint_id": "k1",
        "channel": "chat",
        "category": "delay",
        "severity": 3,
    },
    "complaint.acknowledged": {"complaint_id": "k1"},
    "complaint.resolved": {"complaint_id": "k1", "resolution": "refunded"},
}


def event_dict(
    type_: str = "promise.made",
    *,
    customer_id: str = "cust-1",
    occurred_at: str = "2026-03-01T09:00:00+01:00",
    event_id: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "type": type_,
        "customer_id": customer_id,
        "occurred_at": occurred_at,
        "source": "test-suite",
        "data": {**DEFAULT_DATA[type_], **data},
    }


def raw(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def valid(type_: str = "promise.made", **kwargs: Any) -> ValidEvent:
    return parse_event(raw(event_dict(type_, **kwargs)), "test")


def write_jsonl(path: Any, lines: list[dict[str, Any] | bytes | str]) -> None:
    with open(path, "wb") as handle:
        for line in lines:
            if isinstance(line, dict):
                line = orjson.dumps(line)
            elif isinstance(line, str):
                line = line.encode()
            handle.write(line + b"\n")
