from __future__ import annotations

from datetime import datetime, timedelta, timezone

import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_json, format_instant
from tests.events import valid

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None, print_blob=True)
@given(_json)
@example({"\ue000": None, "\U00010000": None})  # UTF-16 order differs from code points
def test_canonical_json_is_rfc8785_for_any_json_value(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_instants_are_written_in_utc_with_six_fraction_digits() -> None:
    at = datetime(2026, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    assert format_instant(at) == "2026-03-01T08:00:00.000000Z"


@settings(max_examples=300, deadline=None, print_blob=True)
@given(
    weight=st.floats(min_value=0, max_value=1e6, exclude_min=True),
    fraction=st.floats(min_value=0, max_value=1, exclude_min=True),
    duration_s=st.floats(min_value=0, max_value=1e7),
)
@example(weight=1e-7, fraction=5e-324, duration_s=1e7)
def test_an_events_canonical_bytes_are_rfc8785_whatever_its_numbers(
    weight: float, fraction: float, duration_s: float
) -> None:
    """The contract picks the encoder from an event's few numbers: never other bytes than JCS."""
    for event in (
        valid(weight=weight),
        valid("promise.kept", fraction=fraction),
        valid("touchpoint.recorded", duration_s=duration_s),
    ):
        assert event.canonical == rfc8785.dumps(event.body)
