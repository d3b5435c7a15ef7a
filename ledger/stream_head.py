"""What sealing needs to know of one customer's stream, folded from its sealed events.

A writer seals a customer's next event from this alone: the chain head (``seq``, ``hash``), the
stream's version in the event store, the data key its personal fields are sealed with, whether the
customer was erased, and the facts the anomaly rules read (which promises were made, kept, broken;
which complaints were filed). It is stored as one compact row per customer (``cxl_stream_heads``),
written in the same transaction as the events it folds, so a writer that has never seen a customer
reads one row instead of replaying the whole stream, and its memory is bounded by how many heads it
caches, not by history. ``cxl verify`` folds every stream again and compares each stored row.

The anomaly rules are defined here, once: an anomalous fact is still sealed (facts are facts), it
is only counted and reported.
"""

from __future__ import annotations

from typing import Any

import orjson

from ledger.chain import GENESIS_HASH
from ledger.contract import PERSONAL_FIELDS
from ledger.personal import is_sealed_field

ERASED_TYPE = "customer.erased"
"""Sealed by ``cxl forget`` (never by a publisher): after it, the stream takes no more events."""

_MADE, _KEPT, _BROKEN = 0, 1, 2


class StreamHead:
    """One customer's stream as sealing sees it. ``version`` is the event-store version of the
    stream's last row (its creation row is version 1, so ``version == seq + 1``)."""

    __slots__ = ("complaints", "customer_id", "erased", "hash", "kid", "promises", "seq")

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.seq = 0
        self.hash = GENESIS_HASH
        self.kid: str | None = None
        self.erased = False
        self.promises: dict[str, list[Any]] = {}
        """promise_id → [made, fraction kept, broken]."""
        self.complaints: set[str] = set()

    @property
    def version(self) -> int:
        return self.seq + 1

    def anomalies_of(self, body: dict[str, Any]) -> list[str]:
        """What is odd about this fact given the stream so far; empty for the ordinary case."""
        kind = body["type"]
        data = body["data"]
        found: list[str] = []
        if kind.startswith("promise."):
            facts = self.promises.get(data["promise_id"])
            if kind == "promise.made":
                if facts is not None and facts[_MADE]:
                    found.append("promise made twice")
                return found
            if facts is None or not facts[_MADE]:
                found.append("outcome before promise")
            if facts is not None:
                if kind == "promise.kept" and facts[_KEPT] >= 1.0:
                    found.append("kept twice")
                if kind == "promise.kept" and facts[_BROKEN]:
                    found.append("kept after broken")
                if kind == "promise.broken" and facts[_KEPT] >= 1.0:
                    found.append("broken after kept")
        elif kind == "complaint.filed":
            for promise_id in data["promise_ids"]:
                if promise_id not in self.promises:
                    found.append("complaint about unknown promise")
                    break
        elif kind.startswith("complaint.") and data["complaint_id"] not in self.complaints:
            found.append("complaint outcome before filing")
        return found

    def note(self, body: dict[str, Any], seq: int, hash_: str, kid: str | None = None) -> None:
        """Fold a sealed event in. ``kid``: the data key its personal fields were sealed with, when
        the caller knows it; otherwise it is read from ``body``'s sealed fields (replay)."""
        self.seq = seq
        self.hash = hash_
        data = body["data"]
        kind = body["type"]
        if self.kid is None:
            if kid is None:
                for name in PERSONAL_FIELDS.get(kind, ()):
                    value = data.get(name)
                    if is_sealed_field(value):
                        kid = value["kid"]
                        break
            self.kid = kid
        if kind == ERASED_TYPE:
            self.erased = True
        elif kind.startswith("promise."):
            facts = self.promises.setdefault(data["promise_id"], [False, 0, False])
            if kind == "promise.made":
                facts[_MADE] = True
            elif kind == "promise.kept":
                facts[_KEPT] = min(1, facts[_KEPT] + data["fraction"])
            elif kind == "promise.broken" or (
                kind == "promise.renegotiated" and not data["agreed_by_customer"]
            ):
                facts[_BROKEN] = True
        elif kind == "complaint.filed":
            self.complaints.add(data["complaint_id"])

    def facts(self) -> bytes:
        """The stored form of everything but the chain head: compact JSON, keys and ids sorted, so
        that the same stream always gives the same bytes (``verify`` compares them)."""
        return orjson.dumps(
            {
                "kid": self.kid,
                "erased": self.erased,
                "promises": self.promises,
                "complaints": sorted(self.complaints),
            },
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def stored(cls, customer_id: str, seq: int, hash_: str, facts: bytes) -> StreamHead:
        """A head read back from its row."""
        head = cls(customer_id)
        head.seq, head.hash = seq, hash_
        loaded = orjson.loads(facts)
        head.kid = loaded["kid"]
        head.erased = loaded["erased"]
        head.promises = loaded["promises"]
        head.complaints = set(loaded["complaints"])
        return head
