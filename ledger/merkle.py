"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verification.

The ledger's tree has one leaf per sealed event, in ledger order; the leaf's data is the event's
32-byte seal hash, so ``leaf_hash = SHA-256(0x00 || seal_hash)`` and an interior node is
``SHA-256(0x01 || left || right)``. Sizes that are not powers of two split at the largest power of
two below the size (RFC 9162 §2.1.1), so a tree of size ``n`` is fully determined by its *full
subtrees*: node ``(level, index)`` covers leaves ``[index·2^level, (index+1)·2^level)``. Those are
what the store keeps (``TreeNodes``), and every root and proof is computed from them.

The verifiers here follow RFC 9162 §2.1.3.2 and §2.1.4.2 word for word and use nothing of the
ledger: they are what an auditor's own code does (the README spells the steps out).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
HASH_BYTES = 32


def leaf_hash(seal_hash: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + seal_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (> 1)."""
    return 1 << ((size - 1).bit_length() - 1)


FullNode = Callable[[int, int], bytes]
"""``(level, index)`` → the stored hash of that full subtree."""


def subtree_root(node: FullNode, start: int, end: int) -> bytes:
    """MTH(D[start:end]) from full-subtree hashes; ``start`` is aligned as in every RFC recursion."""
    size = end - start
    if size == 0:
        return EMPTY_ROOT
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return node(level, start >> level)
    k = _split(size)
    return node_hash(subtree_root(node, start, start + k), subtree_root(node, start + k, end))


def inclusion_path(node: FullNode, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")

    def path(m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*path(m, start, start + k), subtree_root(node, start + k, end)]
        return [*path(m - k, start + k, end), subtree_root(node, start, start + k)]

    return path(index, 0, size)


def consistency_path(node: FullNode, old_size: int, size: int) -> list[bytes]:
    """PROOF(old_size, D[0:size]) (RFC 9162 §2.1.4.1); empty when ``old_size`` is 0 or ``size``."""
    if not 0 <= old_size <= size:
        raise ValueError(f"a tree of size {size} cannot extend one of size {old_size}")
    if old_size in (0, size):
        return []

    def subproof(m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [subtree_root(node, start, end)]
        k = _split(n)
        if m <= k:
            return [*subproof(m, start, start + k, complete), subtree_root(node, start + k, end)]
        return [*subproof(m - k, start + k, end, False), subtree_root(node, start, start + k)]

    return subproof(old_size, 0, size, True)


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``leaf`` (a leaf hash) sit at ``index`` of the tree ``root``?"""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, size: int, old_root: bytes, root: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (``size``, ``root``) an append-only extension of
    (``old_size``, ``old_root``)?"""
    if old_size > size:
        return False
    if old_size == size:
        return not path and old_root == root
    if old_size == 0:
        return not path
    if not path:
        return False
    proof = list(path)
    if old_size & (old_size - 1) == 0:
        proof.insert(0, old_root)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == root and sn == 0


class TreeBuilder:
    """Appends leaves to a tree of ``size`` leaves whose right-edge full subtrees are
    ``frontier`` (``frontier_positions``), and collects every full node that completes.

    Streaming, O(log n) memory: ingest uses it inside each sealing transaction, verify to
    recompute the whole tree from the sealed events."""

    def __init__(self, size: int = 0, frontier: dict[tuple[int, int], bytes] | None = None) -> None:
        self.size = size
        self._edge: dict[int, bytes] = {}
        for (level, index), digest in (frontier or {}).items():
            self._edge[level] = digest
            if (level, index) not in frontier_positions(size):
                raise ValueError(f"node {level}/{index} is not on the edge of a tree of {size}")
        if len(self._edge) != len(frontier_positions(size)):
            raise ValueError(f"the edge of a tree of {size} leaves is incomplete")

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; the full nodes it completes, leaf first, as (level, index, hash)."""
        index = self.size
        made = [(0, index, leaf)]
        digest = leaf
        level = 0
        while (index >> level) & 1:
            digest = node_hash(self._edge.pop(level), digest)
            level += 1
            made.append((level, index >> level, digest))
        self._edge[level] = digest
        self.size += 1
        return made

    def root(self) -> bytes:
        """The root of the tree so far (RFC 9162 MTH), from its right-edge full subtrees."""
        digest: bytes | None = None
        for level in sorted(self._edge):
            digest = self._edge[level] if digest is None else node_hash(self._edge[level], digest)
        return EMPTY_ROOT if digest is None else digest


def frontier_positions(size: int) -> list[tuple[int, int]]:
    """The (level, index) of the full subtrees a tree of ``size`` leaves decomposes into."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1]


def root_of(leaves: Iterable[bytes]) -> bytes:
    builder = TreeBuilder()
    for leaf in leaves:
        builder.append(leaf)
    return builder.root()
