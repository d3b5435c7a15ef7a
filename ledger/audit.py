"""``cxl verify``: every stored byte of the ledger is accounted for.

Each row of the events table, read in ledger order whatever its topic, must be exactly what sealing
writes — the stored bytes are rebuilt from the hashed content and compared:

- a customer's stream starts with one creation row (version 1, its ``customer_id`` naming the
  stream's id, stamped with the instant of the first seal), followed by sealed events whose seqs
  run 1, 2, 3… with the stream version one ahead;
- each sealed event's ``hash`` equals the hash recomputed from its body, seq and ``recorded_at``
  over the previous event's hash (``prev_hash``); its ``event_id`` copy equals the body's; the
  library's ``timestamp`` equals ``recorded_at``;
- ``recorded_at`` never decreases along a chain nor along the ledger order;
- the event-id index holds exactly one row per sealed event, with its customer and content digest
  (compared as a multiset digest, so memory does not grow with history).

Any edit, insertion, deletion in the middle, reordering or transplant is reported with its position.
Deleting a customer's *last* events leaves a shorter valid chain; ``head_digest`` (a digest over
every chain head) is what an auditor records to detect that later.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import PersistenceError

from ledger.canonical import canonical_json, format_instant
from ledger.chain import GENESIS_HASH, seal_hash
from ledger.checkpoint import Checkpoint
from ledger.errors import ChainBrokenError, LedgerTamperedError, StoreError
from ledger.merkle import (
    EMPTY_ROOT,
    TreeBuilder,
    consistency_path,
    leaf_hash,
    verify_consistency,
)
from ledger.personal import dedupe_digest
from ledger.recorders import STREAM_HEADS, StoredRow, mark_mismatch
from ledger.relationship import Relationship, relationship_id
from ledger.store import (
    CREATED_TOPIC,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SEALED_TOPIC,
    LedgerStore,
)
from ledger.stream_head import StreamHead

_MODULUS = 2**256
_DATETIME = "datetime_iso"


@dataclass(frozen=True)
class VerifyReport:
    events: int
    customers: int
    head_digest: str
    root: bytes = EMPTY_ROOT
    """The RFC 9162 root of the Merkle tree over all ``events``, recomputed from them."""
    checkpoint: Checkpoint | None = None
    """The checkpoint the ledger was proved to extend, if one was given."""
    consistency: list[bytes] = field(default_factory=list)
    """The consistency proof from ``checkpoint`` to the ledger (RFC 9162 §2.1.4)."""

    def as_row(self) -> dict[str, Any]:
        """What ``cxl verify --format json`` prints (and ``GET /v1/verify`` answers)."""
        row: dict[str, Any] = {
            "ok": True,
            "events": self.events,
            "customers": self.customers,
            "head_digest": self.head_digest,
            "tree_root": base64.b64encode(self.root).decode(),
        }
        if self.checkpoint is not None:
            row["checkpoint_size"] = self.checkpoint.size
            row["consistency_proof"] = [base64.b64encode(h).decode() for h in self.consistency]
        return row

    def summary(self) -> str:
        """One line for a report's header: what was verified, and when."""
        return (
            f"cxl verify ok at {format_instant(datetime.now(UTC))}: {self.events:,} sealed events "
            f"of {self.customers:,} customers — every chain, stored byte and Merkle tree node "
            "recomputed"
        )


class _TreeCheck:
    """Recomputes the Merkle tree from the sealed events, in ledger order, and compares every
    stored tree row with it (level by level, paged: memory does not grow with history)."""

    _PAGE = 5000

    def __init__(self, store: LedgerStore, snapshot_at: int | None) -> None:
        self.store = store
        self.builder = TreeBuilder()
        self.snapshot_at = snapshot_at
        self.snapshot: bytes | None = EMPTY_ROOT if snapshot_at == 0 else None
        self._pages: dict[int, list[tuple[int, str]]] = {}
        self._next: dict[int, int] = {}

    def _stored(self, level: int) -> tuple[int, str] | None:
        page = self._pages.get(level)
        if not page:
            page = self.store.recorder.tree_rows(level, self._next.get(level, 0), self._PAGE)
            page.reverse()
            self._pages[level] = page
        if not page:
            return None
        row = page.pop()
        self._next[level] = row[0] + 1
        return row

    def leaf(self, seal_hash: str, position: int) -> None:
        for level, index, digest in self.builder.append(leaf_hash(bytes.fromhex(seal_hash))):
            stored = self._stored(level)
            expected = (index, digest.hex())
            if stored != expected:
                raise LedgerTamperedError(
                    None,
                    f"the Merkle tree's {_node_name(level, index)} is not the one recomputed "
                    f"from the sealed events up to ledger position {position} (the tree was "
                    "edited outside cx-ledger)",
                    place="Merkle tree",
                )
        if self.builder.size == self.snapshot_at:
            self.snapshot = self.builder.root()

    def finish(self) -> None:
        for level in {0, *self.store.recorder.tree_levels()}:
            extra = self._stored(level)
            if extra is not None:
                raise LedgerTamperedError(
                    None,
                    f"the Merkle tree holds {_node_name(level, extra[0])}, which no sealed event "
                    "accounts for (added outside cx-ledger)",
                    place="Merkle tree",
                )


