"""Golden tests: fixed input bytes → fixed canonical bytes → fixed hashes, forever.

If one of these fails, sealed history would no longer verify: the canonical form changed.
"""

from __future__ import annotations

import hashlib

import rfc8785

from ledger.chain import GENESIS_HASH, body_bytes, content_digest, seal_hash, sealed_bytes
from ledger.contract import parse_event

MADE = (
    b'{"event_id":"6F9619FF-8B86-4D01-B42D-00CF4FC964FF","type":"promise.made",'
    b'"customer_id":"cust-\xc3\xa9 42","occurred_at":"2026-03-01T09:00:00.5+01:00",'
    b'"source":"billing-svc","data":{"promise_id":"p-1","made_by":"billing","channel":"email",'
    b'"kind":"refund","due_at":"2026-03-10T12:00:00Z","weight":2.0,'
    b'"description":"refund \\"asap\\"\\n\\tthanks \\u00e9\\u2028"}}'
)
MADE_CANONICAL = (
    b'{"customer_id":"cust-\xc3\xa9 42","data":{"channel":"email",'
    b'"description":"refund \\"asap\\"\\n\\tthanks \xc3\xa9\xe2\x80\xa8",'
    b'"due_at":"2026-03-10T12:00:00.000000Z","kind":"refund","made_by":"billing",'
    b'"on_behalf_of":null,"promise_id":"p-1","weight":2},'
    b'"event_id":"6f9619ff-8b86-4d01-b42d-00cf4fc964ff",'
    b'"occurred_at":"2026-03-01T08:00:00.500000Z","schema_version":1,"source":"billing-svc",'
    b'"type":"promise.made"}'
)
KEPT = (
    b'{"event_id":"0b8f4f1e-3c2a-4e57-9a43-2f0d3a5b7c11","type":"promise.kept",'
    b'"customer_id":"cust-\xc3\xa9 42","occurred_at":"2026-03-09T23:30:00-05:00",'
    b'"source":"billing-svc","data":{"promise_id":"p-1","fraction":0.000001}}'
)
KEPT_CANONICAL = (
    b'{"customer_id":"cust-\xc3\xa9 42","data":{"fraction":0.000001,"promise_id":"p-1"},'
    b'"event_id":"0b8f4f1e-3c2a-4e57-9a43-2f0d3a5b7c11",'
    b'"occurred_at":"2026-03-10T04:30:00.000000Z","schema_version":1,"source":"billing-svc",'
    b'"type":"promise.kept"}'
)
HASH_1 = "ee8b913051dca145ce8199846a5f077888943c159283399746676751b400c921"
HASH_2 = "7c2ecc0b1f0f839b6a166dfa5c3b90ef611a27490d7069183b0ecc0053a2ccd9"


def test_fixed_input_bytes_give_fixed_canonical_bytes() -> None:
    assert body_bytes(parse_event(MADE, "golden").body) == MADE_CANONICAL
    assert body_bytes(parse_event(KEPT, "golden").body) == KEPT_CANONICAL


def test_fixed_canonical_bytes_give_fixed_hashes() -> None:
    assert seal_hash(GENESIS_HASH, MADE_CANONICAL, 1, "2026-03-01T08:00:01.000000Z") == HASH_1
    assert seal_hash(HASH_1, KEPT_CANONICAL, 2, "2026-03-10T04:30:00.250000Z") == HASH_2


def test_the_hash_is_sha256_over_prev_hash_and_the_rfc8785_form_of_the_sealed_wrapper() -> None:
    body = rfc8785.dumps(parse_event(KEPT, "golden").body)
    wrapper = {
        "event": parse_event(KEPT, "golden").body,
        "seq": 2,
        "recorded_at": "2026-03-10T04:30:00.250000Z",
    }
    assert sealed_bytes(body, 2, "2026-03-10T04:30:00.250000Z") == rfc8785.dumps(wrapper)
    expected = hashlib.sha256(HASH_1.encode("ascii") + rfc8785.dumps(wrapper)).hexdigest()
    assert expected == HASH_2


def test_the_same_fact_spelled_differently_has_the_same_canonical_bytes() -> None:
    respelled = (
        MADE.replace(
            b"6F9619FF-8B86-4D01-B42D-00CF4FC964FF", b"6f9619ff-8b86-4d01-b42d-00cf4fc964ff"
        )
        .replace(b"2026-03-01T09:00:00.5+01:00", b"2026-03-01T08:00:00.500000Z")
        .replace(b'"weight":2.0', b'"weight":2')
    )
    assert body_bytes(parse_event(respelled, "g").body) == MADE_CANONICAL


def test_seal_hash_depends_on_every_sealed_part() -> None:
    base = seal_hash(GENESIS_HASH, KEPT_CANONICAL, 1, "2026-01-01T00:00:00.000000Z")
    assert seal_hash("1" * 64, KEPT_CANONICAL, 1, "2026-01-01T00:00:00.000000Z") != base
    assert seal_hash(GENESIS_HASH, MADE_CANONICAL, 1, "2026-01-01T00:00:00.000000Z") != base
    assert seal_hash(GENESIS_HASH, KEPT_CANONICAL, 2, "2026-01-01T00:00:00.000000Z") != base
    assert seal_hash(GENESIS_HASH, KEPT_CANONICAL, 1, "2026-01-01T00:00:00.000001Z") != base


def test_content_digest_is_sha256_of_the_canonical_bytes() -> None:
    assert content_digest(KEPT_CANONICAL) == hashlib.sha256(KEPT_CANONICAL).hexdigest()
