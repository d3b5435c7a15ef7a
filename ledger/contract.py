"""Event contract v1: the pydantic models every inbound record is validated against.

The JSON Schemas in ``schemas/v1`` are generated from these models (``cxl schemas``) and a test
fails when the two drift. Validation always starts from raw JSON bytes (``parse_event``) so that
publishers in any language get the same verdict, and the result is reduced to its canonical
dict form, which is what the ledger seals and hashes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ledger.errors import FieldProblem, InvalidEventError

CONTRACT_VERSION = 1

Text = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Channel(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    IVR = "ivr"
    CHAT = "chat"
    STORE = "store"
    WEB = "web"
    APP = "app"
    LETTER = "letter"
    SOCIAL = "social"
    OTHER = "other"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Purpose(StrEnum):
    SERVICE = "service"
    SALES = "sales"
    MARKETING = "marketing"
    INFORMATION = "information"
    BILLING = "billing"
    OTHER = "other"


class PromiseKind(StrEnum):
    DELIVERY = "delivery"
    REFUND = "refund"
    CALLBACK = "callback"
    FIX = "fix"
    PRICE = "price"
    FEATURE = "feature"
    OTHER = "other"


class _Strict(BaseModel):
    # strict: no silent coercion ("true" is not a bool, 3.0 is not a severity); JSON strings still
    # parse into datetimes, UUIDs and enums because validation always starts from JSON.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TouchpointRecorded(_Strict):
    channel: Channel
    direction: Direction
    automated: bool
    purpose: Purpose
    outcome: Text | None = None
    duration_s: Annotated[float, Field(ge=0)] | None = None


class PromiseMade(_Strict):
    promise_id: Ident
    made_by: Ident = Field(description="Team, agent or partner that made the promise.")
    channel: Channel
    kind: PromiseKind
    due_at: AwareDatetime = Field(description="RFC 3339 with offset; not before occurred_at.")
    weight: Annotated[float, Field(gt=0)] = 1.0
    description: Text | None = None
    on_behalf_of: Ident | None = None


class PromiseKept(_Strict):
    promise_id: Ident
    fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        default=1.0, description="Share delivered by this keep; < 1 is a partial delivery."
    )


class PromiseBroken(_Strict):
    promise_id: Ident
    reason: Text


class PromiseRenegotiated(_Strict):
    promise_id: Ident
    new_due_at: AwareDatetime
    agreed_by_customer: bool = Field(
        description="false breaks the promise at occurred_at (a unilateral change)."
    )
    reason: Text | None = None


class ComplaintFiled(_Strict):
    complaint_id: Ident
    channel: Channel
    category: Ident
    severity: Annotated[int, Field(ge=1, le=5)]
    promise_ids: list[Ident] = Field(default_factory=list)
    text: Text | None = None


class ComplaintAcknowledged(_Strict):
    complaint_id: Ident


class ComplaintResolved(_Strict):
    complaint_id: Ident
    resolution: Text
    customer_satisfied: bool | None = None


class _Envelope(_Strict):
    event_id: UUID = Field(description="Publisher-assigned idempotency key, permanent.")
    schema_version: Literal[1] = 1
    customer_id: Ident = Field(description="Also the Kafka record key.")
    occurred_at: AwareDatetime = Field(description="RFC 3339 with offset: when it happened.")
    source: Ident = Field(description="The publishing service.")


class TouchpointRecordedEvent(_Envelope):
    type: Literal["touchpoint.recorded"]
    data: TouchpointRecorded


class PromiseMadeEvent(_Envelope):
    type: Literal["promise.made"]
    data: PromiseMade

    @model_validator(mode="after")
    def _due_not_before_occurred(self) -> PromiseMadeEvent:
        if self.data.due_at < self.occurred_at:
            raise PydanticCustomError("due_before_occurred", "must not be before occurred_at")
        return self


class PromiseKeptEvent(_Envelope):
    type: Literal["promise.kept"]
    data: PromiseKept


class PromiseBrokenEvent(_Envelope):
    type: Literal["promise.broken"]
    data: PromiseBroken


class PromiseRenegotiatedEvent(_Envelope):
    type: Literal["promise.renegotiated"]
    data: PromiseRenegotiated


class ComplaintFiledEvent(_Envelope):
    type: Literal["complaint.filed"]
    data: ComplaintFiled


class ComplaintAcknowledgedEvent(_Envelope):
    type: Literal["complaint.acknowledged"]
    data: ComplaintAcknowledged


class ComplaintResolvedEvent(_Envelope):
    type: Literal["complaint.resolved"]
    data: ComplaintResolved


EVENT_MODELS: dict[str, type[_Envelope]] = {
    "touchpoint.recorded": TouchpointRecordedEvent,
    "promise.made": PromiseMadeEvent,
    "promise.kept": PromiseKeptEvent,
    "promise.broken": PromiseBrokenEvent,
    "promise.renegotiated": PromiseRenegotiatedEvent,
    "complaint.filed": ComplaintFiledEvent,
    "complaint.acknowledged": ComplaintAcknowledgedEvent,
    "complaint.resolved": ComplaintResolvedEvent,
}

ContractEvent = Annotated[
    TouchpointRecordedEvent
    | PromiseMadeEvent
    | PromiseKeptEvent
    | PromiseBrokenEvent
    | PromiseRenegotiatedEvent
    | ComplaintFiledEvent
    | ComplaintAcknowledgedEvent
    | ComplaintResolvedEvent,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(ContractEvent)


class ValidEvent:
    """A record that passed the contract, in canonical form.

    ``body`` is the canonical dict (JSON types only, every default filled in) that the ledger seals;
    two records are the same fact exactly when their bodies are equal.
    """

    __slots__ = ("body", "customer_id", "event_id", "occurred_at", "origin", "type")

    def __init__(self, model: _Envelope, origin: str = "") -> None:
        self.origin = origin
        self.body: dict[str, Any] = model.model_dump(mode="json")
        self.event_id: str = self.body["event_id"]
        self.customer_id: str = model.customer_id
        self.type: str = self.body["type"]
        self.occurred_at: datetime = model.occurred_at

    def __repr__(self) -> str:
        return f"ValidEvent({self.type} {self.event_id} customer={self.customer_id})"


def _problems(exc: ValidationError) -> list[FieldProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if loc and isinstance(loc[0], str) and loc[0] in EVENT_MODELS:
            loc = loc[1:]  # the discriminator tag pydantic puts first is not a field
        field = ".".join(str(p) for p in loc) or "(record)"
        reason = err["msg"]
        if err["type"] == "union_tag_invalid":
            field, reason = "type", f"unknown event type; expected one of {', '.join(EVENT_MODELS)}"
        elif err["type"] == "union_tag_not_found":
            field, reason = "type", "missing"
        elif err["type"] == "extra_forbidden":
            reason = "unknown field (not in the v1 contract)"
        elif err["type"] == "timezone_aware":
            reason = "timestamp must carry a UTC offset (RFC 3339), e.g. 2026-01-31T09:00:00+01:00"
        elif err["type"] == "json_invalid":
            reason = f"not valid JSON ({err['msg']})"
        elif err["type"] == "due_before_occurred":
            field = "data.due_at"
        elif err["type"] in ("model_type", "model_attributes_type") and not loc:
            reason = "a record must be one JSON object"
        problems.append(FieldProblem(field, reason))
    return problems


def parse_event(raw: bytes | str, origin: str) -> ValidEvent:
    """Validate one raw JSON record against the contract.

    Raises ``InvalidEventError`` naming ``origin`` and every failing field; never anything else
    for bad input.
    """
    try:
        model = _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise InvalidEventError(origin, _problems(exc)) from None
    return ValidEvent(model, origin)


def json_schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schema of every v1 event type, keyed by file name."""
    schemas: dict[str, dict[str, Any]] = {}
    for type_name, model in EVENT_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://cx-ledger.example/schemas/v{CONTRACT_VERSION}/{type_name}.json"
        schema["title"] = f"{type_name} v{CONTRACT_VERSION}"
        schemas[f"{type_name}.json"] = schema
    return schemas
