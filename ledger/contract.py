"""Event contract v1: the pydantic models every inbound record is validated against.

The JSON Schemas in ``schemas/v1`` are generated from these models (``cxl schemas``) and a test
fails when the two drift. Validation always starts from raw JSON bytes (``parse_event``) so that
publishers in any language get the same verdict, and the result is reduced to its canonical body
(``canonical_body``), which is what the ledger seals and hashes.

A sealed event is forever, so the contract refuses whatever a projection, query, report or export
could not carry, rather than alter it: strict JSON (no ``NaN``/``Infinity``, no duplicate keys, no
byte order mark, at most ``MAX_RECORD_BYTES``), finite numbers inside documented bounds, instants in
RFC 3339 with an offset, at most microsecond precision and inside ``EARLIEST``..``LATEST`` once
normalised to UTC, strings without control characters (free text may hold tab and newlines).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

import orjson
import rfc8785
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic.json_schema import JsonDict

from ledger.canonical import format_instant, orjson_canonical, orjson_writes_canonically
from ledger.errors import ConfigError, FieldProblem, InvalidEventError

CONTRACT_VERSION = 1

MAX_RECORD_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4000
MAX_IDENT_CHARS = 128
MAX_PROMISE_IDS = 100
MAX_WEIGHT = 1e6
MAX_DURATION_S = 1e7
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

_RFC3339_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?")
# C0, DEL and C1 controls anywhere; in identifiers (which reports print in columns) also line and
# paragraph separators, bidirectional overrides and isolates, and U+FEFF, which let a value
# rearrange or hide what is printed beside it.
IDENT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]*$"
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
_PATTERN_REASONS = {
    IDENT_PATTERN: "control, separator and bidirectional formatting characters are not allowed "
    "in an identifier",
    TEXT_PATTERN: "control characters are not allowed (tab, CR and LF are)",
}
# Fields that may carry personal data: sealed encrypted with the customer's key (ledger.personal).
PERSONAL: JsonDict = {"x-personal": True}
INSTANT_FIELDS = ("occurred_at", "data.due_at", "data.new_due_at")
_RANGE = (
    "outside the ledger's range 1900-01-01T00:00:00Z .. 2199-12-31T23:59:59.999999Z "
    "(once normalised to UTC)"
)

# Checked by pydantic-core's own regex engine, not by Python callbacks: validation is on the ingest
# hot path. The instants are read (and their range checked) once the record is valid otherwise, by
# ``canonical_body``.
Instant = Annotated[
    str,
    StringConstraints(pattern=_RFC3339_PATTERN),
    Field(
        json_schema_extra={
            "format": "date-time",
            "description": "RFC 3339 with offset, at most 6 fraction digits, between "
            "1900-01-01T00:00:00Z and 2199-12-31T23:59:59.999999Z once normalised to UTC.",
        }
    ),
]
Text = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS, pattern=TEXT_PATTERN)
]
Ident = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_IDENT_CHARS, pattern=IDENT_PATTERN)
]


def _instant_problem(value: str) -> str:
    """Why an instant's text was refused (only computed for refused records)."""
    if _NAIVE.fullmatch(value):
        return "timestamp must carry a UTC offset (RFC 3339), e.g. 2026-01-31T09:00:00+01:00"
    if re.search(r"\.\d{7,}", value):
        return "more than microsecond precision (at most 6 fraction digits)"
    return "not an RFC 3339 timestamp with offset, e.g. 2026-01-31T09:00:00+01:00"


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
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class TouchpointRecorded(_Strict):
    channel: Channel
    direction: Direction
    automated: bool
    purpose: Purpose
    outcome: Text | None = Field(default=None, json_schema_extra=PERSONAL)
    duration_s: Annotated[float, Field(ge=0, le=MAX_DURATION_S)] | None = None


class PromiseMade(_Strict):
    promise_id: Ident
    made_by: Ident = Field(description="Team, agent or partner that made the promise.")
    channel: Channel
    kind: PromiseKind
    due_at: Instant = Field(description="RFC 3339 with offset; not before occurred_at.")
    weight: Annotated[float, Field(gt=0, le=MAX_WEIGHT)] = 1.0
    description: Text | None = Field(default=None, json_schema_extra=PERSONAL)
    on_behalf_of: Ident | None = None


class PromiseKept(_Strict):
    promise_id: Ident
    fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        default=1.0, description="Share delivered by this keep; < 1 is a partial delivery."
    )


class PromiseBroken(_Strict):
    promise_id: Ident
    reason: Text = Field(json_schema_extra=PERSONAL)


