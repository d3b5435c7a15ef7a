"""``cxl verify``: recompute every customer's hash chain from the stored events.

A chain verifies when, for each customer, seqs run 1, 2, 3… without gaps, each event's
``prev_hash`` is the previous event's ``hash`` (genesis: 64 zeros), each stored ``hash`` equals the
hash recomputed from the stored content, and each event sits in its own customer's stream. Any
edit, deletion in the middle, reordering or transplant breaks it. Deleting a customer's *last*
events leaves a shorter valid chain; ``head_digest`` (a digest over every chain head) is what an
auditor records to detect that later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ledger.chain import GENESIS_HASH, seal_hash
from ledger.errors import ChainBrokenError
from ledger.relationship import relationship_id
from ledger.store import LedgerStore


@dataclass(frozen=True)
class VerifyReport:
    events: int
    customers: int
    head_digest: str


def verify_chains(
    store: LedgerStore, on_progress: Callable[[int], None] | None = None
) -> VerifyReport:
    """Return totals when every chain verifies; raise ``ChainBrokenError`` at the first break."""
    heads: dict[str, tuple[int, str]] = {}
    events = 0
    for page in store.read():
        for e in page:
            last_seq, last_hash = heads.get(e.customer_id, (0, GENESIS_HASH))
            if e.stream_id != relationship_id(e.customer_id):
                raise ChainBrokenError(
                    e.customer_id,
                    e.seq,
                    "stream",
                    str(relationship_id(e.customer_id)),
                    str(e.stream_id),
                )
            if e.seq != last_seq + 1 or e.stream_version != e.seq + 1:
                raise ChainBrokenError(e.customer_id, e.seq, "seq", str(last_seq + 1), str(e.seq))
            if e.prev_hash != last_hash:
                raise ChainBrokenError(e.customer_id, e.seq, "prev_hash", last_hash, e.prev_hash)
            expected = seal_hash(e.prev_hash, e.body, e.seq, e.recorded_at)
            if expected != e.hash:
                raise ChainBrokenError(e.customer_id, e.seq, "hash", expected, e.hash)
            heads[e.customer_id] = (e.seq, e.hash)
        events += len(page)
        if on_progress is not None:
            on_progress(events)
    digest = hashlib.sha256()
    for customer in sorted(heads):
        seq, head = heads[customer]
        digest.update(f"{customer}\x00{seq}\x00{head}\n".encode())
    return VerifyReport(events=events, customers=len(heads), head_digest=digest.hexdigest())
