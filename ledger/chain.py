"""The per-customer hash chain that makes the ledger tamper-evident.

``hash = SHA-256(prev_hash || canonical_json(sealed))`` where ``sealed`` is the event's canonical
body plus its ``seq`` and ``recorded_at``, and canonical JSON is sorted keys, no insignificant
whitespace, UTF-8. Because seq and recorded_at are inside the hash, renumbering or back-dating a
sealed event breaks the chain as surely as editing its content.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

GENESIS_HASH = "0" * 64


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8: the same bytes for the same fact, in any process."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def content_digest(body: dict[str, Any]) -> str:
    """Fingerprint of an event's content, used to tell a duplicate from a reused ``event_id``."""
    return hashlib.sha256(canonical_json(body)).hexdigest()


def seal_hash(prev_hash: str, body: dict[str, Any], seq: int, recorded_at: str) -> str:
    sealed = {"event": body, "seq": seq, "recorded_at": recorded_at}
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(sealed)).hexdigest()
