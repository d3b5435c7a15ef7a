"""The Relationship aggregate: one customer's sealed, hash-chained stream of facts.

It decides three things about each valid inbound event: is it new, a duplicate (same ``event_id``,
same content: counted, not sealed) or a conflict (same ``event_id``, different content: refused);
which ``seq`` and ``prev_hash`` seal it; and whether, given what the ledger knows so far, it is an
anomaly (out of order or contradictory). Anomalies are still sealed: facts are facts.

The decision lives in the command (``seal``); the event's ``apply`` only updates state, so replaying
stored events never re-decides anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.chain import GENESIS_HASH, content_digest, seal_hash
from ledger.contract import ValidEvent

_NAMESPACE = UUID("5b0c6f0e-3f4e-4c59-9d7e-6b8f1d6f2a10")


def relationship_id(customer_id: str) -> UUID:
    return uuid5(_NAMESPACE, customer_id)


class SealOutcome(StrEnum):
    SEALED = "sealed"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass
class _PromiseFacts:
    made: bool = False
    kept: float = 0.0
    broken: bool = False


@dataclass
class SealResult:
    outcome: SealOutcome
    seq: int | None = None
    anomalies: list[str] = field(default_factory=list)


class Relationship(Aggregate):
    """Aggregate id is ``relationship_id(customer_id)``, a name-based UUID: stable across processes
    and backends, so any writer finds a customer's stream without a lookup table."""

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
        digest: str
        seq: int
        prev_hash: str
        hash: str
        recorded_at: str

        def apply(self, aggregate: Any) -> None:
            aggregate._note_sealed(self.event_id, self.digest, self.body, self.seq, self.hash)

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return relationship_id(customer_id)

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.last_seq = 0
        self.head_hash = GENESIS_HASH
        self._digests: dict[str, str] = {}
        self._promises: dict[str, _PromiseFacts] = {}
        self._complaints: set[str] = set()

    def seal(self, event: ValidEvent, recorded_at: str | None = None) -> SealResult:
        """Seal ``event`` onto this stream unless it is a duplicate or a conflicting reuse.

        ``recorded_at`` (ISO 8601, UTC) defaults to now; a writer passes one instant per transaction.
        """
        digest = content_digest(event.body)
        known = self._digests.get(event.event_id)
        if known is not None:
            return SealResult(SealOutcome.DUPLICATE if known == digest else SealOutcome.CONFLICT)
        anomalies = self._anomalies_of(event.body)
        seq = self.last_seq + 1
        stamp = recorded_at or datetime.now(UTC).isoformat()
        self.trigger_event(
            self.EventSealed,
            event_id=event.event_id,
            body=event.body,
            digest=digest,
            seq=seq,
            prev_hash=self.head_hash,
            hash=seal_hash(self.head_hash, event.body, seq, stamp),
            recorded_at=stamp,
        )
        return SealResult(SealOutcome.SEALED, seq, anomalies)

    def _note_sealed(
        self, event_id: str, digest: str, body: dict[str, Any], seq: int, hash_: str
    ) -> None:
        self._digests[event_id] = digest
        self.last_seq = seq
        self.head_hash = hash_
        data = body["data"]
        kind = body["type"]
        if kind.startswith("promise."):
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