class PromiseRenegotiated(_Strict):
    promise_id: Ident
    new_due_at: Instant
    agreed_by_customer: bool = Field(
        description="false breaks the promise at occurred_at (a unilateral change)."
    )
    reason: Text | None = Field(default=None, json_schema_extra=PERSONAL)


class ComplaintFiled(_Strict):
    complaint_id: Ident
    channel: Channel
    category: Ident
    severity: Annotated[int, Field(ge=1, le=5)]
    promise_ids: list[Ident] = Field(default_factory=list, max_length=MAX_PROMISE_IDS)
    text: Text | None = Field(default=None, json_schema_extra=PERSONAL)


class ComplaintAcknowledged(_Strict):
    complaint_id: Ident


class ComplaintResolved(_Strict):
    complaint_id: Ident
    resolution: Text = Field(json_schema_extra=PERSONAL)
    customer_satisfied: bool | None = None


class _Envelope(_Strict):
    event_id: UUID = Field(description="Publisher-assigned idempotency key, permanent.")
    schema_version: Literal[1] = 1
    customer_id: Ident = Field(description="Also the Kafka record key.")
    occurred_at: Instant = Field(description="RFC 3339 with offset: when it happened.")
    source: Ident = Field(description="The publishing service.")


class TouchpointRecordedEvent(_Envelope):
    type: Literal["touchpoint.recorded"]
    data: TouchpointRecorded


class PromiseMadeEvent(_Envelope):
    type: Literal["promise.made"]
    data: PromiseMade


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


class CustomerErased(_Strict):
    reason: Text = Field(description="Why, for the record (a ticket or legal basis); not personal.")


class CustomerErasedEvent(_Envelope):
    """Sealed by ``cxl forget`` in the erased customer's stream; publishers cannot send it."""

    type: Literal["customer.erased"]
    data: CustomerErased


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


def _personal_fields(model: type[_Envelope]) -> tuple[str, ...]:
    data = model.model_fields["data"].annotation
    assert isinstance(data, type) and issubclass(data, BaseModel)
    return tuple(
        name
        for name, info in data.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("x-personal")
    )


PERSONAL_FIELDS: dict[str, tuple[str, ...]] = {
    type_name: _personal_fields(model) for type_name, model in EVENT_MODELS.items()
}
"""Per event type, the names of its ``data`` fields that may carry personal data."""

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


def _read_instant(
    holder: dict[str, Any], name: str, field: str, problems: list[FieldProblem]
) -> datetime | None:
    """Parse, range-check and normalise ``holder[name]`` in place; the parsed instant or None."""
    text = holder.get(name)
    if text is None:
        return None
    try:
        instant = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        problems.append(FieldProblem(field, "not a valid date and time (RFC 3339)"))
        return None
    if not EARLIEST <= instant <= LATEST:
        problems.append(FieldProblem(field, _RANGE))
        return None
    holder[name] = format_instant(instant)
    return instant


def canonical_body(model: _Envelope, origin: str = "") -> dict[str, Any]:
    """The body the ledger seals, built by the contract, not by a serializer's formatting.

    From the validated values (every field of the type present, absent optional ones as
    ``null``, defaults filled in; enums as their value; the UUID lower-case with hyphens), the
    contract fixes what a serializer would otherwise choose: instants become
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC) and an integral number an integer. So the body of a fact
    does not depend on how its publisher spelled it (offset, ``1`` or ``1.0``, upper-case UUID).
    Instants outside the documented range, or a ``due_at`` before ``occurred_at``, are refused
    here (``InvalidEventError``).
    """
    body: dict[str, Any] = model.model_dump(mode="json")
    data = body["data"]
    problems: list[FieldProblem] = []
    occurred = _read_instant(body, "occurred_at", "occurred_at", problems)
    due = _read_instant(data, "due_at", "data.due_at", problems)
    _read_instant(data, "new_due_at", "data.new_due_at", problems)
    if due is not None and occurred is not None and due < occurred:
        problems.append(FieldProblem("data.due_at", "must not be before occurred_at"))
    if problems:
        raise InvalidEventError(origin, problems)
    for name in ("weight", "fraction", "duration_s"):
        value = data.get(name)
        if type(value) is float and value.is_integer():
            data[name] = int(value)  # 1.0 and 1 are the same number: one canonical form
    return body


_NUMBERS = ("weight", "fraction", "duration_s", "severity")
"""Every number a contract body can hold: all in ``data``; every other value is a string, a
boolean, null or a list of strings, and every key is a contract field name (ASCII)."""