def _node_name(level: int, index: int) -> str:
    return f"leaf {index}" if level == 0 else f"node {level}/{index}"


@dataclass
class _Head:
    customer_id: str
    created_at: str
    seq: int = 0
    hash: str = GENESIS_HASH
    stream: StreamHead | None = None
    """The stream's head as sealing stores it (``cxl_stream_heads``), folded again here."""

    def row_digest(self) -> int:
        stream = self.stream or StreamHead(self.customer_id)
        return _head_row_digest(self.customer_id, self.seq, self.hash, stream.facts().decode())


def _head_row_digest(customer_id: str, seq: int, hash_: str, facts: str) -> int:
    line = f"{customer_id}\x00{seq}\x00{hash_}\x00{facts}".encode()
    return int.from_bytes(hashlib.sha256(line).digest(), "big")


def _row_digest(event_id: str, customer_id: str, digest: str) -> int:
    line = f"{event_id}\x00{customer_id}\x00{digest}".encode()
    return int.from_bytes(hashlib.sha256(line).digest(), "big")


def _timestamp(instant: str) -> dict[str, str]:
    return {"_type_": _DATETIME, "_data_": datetime.fromisoformat(instant).isoformat()}


class _Verifier:
    def __init__(self, tree: _TreeCheck) -> None:
        self.heads: dict[str, _Head] = {}
        self.events = 0
        self.index_sum = 0
        self.last_recorded_at = ""
        self.tree = tree

    def row(self, row: StoredRow) -> None:
        try:
            state: Any = orjson.loads(row.state)
        except orjson.JSONDecodeError:
            raise LedgerTamperedError(row.position, "stored state is not JSON") from None
        if not isinstance(state, dict):
            raise LedgerTamperedError(row.position, "stored state is not a JSON object")
        if row.topic == CREATED_TOPIC:
            self._created(row, state)
        elif row.topic == SEALED_TOPIC:
            self._sealed(row, state)
        else:
            raise LedgerTamperedError(row.position, f"unknown topic {row.topic!r}")

    def _created(self, row: StoredRow, state: dict[str, Any]) -> None:
        customer_id = state.get("customer_id")
        if not isinstance(customer_id, str):
            raise LedgerTamperedError(row.position, "creation row names no customer")
        if row.originator_id != relationship_id(customer_id).hex:
            raise LedgerTamperedError(
                row.position, f"creation row of {customer_id!r} is in another customer's stream"
            )
        if row.originator_version != 1 or row.originator_id in self.heads:
            raise LedgerTamperedError(
                row.position, f"second creation row for customer {customer_id!r}"
            )
        created_at = (state.get("timestamp") or {}).get("_data_", "")
        expected = {
            "timestamp": {"_type_": _DATETIME, "_data_": created_at},
            "originator_topic": Relationship.TOPIC,
            "customer_id": customer_id,
        }
        if orjson.dumps(expected) != row.state:
            raise LedgerTamperedError(
                row.position, f"creation row of {customer_id!r} differs from what sealing writes"
            )
        self.heads[row.originator_id] = _Head(customer_id, created_at)

    def _sealed(self, row: StoredRow, state: dict[str, Any]) -> None:
        head = self.heads.get(row.originator_id)
        if head is None:
            raise LedgerTamperedError(
                row.position, "sealed event in a stream with no creation row before it"
            )
        try:
            body = state["body"]
            seq, prev_hash, hash_ = state["seq"], state["prev_hash"], state["hash"]
            recorded_at = state["recorded_at"]
            canonical = canonical_json(body)
            stored_body = orjson.loads(canonical)
            expected: dict[str, Any] = {
                "timestamp": _timestamp(recorded_at),
                "event_id": body["event_id"],
                "body": stored_body,
                "seq": seq,
                "prev_hash": prev_hash,
                "hash": hash_,
                "recorded_at": recorded_at,
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerTamperedError(
                row.position, f"sealed event is missing or mangles a field ({exc})"
            ) from None
        customer = head.customer_id
        if body.get("customer_id") != customer:
            raise ChainBrokenError(
                customer, seq, "customer_id", customer, str(body.get("customer_id"))
            )
        if seq != head.seq + 1:
            raise ChainBrokenError(customer, seq, "seq", str(head.seq + 1), str(seq))
        if row.originator_version != seq + 1:
            raise LedgerTamperedError(
                row.position,
                f"customer {customer!r} seq {seq} is stored as stream version "
                f"{row.originator_version}, not {seq + 1}",
            )
        if prev_hash != head.hash:
            raise ChainBrokenError(customer, seq, "prev_hash", head.hash, str(prev_hash))
        recomputed = seal_hash(prev_hash, canonical, seq, recorded_at)
        if recomputed != hash_:
            raise ChainBrokenError(customer, seq, "hash", recomputed, str(hash_))
        if seq == 1 and _timestamp(recorded_at)["_data_"] != head.created_at:
            raise ChainBrokenError(
                customer,
                seq,
                "creation instant",
                _timestamp(recorded_at)["_data_"],
                head.created_at,
            )
        if format_instant(datetime.fromisoformat(recorded_at)) != recorded_at:
            raise ChainBrokenError(
                customer, seq, "recorded_at format", "YYYY-MM-DDTHH:MM:SS.ffffffZ", recorded_at
            )
        if recorded_at < self.last_recorded_at:
            raise ChainBrokenError(
                customer,
                seq,
                "recorded_at (runs backwards)",
                f">= {self.last_recorded_at}",
                recorded_at,
            )
        if orjson.dumps(expected) != row.state:
            raise LedgerTamperedError(
                row.position,
                f"customer {customer!r} seq {seq}: stored bytes differ from what sealing writes "
                "(a field outside the hash was edited)",
            )
        self.last_recorded_at = recorded_at
        head.seq, head.hash = seq, hash_
        if head.stream is None:
            head.stream = StreamHead(customer)
        head.stream.note(stored_body, seq, hash_)
        self.index_sum = (
            self.index_sum + _row_digest(body["event_id"], customer, dedupe_digest(body))
        ) % _MODULUS
        self.tree.leaf(hash_, row.position)
        self.events += 1

    def finish(self, store: LedgerStore) -> VerifyReport:
        for head in self.heads.values():
            if head.seq == 0:
                raise LedgerTamperedError(
                    None, f"customer {head.customer_id!r} has a creation row but no sealed event"
                )
        index_sum = 0
        index_rows = 0
        for page in store.event_id_rows():
            for event_id, customer_id, digest in page:
                index_sum = (index_sum + _row_digest(event_id, customer_id, digest)) % _MODULUS
            index_rows += len(page)
        if index_rows != self.events or index_sum != self.index_sum:
            raise LedgerTamperedError(
                None,
                f"the event-id index ({index_rows:,} rows) does not match the "
                f"{self.events:,} sealed events (a row was edited, added or removed)",
            )
        _check_positions(store)
        _check_ledger_meta(store, self.events)
        _check_stream_heads(store, self.heads.values())
        self.tree.finish()
        heads = hashlib.sha256()
        for head in sorted(self.heads.values(), key=lambda h: h.customer_id):
            heads.update(f"{head.customer_id}\x00{head.seq}\x00{head.hash}\n".encode())
        return VerifyReport(
            events=self.events,
            customers=len(self.heads),
            head_digest=heads.hexdigest(),
            root=self.tree.builder.root(),
        )


def require_same_ledger(store: LedgerStore, checkpoint: Checkpoint) -> None:
    """A checkpoint (its signature checked) names this ledger: otherwise the ledger does not
    extend it — it is another ledger, or this one's id was changed (exit 4 either way)."""
    origin = store.origin
    if checkpoint.origin != origin:
        raise LedgerTamperedError(
            None,
            f"the checkpoint is of ledger {checkpoint.origin!r}, this one is {origin!r}: another "
            "ledger, or this ledger's id was changed",
            place="checkpoint",
        )


def _check_stream_heads(store: LedgerStore, heads: Iterable[_Head]) -> None:
    """The stored stream heads are exactly those the sealed events fold to: one per stream,
    none extra, none edited (a changed head would let the next event be sealed onto another
    chain or its anomalies be judged against other facts)."""
    recorded = store.recorder.ledger_meta().get(SCHEMA_VERSION_KEY, "1")
    if recorded != str(SCHEMA_VERSION):
        raise StoreError(
            f"the ledger store is at schema version {recorded}, this cx-ledger verifies version "
            f"{SCHEMA_VERSION}: "
            + (
                "run `cxl store migrate`, then verify"
                if recorded.isdigit() and int(recorded) < SCHEMA_VERSION
                else "verify it with the cx-ledger that wrote it"
            )
        )
    expected = 0
    streams = 0
    for head in heads:
        expected = (expected + head.row_digest()) % _MODULUS
        streams += 1
    found = 0
    rows = 0
    for page in store.stream_head_rows():
        for customer_id, seq, hash_, facts in page:
            found = (found + _head_row_digest(customer_id, seq, hash_, facts)) % _MODULUS
        rows += len(page)
    if rows != streams or found != expected:
        raise LedgerTamperedError(
            None,
            f"the stream heads ({rows:,} rows) do not match the {streams:,} customers' sealed "
            "events (a row was edited, added or removed)",
            place=STREAM_HEADS,
        )


def _check_ledger_meta(store: LedgerStore, events: int) -> None:
    """The ledger's own settings table holds its id (once anything is sealed) and nothing
    else."""
    try:
        meta = store.recorder.ledger_meta()
    except PersistenceError:
        meta = {"": "table missing"}
    ledger_id = meta.pop("ledger_id", None)
    if meta.pop(SCHEMA_VERSION_KEY, None) not in (None, str(SCHEMA_VERSION)):
        meta[SCHEMA_VERSION_KEY] = "another version"
    try:
        valid = (ledger_id is None and not events) or str(UUID(ledger_id or "")) == ledger_id
    except ValueError:
        valid = False
    if meta or not valid:
        raise LedgerTamperedError(
            None, "the ledger's settings table was edited outside cx-ledger", place="cxl_ledger"
        )


def _check_positions(store: LedgerStore) -> None:
    """Every recorded source position has its mark, written in the same transaction, and the
    mark names the same position: a position moved by hand (which would make a consumer skip
    records) or a mark without its position is caught."""
    positions = store.positions()
    marks = store.source_marks()
    for name in sorted(positions.keys() | marks.keys()):
        mismatch = mark_mismatch(positions.get(name), marks.get(name))
        if mismatch is not None:
            raise LedgerTamperedError(
                None,
                f"{mismatch} (a position or a mark was edited, added or removed outside cx-ledger)",
                place=f"source position {name}",
            )


def verify_chains(
    store: LedgerStore,
    on_progress: Callable[[int], None] | None = None,
    checkpoint: Checkpoint | None = None,
) -> VerifyReport:
    """Return totals when every stored byte checks out; raise at the first that does not
    (``ChainBrokenError`` or ``LedgerTamperedError``, exit code 4).

    With a ``checkpoint`` (its signature already checked), also prove that the ledger extends
    it: the same origin (else ``CheckpointError``), at least as many events, and the root of the
    first ``checkpoint.size`` events — recomputed from the sealed events, never read from the
    stored tree — equal to the signed root; then the consistency proof from the stored tree is
    checked as an auditor would (RFC 9162 §2.1.4.2). Removed, reordered or rewritten events,
    recomputed hashes included, fail with ``LedgerTamperedError``."""
    try:
        store.recorder.tree_size()
    except PersistenceError:
        raise StoreError(
            "the ledger store (CXL_STORE) has no Merkle tree yet: it was written by an older "
            "cx-ledger; any writing command (e.g. `cxl ingest` of an empty file) builds it"
        ) from None
    if checkpoint is not None:
        require_same_ledger(store, checkpoint)
    tree = _TreeCheck(store, None if checkpoint is None else checkpoint.size)
    verifier = _Verifier(tree)
    for page in store.rows():
        for row in page:
            verifier.row(row)
        if on_progress is not None:
            on_progress(verifier.events)
    report = verifier.finish(store)
    if checkpoint is None:
        return report
    if report.events < checkpoint.size:
        raise LedgerTamperedError(
            None,
            f"the checkpoint covers {checkpoint.size:,} events but the ledger holds "
            f"{report.events:,}: events were removed",
            place="checkpoint",
        )
    if tree.snapshot != checkpoint.root:
        raise LedgerTamperedError(
            None,
            f"the ledger's first {checkpoint.size:,} events are not those the checkpoint signed: "
            "events were removed, reordered or rewritten",
            place="checkpoint",
        )
    proof = consistency_path(store.tree_node, checkpoint.size, report.events)
    if not verify_consistency(checkpoint.size, report.events, checkpoint.root, report.root, proof):
        raise LedgerTamperedError(
            None, "the consistency proof from the checkpoint does not verify", place="checkpoint"
        )
    return VerifyReport(
        report.events,
        report.customers,
        report.head_digest,
        report.root,
        checkpoint,
        proof,
    )
