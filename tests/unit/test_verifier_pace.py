"""The service's verifier re-verifies a growing ledger without starving ingest and readers."""

from __future__ import annotations

import pytest

from service.runtime import VERIFY_EVERY_S, verification_pause


@pytest.mark.parametrize("took_s", [0.5, 5.0, 60.0, 1_800.0])
def test_the_verifier_takes_at_most_a_tenth_of_the_time_and_waits_at_least_two_minutes(
    took_s: float,
) -> None:
    pause = verification_pause(took_s)
    assert pause >= VERIFY_EVERY_S == 120.0
    assert took_s / (took_s + pause) <= 0.1 + 1e-9
    if took_s <= 120.0 / 9:
        assert pause == VERIFY_EVERY_S
