"""The per-customer hash chain that makes the ledger tamper-evident.

``hash = SHA-256(prev_hash || canonical_json({"event": body, "recorded_at": t, "seq": n}))`` where
``prev_hash`` is the previous event's hash as 64 lower-case hex characters (ASCII; 64 zeros for a
customer's first event) and ``canonical_json`` is the ledger's canonical form (``ledger.canonical``,
RFC 8785). Because seq and recorded_at are inside the hash, renumbering or back-dating a sealed
event breaks the chain as surely as editing its content.

The sealed wrapper's keys sort as written (``event`` < ``recorded_at`` < ``seq``), so its canonical
bytes are assembled around the body's canonical bytes, which are computed once per event and also
give the content ``digest`` used to tell a duplicate from a reused ``event_id``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ledger.canonical import canonical_json

GENESIS_HASH = "0" * 64


def content_digest(body_bytes: bytes) -> str:
    """Fingerprint of an event's content (its canonical bytes)."""
    return hashlib.sha256(body_bytes).hexdigest()


def sealed_bytes(body_bytes: bytes, seq: int, recorded_at: str) -> bytes:
    """Canonical bytes of ``{"event": body, "recorded_at": recorded_at, "seq": seq}``.

    ``recorded_at`` is a canonical instant (``ledger.canonical.format_instant``): ASCII digits and
    ``-:.TZ``, which RFC 8785 writes as they are.
    """
    return b"".join(
        (
            b'{"event":',
            body_bytes,
            b',"recorded_at":"',
            recorded_at.encode("ascii"),  # a canonical instant: nothing in it needs escaping
            b'"',
            b',"seq":',
            str(seq).encode("ascii"),
            b"}",
        )
    )


def seal_hash(prev_hash: str, body_bytes: bytes, seq: int, recorded_at: str) -> str:
    return hashlib.sha256(
        prev_hash.encode("ascii") + sealed_bytes(body_bytes, seq, recorded_at)
    ).hexdigest()


def body_bytes(body: dict[str, Any]) -> bytes:
    return canonical_json(body)
