"""HTTP ingest: a request body → contract-checked events → ``cx.events``, confirmed by the broker.

The body is one JSON object or a JSON array of them. Each item keeps its own bytes (its span in the
body), so it is validated — strict JSON included: no duplicate keys, no ``NaN`` — by the very
function ingest and ``cxl publish`` use, and what reaches Kafka is exactly what the client sent.
Valid items are appended (key ``customer_id``, ``acks=all``) and reported accepted only once the
broker has confirmed each of them; invalid ones are reported by index, field and reason. Retrying
a whole batch is safe: the ledger seals an ``event_id`` once.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from consumers.kafka_clients import close_producer, make_producer
from consumers.publisher import publish_records
from consumers.records import InboundRecord
from ledger.contract import ValidEvent, parse_event
from ledger.errors import BrokerUnavailableError, CxlError, InvalidEventError

_DECODER = json.JSONDecoder()
RETRY_S = 5.0
_BLANK = " \t\r\n"


class BodyError(CxlError):
    """The request body is not a JSON object or array of objects (HTTP 400)."""


class SourceMismatchError(CxlError):
    """An event's ``source`` is not the publishing key's own (HTTP 403)."""

    def __init__(self, index: int, source: str, allowed: str) -> None:
        self.index = index
        super().__init__(
            f"item {index}: source {source!r} is not this key's source {allowed!r}; "
            "nothing was appended"
        )


@dataclass(frozen=True)
class ItemError:
    index: int
    field: str
    reason: str


@dataclass
class IntakeResult:
    accepted: list[str] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)


def split_items(body: bytes, max_items: int) -> list[bytes]:
    """The raw bytes of each event in ``body``: the body itself when it is one object, each
    element's span when it is an array. ``BodyError`` when it is neither, or holds more than
    ``max_items``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not valid UTF-8 (byte {exc.start})") from None
    start = len(text) - len(text.lstrip(_BLANK))
    if text.startswith("\ufeff"):
        raise BodyError("the body starts with a byte order mark (U+FEFF); send plain UTF-8 JSON")
    if text[start : start + 1] == "{":
        end = _span(text, start)
        if text[end:].strip(_BLANK):
            raise BodyError(f"not valid JSON at character {end}: more after the event")
        return [body]
    if text[start : start + 1] != "[":
        raise BodyError("the body must be a JSON object (one event) or an array of events")
    items: list[bytes] = []
    at = _skip(text, start + 1)
    if text[at : at + 1] == "]":
        raise BodyError("the array is empty: send at least one event")
    while True:
        end = _span(text, at)
        if len(items) == max_items:
            raise BodyError(f"more than {max_items:,} events in one body; split it")
        items.append(text[at:end].encode("utf-8"))
        at = _skip(text, end)
        if text[at : at + 1] == ",":
            at = _skip(text, at + 1)
            continue
        if text[at : at + 1] == "]" and not text[at + 1 :].strip(_BLANK):
            return items
        raise BodyError(f"not valid JSON at character {at}: expected ',' or the array's end")


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _BLANK:
        at += 1
    return at


def _span(text: str, at: int) -> int:
    try:
        _, end = _DECODER.raw_decode(text, at)
    except RecursionError:
        raise BodyError("the body is nested too deeply to be an event") from None
    except ValueError as exc:
        reason = str(exc).splitlines()[0]
        if "integer string conversion" in reason:
            reason = "a number has more than 4,300 digits"
        raise BodyError(f"the body is not valid JSON ({reason})") from None
    return int(end)


class EventIntake:
    """Appends validated events to the events topic through one long-lived producer.

    After a broker failure the producer is closed and a new one made on the next request (an
    idempotent producer does not survive a broker restart: DESIGN.md), and the request fails with
    ``BrokerUnavailableError`` (HTTP 503): nothing it held is reported accepted.
    """

    def __init__(self, bootstrap: str, topic: str, timeout_s: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer: Any = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_reason = ""

    def _current(self) -> Any:
        """The producer; after a broker failure, for ``RETRY_S``, an immediate 503 for everyone
        instead of each request waiting out the timeouts in turn."""
        if time.monotonic() < self._down_until:
            raise BrokerUnavailableError(self._down_reason)
        if not self._lock.acquire(timeout=self.timeout_s):
            raise BrokerUnavailableError("the broker connection is still being made; retry")
        try:
            if self._producer is None:
                try:
                    self._producer = make_producer(self.bootstrap, self.timeout_s)
                except BrokerUnavailableError as exc:
                    self._mark_down(exc)
                    raise
            return self._producer
        finally:
            self._lock.release()

    def _mark_down(self, exc: BaseException) -> None:
        self._down_reason = " ".join(str(exc).split())
        self._down_until = time.monotonic() + RETRY_S

    def _discard(self, producer: Any, exc: BaseException) -> None:
        self._mark_down(exc)
        with self._lock:
            if self._producer is producer:
                self._producer = None
        close_producer(producer, 1.0)

    def close(self) -> None:
        if not self._lock.acquire(timeout=self.timeout_s):
            return
        try:
            producer, self._producer = self._producer, None
        finally:
            self._lock.release()
        if producer is not None:
            close_producer(producer, min(self.timeout_s, 5.0))

    def submit(self, items: list[bytes], source: str | None) -> IntakeResult:
        """Validate ``items``, refuse all of them when one valid event's ``source`` is not
        ``source`` (a write key's; None allows any), append the valid ones, confirm each."""
        result = IntakeResult()
        valid: list[tuple[int, ValidEvent, bytes]] = []
        in_body: dict[str, dict[str, Any]] = {}
        for index, raw in enumerate(items):
            try:
                event = parse_event(raw, f"item {index}")
            except InvalidEventError as exc:
                result.errors.extend(ItemError(index, p.field, p.reason) for p in exc.problems)
                continue
            if source is not None and event.body["source"] != source:
                raise SourceMismatchError(index, event.body["source"], source)
            earlier = in_body.setdefault(event.event_id, event.body)
            if earlier is not event.body and earlier != event.body:
                result.errors.append(
                    ItemError(index, "event_id", "reused with different content in this body")
                )
                continue
            valid.append((index, event, raw))
        if not valid:
            return result
        producer = self._current()
        try:
            report = publish_records(
                (
                    InboundRecord(raw, str(index), key=event.customer_id.encode())
                    for index, event, raw in valid
                ),
                producer,
                self.topic,
                validate=False,
                timeout_s=self.timeout_s,
                shared=True,
            )
        except BrokerUnavailableError as exc:
            self._discard(producer, exc)
            raise
        refused = {int(u.origin): u.reason for u in report.undelivered}
        for index, event, _ in valid:
            if index in refused:
                result.errors.append(
                    ItemError(index, "(record)", f"not appended: {refused[index]}")
                )
            else:
                result.accepted.append(event.event_id)
        result.errors.sort(key=lambda e: e.index)
        return result
