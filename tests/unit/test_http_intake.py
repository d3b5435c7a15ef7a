"""Splitting a POST /v1/events body into the events it holds, byte for byte; the rate limiter."""

from __future__ import annotations

import pytest

from service.access import ApiKey, RateLimiter
from service.intake import BodyError, split_items


def test_one_object_is_one_event_with_its_own_bytes() -> None:
    body = b' {"a": 1} \n'
    assert split_items(body, 10) == [body]


def test_each_array_element_keeps_the_exact_bytes_the_client_sent() -> None:
    body = b'[ {"b": 2, "a": "\\u00e9"} ,\n{"c": [1, {"d": null}]}]'
    assert split_items(body, 10) == [b'{"b": 2, "a": "\\u00e9"}', b'{"c": [1, {"d": null}]}']


def test_non_objects_inside_an_array_are_left_for_the_contract_to_name() -> None:
    assert split_items(b'[1, "x", {"a": 1}]', 10) == [b"1", b'"x"', b'{"a": 1}']


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "must be a JSON object"),
        (b"[]", "empty"),
        (b'"x"', "must be a JSON object"),
        (b"[{}", "expected ','"),
        (b"[{}] x", "expected ','"),
        (b"{} {}", "more after the event"),
        (b"[{},]", "not valid JSON"),
        (b"\xff[]", "not valid UTF-8"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b"[{}, {}, {}]", "more than 2 events"),
    ],
)
def test_a_body_that_is_not_events_is_refused_whole(body: bytes, reason: str) -> None:
    with pytest.raises(BodyError, match=reason):
        split_items(body, 2)


def _key(rate: float | None) -> ApiKey:
    return ApiKey("k1", "crm", False, rate, "2026-01-01T00:00:00+00:00", None)


def test_a_key_without_a_rate_is_never_limited() -> None:
    limiter = RateLimiter()
    assert all(limiter.wait_needed(_key(None)) == 0 for _ in range(1000))


def test_a_rate_allows_a_burst_of_one_second_then_says_how_long_to_wait() -> None:
    limiter = RateLimiter()
    key = _key(5)
    assert [limiter.wait_needed(key) for _ in range(5)] == [0.0] * 5
    wait = limiter.wait_needed(key)
    assert 0 < wait <= 0.2
