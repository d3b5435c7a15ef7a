"""What proves the ledger to an auditor: a signed checkpoint of its Merkle tree, and the
inclusion proof of a sealed event in it (RFC 9162), each checked before it is handed out.
``cxl checkpoint``/``cxl proof`` print them; ``cxl serve`` answers them over HTTP."""

from __future__ import annotations

import base64
from typing import Any

from ledger.audit import require_same_ledger
from ledger.checkpoint import Checkpoint, CheckpointSigner
from ledger.errors import LedgerTamperedError, StoreError
from ledger.merkle import inclusion_path, leaf_hash, verify_inclusion
from ledger.store import LedgerStore


def signed_checkpoint(store: LedgerStore, signer: CheckpointSigner) -> tuple[Checkpoint, str]:
    """The checkpoint of the store's tree as it is now, and its signed note."""
    size, root = store.tree_root()
    checkpoint = Checkpoint(store.origin, size, root)
    return checkpoint, signer.sign(checkpoint)


def inclusion_proof(
    store: LedgerStore, event_id: str, checkpoint: Checkpoint | None
) -> dict[str, Any]:
    """The RFC 9162 inclusion proof of a sealed event in the tree of ``checkpoint`` (or of the
    whole ledger now), checked before it is returned."""
    customer_id = _customer_of(store, event_id)
    sealed = next((e for e in store.stream(customer_id) if e.event_id == event_id), None)
    position = None if sealed is None else store.recorder.position_of(customer_id, sealed.seq + 1)
    if sealed is None or position is None:
        raise StoreError(f"the ledger holds no sealed event {event_id!r}")
    leaf = store.sealed_through(position) - 1
    if checkpoint is not None:
        require_same_ledger(store, checkpoint)
    size, root = store.tree_root(None if checkpoint is None else checkpoint.size)
    if checkpoint is not None:
        if leaf >= checkpoint.size:
            raise StoreError(
                f"event {event_id} was sealed after the checkpoint (leaf {leaf:,}; the checkpoint "
                f"covers {checkpoint.size:,})"
            )
        if root != checkpoint.root:
            raise LedgerTamperedError(
                None,
                f"the ledger's first {checkpoint.size:,} events are not those the checkpoint "
                "signed (run `cxl verify --checkpoint`)",
                place="checkpoint",
            )
    path = inclusion_path(store.tree_node, leaf, size)
    leaf_digest = leaf_hash(bytes.fromhex(sealed.hash))
    if not verify_inclusion(leaf_digest, leaf, size, path, root):
        raise LedgerTamperedError(
            None,
            f"event {event_id} is not at leaf {leaf:,} of the Merkle tree (run `cxl verify`)",
            place="Merkle tree",
        )
    return {
        "origin": store.origin,
        "event_id": event_id,
        "customer_id": sealed.customer_id,
        "seq": sealed.seq,
        "position": position,
        "seal_hash": sealed.hash,
        "leaf_index": leaf,
        "tree_size": size,
        "leaf_hash": b64(leaf_digest),
        "root_hash": b64(root),
        "inclusion_path": [b64(h) for h in path],
    }


def _customer_of(store: LedgerStore, event_id: str) -> str:
    customer_id = store.recorder.customer_of(event_id)
    if customer_id is None:
        raise StoreError(f"the ledger holds no sealed event {event_id!r}")
    return customer_id


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
