"""The Relationship aggregate: one customer's sealed, hash-chained stream of facts.

It decides, for each new fact, which ``seq`` and ``prev_hash`` seal it and whether, given what the
ledger knows so far, it is an anomaly (out of order or contradictory). Anomalies are still sealed:
facts are facts. Whether a fact is new at all (``event_id`` dedupe) is the store's decision, made
against its global index of event ids.

The decision lives in the command (``seal``); the event's ``apply`` only updates state, so replaying
stored events never re-decides anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.chain import GENESIS_HASH, seal_hash
from ledger.contract import PERSONAL_FIELDS
from ledger.personal import is_sealed_field

ERASED_TYPE = "customer.erased"
"""Sealed by ``cxl forget`` (never by a publisher): after it, the stream takes no more events."""
_NAMESPACE = UUID("5b0c6f0e-3f4e-4c59-9d7e-6b8f1d6f2a10")


def relationship_id(customer_id: str) -> UUID:
    return uuid5(_NAMESPACE, customer_id)


@dataclass
class _PromiseFacts:
    made: bool = False
    kept: float = 0.0
    broken: bool = False


@dataclass
class SealResult:
    seq: int
    anomalies: list[str] = field(default_factory=list)


class Relationship(Aggregate):
    """Aggregate id is ``relationship_id(customer_id)``, a name-based UUID: stable across processes
    and backends, so any writer finds a customer's stream without a lookup table.

    Every stored event's ``timestamp`` (the library's own field) is the seal instant
    ``recorded_at`` of its transaction, so that ``cxl verify`` can account for it.
    """

    TOPIC = "cxl:Relationship"

    class Created(Aggregate.Created):
        """The relationship's first event: the customer became known to the ledger."""

        TOPIC = "cxl:Relationship.Created.v1"
        customer_id: str

    class EventSealed(Aggregate.Event):
        """One contract event, sealed: ``body`` is its canonical form, the rest is the seal."""

        TOPIC = "cxl:Relationship.EventSealed.v1"
        event_id: str
        body: dict[str, Any]
        seq: int
        prev_hash: str
        hash: str
        recorded_at: str

        def apply(self, aggregate: Any) -> None:
            aggregate._note_sealed(self.body, self.seq, self.hash)

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return relationship_id(customer_id)

    @classmethod
    def open(cls, customer_id: str, at: datetime) -> Relationship:
        """A new relationship whose creation is stamped with the seal instant ``at``."""
        relationship: Relationship = cls._create(cls.Created, customer_id=customer_id, timestamp=at)
        return relationship

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.last_seq = 0
        self.head_hash = GENESIS_HASH
        self._promises: dict[str, _PromiseFacts] = {}
        self._complaints: set[str] = set()
        self.erased = False
        self.kid: str | None = None
        """The data key id this stream's personal fields were sealed with (None: none yet)."""

    def seal(
        self, body: dict[str, Any], body_bytes: bytes, recorded_at: str, at: datetime
    ) -> SealResult:
        """Append the canonical ``body`` (whose canonical bytes are ``body_bytes``) to the chain."""
        anomalies = self._anomalies_of(body)
        seq = self.last_seq + 1
        self.trigger_event(
            self.EventSealed,
            timestamp=at,
            event_id=body["event_id"],
            body=body,
            seq=seq,
            prev_hash=self.head_hash,
            hash=seal_hash(self.head_hash, body_bytes, seq, recorded_at),
            recorded_at=recorded_at,
        )
        return SealResult(seq, anomalies)

    def _note_sealed(self, body: dict[str, Any], seq: int, hash_: str) -> None:
        self.last_seq = seq
        self.head_hash = hash_
        data = body["data"]
        kind = body["type"]
        if self.kid is None:
            for name in PERSONAL_FIELDS.get(kind, ()):
                value = data.get(name)
                if is_sealed_field(value):
                    self.kid = value["kid"]
                    break
        if kind == ERASED_TYPE:
            self.erased = True
        elif kind.startswith("promise."):
            facts = self._promises.setdefault(data["promise_id"], _PromiseFacts())
            if kind == "promise.made":
                facts.made = True
            elif kind == "promise.kept":
                facts.kept = min(1.0, facts.kept + data["fraction"])
            elif kind == "promise.broken" or (
                kind == "promise.renegotiated" and not data["agreed_by_customer"]
            ):
                facts.broken = True
        elif kind == "complaint.filed":
            self._complaints.add(data["complaint_id"])

    def _anomalies_of(self, body: dict[str, Any]) -> list[str]:
        """What is odd about this fact given the stream so far; empty for the ordinary case."""
        kind = body["type"]
        data = body["data"]
        found: list[str] = []
        if kind.startswith("promise."):
            facts = self._promises.get(data["promise_id"])
            if kind == "promise.made":
                if facts is not None and facts.made:
                    found.append("promise made twice")
                return found
            if facts is None or not facts.made:
                found.append("outcome before promise")
            if facts is not None:
                if kind == "promise.kept" and facts.kept >= 1.0:
                    found.append("kept twice")
                if kind == "promise.kept" and facts.broken:
                    found.append("kept after broken")
                if kind == "promise.broken" and facts.kept >= 1.0:
                    found.append("broken after kept")
        elif kind == "complaint.filed":
            for promise_id in data["promise_ids"]:
                if promise_id not in self._promises:
                    found.append("complaint about unknown promise")
                    break
        elif kind.startswith("complaint.") and data["complaint_id"] not in self._complaints:
            found.append("complaint outcome before filing")
        return found
