"""The Relationship aggregate: one customer's sealed, hash-chained stream of facts, as stored.

Each customer's stream is an eventsourcing aggregate: a creation row (version 1), then one
``EventSealed`` row per sealed fact. The writer does not build an aggregate object per event: it
writes each row's stored bytes directly (``sealed_state``, ``created_state``), byte for byte what
the library's mapper writes for these events, so that the library (and ``cxl verify``, which
rebuilds every stored row independently) reads them back unchanged. What sealing decides — seq,
prev_hash, anomalies — is decided from the stream's head (``ledger.stream_head``).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid5

import orjson
from eventsourcing.domain import Aggregate

from ledger.stream_head import ERASED_TYPE, StreamHead

__all__ = ["ERASED_TYPE", "Relationship", "created_state", "relationship_id", "sealed_state"]

_NAMESPACE = UUID("5b0c6f0e-3f4e-4c59-9d7e-6b8f1d6f2a10")


@lru_cache(maxsize=8192)
def relationship_id(customer_id: str) -> UUID:
    """A name-based UUID: stable across processes and backends, so any writer finds a customer's
    stream without a lookup table. Remembered for the most recent customers (a bounded cache, as
    the stream heads are): every sealing batch asks again for the customers it touches."""
    return uuid5(_NAMESPACE, customer_id)


class Relationship(Aggregate):
    """Aggregate id is ``relationship_id(customer_id)``.

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
            aggregate.head.note(self.body, self.seq, self.hash)

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return relationship_id(customer_id)

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.head = StreamHead(customer_id)


def stored_timestamp(instant: datetime) -> bytes:
    """The library's stored form of an event's ``timestamp`` (the seal instant)."""
    return orjson.dumps({"_type_": "datetime_iso", "_data_": instant.isoformat()})


def created_state(customer_id: str, timestamp: bytes) -> bytes:
    """Stored bytes of a stream's creation row, as the library's mapper writes them."""
    return b"".join(
        (
            b'{"timestamp":',
            timestamp,
            b',"originator_topic":',
            orjson.dumps(Relationship.TOPIC),
            b',"customer_id":',
            orjson.dumps(customer_id),
            b"}",
        )
    )


def sealed_state(
    stored_body: bytes,
    event_id: str,
    seq: int,
    prev_hash: str,
    hash_: str,
    recorded_at: str,
    timestamp: bytes,
) -> bytes:
    """Stored bytes of a sealed event, as the library's mapper writes them. ``stored_body`` is the
    body as orjson writes it (the canonical bytes themselves whenever orjson wrote those)."""
    return b"".join(
        (
            b'{"timestamp":',
            timestamp,
            b',"event_id":',
            orjson.dumps(event_id),
            b',"body":',
            stored_body,
            b',"seq":',
            str(seq).encode("ascii"),
            b',"prev_hash":"',
            prev_hash.encode("ascii"),
            b'","hash":"',
            hash_.encode("ascii"),
            b'","recorded_at":"',
            recorded_at.encode("ascii"),
            b'"}',
        )
    )
