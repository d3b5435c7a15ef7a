from __future__ import annotations

import pytest

from ledger.contract import EVENT_MODELS, parse_event
from ledger.errors import InvalidEventError
from tests.events import DEFAULT_DATA, event_dict, raw


@pytest.mark.parametrize("type_", sorted(DEFAULT_DATA))
def test_every_v1_type_with_its_required_fields_is_valid(type_: str) -> None:
    event = parse_event(raw(event_dict(type_)), "test")
    assert event.type == type_
    assert event.body["schema_version"] == 1


def test_every_contract_type_has_a_test_builder() -> None:
    assert set(EVENT_MODELS) == set(DEFAULT_DATA)


def _problem(event: dict | bytes, origin: str = "events.jsonl:7") -> tuple[str, str]:
    with pytest.raises(InvalidEventError) as caught:
        parse_event(event if isinstance(event, bytes) else raw(event), origin)
    error = caught.value
    assert error.origin == origin
    assert str(error).startswith(f"{origin}: ")
    return error.problems[0].field, error.problems[0].reason


def test_naive_timestamp_is_rejected_naming_the_field() -> None:
    field, reason = _problem(event_dict(occurred_at="2026-03-01T09:00:00"))
    assert field == "occurred_at"
    assert "offset" in reason


def test_naive_due_at_is_rejected() -> None:
    field, _ = _problem(event_dict(due_at="2026-03-10T12:00:00"))
    assert field == "data.due_at"


def test_due_at_before_occurred_at_is_rejected() -> None:
    field, reason = _problem(event_dict(due_at="2026-02-01T00:00:00Z"))
    assert (field, reason) == ("data.due_at", "must not be before occurred_at")


def test_due_at_equal_to_occurred_at_is_accepted() -> None:
    parse_event(
        raw(event_dict(occurred_at="2026-03-01T09:00:00+01:00", due_at="2026-03-01T08:00:00Z")), "t"
    )


def test_unknown_field_in_data_is_rejected() -> None:
    field, reason = _problem(event_dict(colour="red"))
    assert field == "data.colour"
    assert "unknown field" in reason


def test_unknown_top_level_field_is_rejected() -> None:
    field, _ = _problem({**event_dict(), "extra": 1})
    assert field == "extra"


def test_unknown_type_is_rejected_listing_known_types() -> None:
    field, reason = _problem({**event_dict(), "type": "promise.forgotten"})
    assert field == "type"
    assert "promise.made" in reason


@pytest.mark.parametrize(
    ("type_", "overrides", "field"),
    [
        ("promise.made", {"kind": "bribe"}, "data.kind"),
        ("promise.made", {"channel": "pigeon"}, "data.channel"),
        ("promise.made", {"weight": 0}, "data.weight"),
        ("promise.kept", {"fraction": 0}, "data.fraction"),
        ("promise.kept", {"fraction": 1.5}, "data.fraction"),
        ("complaint.filed", {"severity": 6}, "data.severity"),
        ("complaint.filed", {"severity": 2.5}, "data.severity"),
        ("touchpoint.recorded", {"automated": "true"}, "data.automated"),
        ("touchpoint.recorded", {"direction": "sideways"}, "data.direction"),
        ("promise.renegotiated", {"agreed_by_customer": 1}, "data.agreed_by_customer"),
    ],
)
def test_values_outside_the_contract_are_rejected(type_: str, overrides: dict, field: str) -> None:
    assert _problem(event_dict(type_, **overrides))[0] == field


def test_missing_required_field_is_named() -> None:
    event = event_dict()
    del event["data"]["promise_id"]
    assert _problem(event) == ("data.promise_id", "Field required")


def test_empty_and_overlong_customer_ids_are_rejected() -> None:
    assert _problem(event_dict(customer_id=""))[0] == "customer_id"
    assert _problem(event_dict(customer_id="x" * 129))[0] == "customer_id"


def test_invalid_json_is_rejected_as_a_whole_record() -> None:
    field, reason = _problem(b'{"event_id": ')
    assert field == "(record)"
    assert "not valid JSON" in reason


def test_every_failing_field_is_reported_at_once() -> None:
    bad = event_dict(kind="bribe", channel="pigeon")
    with pytest.raises(InvalidEventError) as caught:
        parse_event(raw(bad), "x")
    assert {p.field for p in caught.value.problems} == {"data.kind", "data.channel"}


def test_omitted_optional_fields_and_explicit_nulls_are_the_same_fact() -> None:
    plain = event_dict(event_id="00000000-0000-4000-8000-000000000001")
    explicit = {**plain, "data": {**plain["data"], "description": None, "weight": 1}}
    assert parse_event(raw(plain), "a").body == parse_event(raw(explicit), "b").body


