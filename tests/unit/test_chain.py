from __future__ import annotations

from ledger.chain import GENESIS_HASH, canonical_json, seal_hash


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert (
        canonical_json({"b": 1, "a": {"d": [1, 2], "c": "é"}})
        == '{"a":{"c":"é","d":[1,2]},"b":1}'.encode()
    )


def test_seal_hash_depends_on_every_sealed_part() -> None:
    body = {"event_id": "e1", "data": {"x": 1}}
    base = seal_hash(GENESIS_HASH, body, 1, "2026-01-01T00:00:00+00:00")
    assert len(base) == 64
    assert seal_hash("1" * 64, body, 1, "2026-01-01T00:00:00+00:00") != base
    assert (
        seal_hash(
            GENESIS_HASH, {"event_id": "e1", "data": {"x": 2}}, 1, "2026-01-01T00:00:00+00:00"
        )
        != base
    )
    assert seal_hash(GENESIS_HASH, body, 2, "2026-01-01T00:00:00+00:00") != base
    assert seal_hash(GENESIS_HASH, body, 1, "2026-01-01T00:00:01+00:00") != base
    assert (
        seal_hash(GENESIS_HASH, dict(reversed(list(body.items()))), 1, "2026-01-01T00:00:00+00:00")
        == base
    )
