"""The service's passes over the whole ledger or projections (re-verification, published
copies) are paced so that ingest and readers are not starved as the ledger grows."""

from __future__ import annotations

import pytest

from service.runtime import paced


@pytest.mark.parametrize("took_s", [0.5, 5.0, 60.0, 1_800.0])
@pytest.mark.parametrize("every_s", [30.0, 120.0])
def test_a_whole_pass_takes_at_most_a_tenth_of_the_time_and_comes_no_sooner_than_its_period(
    took_s: float, every_s: float
) -> None:
    pause = paced(took_s, every_s)
    assert pause >= every_s
    assert took_s / (took_s + pause) <= 0.1 + 1e-9
    if took_s <= every_s / 9:
        assert pause == every_s
