"""RFC 9162 tree hashing and proofs, checked against the RFC's recursive definitions."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    TreeBuilder,
    consistency_path,
    frontier_positions,
    inclusion_path,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)


def _mth(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 §2.1.1 defines it, over leaf data."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _nodes(data: list[bytes]) -> dict[tuple[int, int], bytes]:
    builder = TreeBuilder()
    nodes: dict[tuple[int, int], bytes] = {}
    for item in data:
        for level, index, digest in builder.append(leaf_hash(item)):
            nodes[level, index] = digest
    return nodes


def _data(n: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(n)]


@given(st.integers(0, 70))
def test_the_incremental_root_is_the_rfc_root_at_every_size(n: int) -> None:
    data = _data(n)
    assert root_of(leaf_hash(d) for d in data) == _mth(data)
    assert root_of([]) == EMPTY_ROOT


@given(st.integers(1, 70), st.data())
def test_inclusion_proofs_verify_and_a_wrong_leaf_or_index_does_not(
    n: int, draw: st.DataObject
) -> None:
    data = _data(n)
    nodes = _nodes(data)
    root = _mth(data)
    index = draw.draw(st.integers(0, n - 1))
    path = inclusion_path(lambda lv, i: nodes[lv, i], index, n)
    assert verify_inclusion(leaf_hash(data[index]), index, n, path, root)
    assert not verify_inclusion(leaf_hash(b"other"), index, n, path, root)
    if n > 1:
        other = (index + 1) % n
        assert not verify_inclusion(leaf_hash(data[index]), other, n, path, root)


@given(st.integers(1, 70), st.data())
def test_consistency_proofs_verify_only_for_an_append_only_extension(
    n: int, draw: st.DataObject
) -> None:
    data = _data(n)
    nodes = _nodes(data)
    old = draw.draw(st.integers(1, n))
    path = consistency_path(lambda lv, i: nodes[lv, i], old, n)
    assert verify_consistency(old, n, _mth(data[:old]), _mth(data), path)
    rewritten = [b"x" * 32, *data[1:old]]
    assert not verify_consistency(old, n, _mth(rewritten), _mth(data), path)
    if old < n:
        assert not verify_consistency(old, n, _mth(data[:old]), _mth([*data[:-1], b"y"]), path)


@given(st.integers(0, 200), st.integers(0, 50))
def test_a_builder_resumed_from_the_stored_edge_continues_the_same_tree(
    first: int, more: int
) -> None:
    data = _data(first + more)
    nodes = _nodes(data[:first])
    resumed = TreeBuilder(first, {p: nodes[p] for p in frontier_positions(first)})
    for item in data[first:]:
        resumed.append(leaf_hash(item))
    assert resumed.root() == _mth(data)