def test_uuid_case_is_normalised_in_the_canonical_body() -> None:
    event = event_dict(event_id="6F1C2B4E-1111-4A4A-9A9A-123456789ABC")
    assert parse_event(raw(event), "t").event_id == "6f1c2b4e-1111-4a4a-9a9a-123456789abc"


# -- what cannot be carried forever is refused, never altered ------------------------------------


@pytest.mark.parametrize(
    ("record", "reason_part"),
    [
        (b"\xef\xbb\xbf" + raw(event_dict()), "byte order mark"),
        (raw(event_dict()).replace(b'"source":', b'"source":"x","source":'), "duplicate key"),
        (raw(event_dict()).replace(b'"promise_id":"p1"', b'"weight":NaN,"promise_id":"p1"'), "NaN"),
        (
            raw(event_dict()).replace(b'"promise_id":"p1"', b'"weight":Infinity,"promise_id":"p1"'),
            "Infinity",
        ),
        (raw(event_dict()).replace(b'"p1"', b'"p\xff1"'), "UTF-8"),
        (raw(event_dict(description="x" * 70_000)), "limit is 65,536"),
        (b"[" * 20_000 + b"]" * 20_000, "nested too deeply"),
        (b'{"data": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001, "nested too deeply"),
    ],
    ids=["bom", "duplicate-key", "nan", "infinity", "bad-utf8", "oversized", "deep", "deep-object"],
)
def test_records_that_are_not_strict_json_are_refused_with_the_reason(
    record: bytes, reason_part: str
) -> None:
    field, reason = _problem(record)
    assert field == "(record)"
    assert reason_part in reason


def test_a_duplicate_key_in_pretty_printed_json_is_refused_too() -> None:
    pretty = b'{"event_id": "x", "event_id": "y"}'
    assert "duplicate key 'event_id'" in _problem(pretty)[1]


@pytest.mark.parametrize(
    ("type_", "overrides", "field"),
    [
        ("promise.made", {"weight": 1e400}, "data.weight"),
        ("promise.made", {"weight": 1_000_001}, "data.weight"),
        ("touchpoint.recorded", {"duration_s": 1e8}, "data.duration_s"),
        ("touchpoint.recorded", {"duration_s": -1}, "data.duration_s"),
        ("complaint.filed", {"promise_ids": [f"p{i}" for i in range(101)]}, "data.promise_ids"),
        ("promise.made", {"made_by": "team\x00a"}, "data.made_by"),
        ("promise.made", {"description": "bell \x07"}, "data.description"),
        ("promise.made", {"description": "next line \x85"}, "data.description"),
        ("promise.made", {"made_by": "team\x9b31m"}, "data.made_by"),
        ("promise.made", {"made_by": "team\u202eA"}, "data.made_by"),
        ("promise.made", {"made_by": "team\u2028A"}, "data.made_by"),
        ("promise.made", {"due_at": "2026-03-10T12:00:00.1234567Z"}, "data.due_at"),
        ("promise.made", {"due_at": "2200-01-01T00:00:00Z"}, "data.due_at"),
        ("promise.made", {"due_at": "2199-12-31T23:00:00-05:00"}, "data.due_at"),
        ("promise.made", {"due_at": "2026-02-30T12:00:00Z"}, "data.due_at"),
        ("promise.made", {"due_at": "2026-03-10"}, "data.due_at"),
        ("promise.made", {"due_at": 1_773_144_000}, "data.due_at"),
    ],
    ids=[
        "huge-number",
        "weight-bound",
        "duration-bound",
        "negative-duration",
        "too-many-promise-ids",
        "nul-in-identifier",
        "bell-in-text",
        "c1-control-in-text",
        "c1-csi-in-identifier",
        "bidi-override-in-identifier",
        "line-separator-in-identifier",
        "sub-microsecond",
        "after-range",
        "after-range-once-normalised",
        "no-such-date",
        "date-only",
        "epoch-number",
    ],
)
def test_values_no_projection_could_carry_are_refused(
    type_: str, overrides: dict, field: str
) -> None:
    assert _problem(event_dict(type_, **overrides))[0] == field


def test_an_instant_before_1900_is_refused() -> None:
    assert _problem(event_dict(occurred_at="1899-12-31T23:59:59Z"))[0] == "occurred_at"


def test_free_text_keeps_tabs_and_newlines() -> None:
    text = "line one\n\tline two\r\n"
    assert parse_event(raw(event_dict(description=text)), "t").body["data"]["description"] == text


def test_instants_are_normalised_to_utc_with_microseconds() -> None:
    body = parse_event(raw(event_dict(occurred_at="2026-03-01T09:00:00.5+01:00")), "t").body
    assert body["occurred_at"] == "2026-03-01T08:00:00.500000Z"