def _encoder(body: dict[str, Any]) -> Callable[[Any], bytes]:
    """The RFC 8785 encoder for a canonical body, decided from its few numbers alone (the
    contract fixes everything else): orjson whenever it writes them as RFC 8785 does."""
    data = body["data"]
    for name in _NUMBERS:
        value = data.get(name)
        if value is not None and not orjson_writes_canonically(value):
            return rfc8785.dumps
    return orjson_canonical


class ValidEvent:
    """A record that passed the contract, in canonical form.

    ``body`` is the canonical dict (``canonical_body``) that the ledger seals; two records are the
    same fact exactly when their bodies are equal.
    """

    __slots__ = (
        "body",
        "canonical",
        "customer_id",
        "encode",
        "event_id",
        "occurred_at",
        "origin",
        "type",
    )

    def __init__(self, model: _Envelope, origin: str = "") -> None:
        self.origin = origin
        self.body: dict[str, Any] = canonical_body(model, origin)
        self.encode = _encoder(self.body)
        """The RFC 8785 encoder for this body and bodies made from it (its personal fields
        sealed): decided once per event."""
        self.canonical: bytes = self.encode(self.body)
        """The body's canonical bytes, computed once: hashed, digested and stored as they are."""
        self.event_id: str = self.body["event_id"]
        self.customer_id: str = model.customer_id
        self.type: str = self.body["type"]
        self.occurred_at: datetime = datetime.fromisoformat(self.body["occurred_at"])

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
        elif err["type"] == "json_invalid":
            reason = f"not valid JSON ({err['ctx']['error'] if 'ctx' in err else err['msg']})"
        elif err["type"] == "string_pattern_mismatch":
            pattern = (err.get("ctx") or {}).get("pattern")
            if pattern == _RFC3339_PATTERN:
                reason = _instant_problem(str(err["input"]))
            else:
                reason = _PATTERN_REASONS.get(str(pattern), reason)
        elif err["type"] in ("model_type", "model_attributes_type") and not loc:
            reason = "a record must be one JSON object"
        problems.append(FieldProblem(field, reason))
    return problems


_BOM = b"\xef\xbb\xbf"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in one object")
            seen.add(key)
    return obj


def _strict_json_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not strict JSON (RFC 8259, no duplicate keys), or None when it is.

    Compact JSON that orjson parses and writes back byte for byte has no duplicate key (a
    repeated key would be written once) and no non-standard token: that is the fast path. Anything
    else is parsed again by the standard library, which names the first problem.
    """
    if raw.startswith(_BOM):
        return "starts with a UTF-8 byte order mark (U+FEFF); send plain UTF-8 JSON without it"
    if len(raw) > MAX_RECORD_BYTES:
        return f"record is {len(raw):,} bytes; the limit is {MAX_RECORD_BYTES:,}"
    try:
        if orjson.dumps(orjson.loads(raw)) == raw:
            return None
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 at byte {exc.start}"
    try:
        json.loads(text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)
    except ValueError as exc:
        return f"not valid JSON ({str(exc).splitlines()[0]})"
    except RecursionError:
        return "nested too deeply to be an event (orjson's and Python's parsers both gave up)"
    return None


def parse_event(raw: bytes | str, origin: str) -> ValidEvent:
    """Validate one raw JSON record against the contract.

    Raises ``InvalidEventError`` naming ``origin`` and every failing field; never anything else
    for bad input.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    problem = _strict_json_problem(data)
    if problem is not None:
        raise InvalidEventError(origin, [FieldProblem("(record)", problem)])
    try:
        model = _ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise InvalidEventError(origin, _problems(exc)) from None
    return ValidEvent(model, origin)


def erasure_event(customer_id: str, reason: str, at: datetime) -> ValidEvent:
    """The ``customer.erased`` event ``cxl forget`` seals; ``ConfigError`` naming ``CUSTOMER``
    or ``--reason``, whichever is not acceptable."""
    record = {
        "event_id": str(uuid4()),
        "customer_id": customer_id,
        "occurred_at": format_instant(at),
        "source": "cx-ledger",
        "type": "customer.erased",
        "data": {"reason": reason},
    }
    try:
        model = CustomerErasedEvent.model_validate_json(orjson.dumps(record))
    except ValidationError as exc:
        problem = _problems(exc)[0]
        argument = "CUSTOMER" if problem.field == "customer_id" else "--reason"
        raise ConfigError(f"{argument}: {problem.reason}") from None
    return ValidEvent(model, "cxl forget")


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
