"""Merkle tree hashing and proofs exactly as RFC 9162 section 2.1 defines them.

Leaf hash ``SHA-256(0x00 || entry)``, node hash ``SHA-256(0x01 || left || right)``; the
tree over ``n`` leaves splits at the largest power of two smaller than ``n``.

Proof *generation* reads hashes of complete (perfect, aligned) subtrees through a callback
``get_node(level, index)`` returning the hash of leaves ``[index << level, (index + 1) << level)``,
so a store that keeps those nodes answers proofs without rehashing leaves. Proof
*verification* needs nothing but hashes and is what an offline auditor runs.

>>> root_of([b"a", b"b"]) == node_hash(leaf_hash(b"a"), leaf_hash(b"b"))
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from policies.errors import ProofError as ProofError  # re-exported: raised here

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeGetter = Callable[[int, int], bytes]


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class TreeBuilder:
    """Incremental tree head: append leaf hashes, read the root at any size in O(log n).

    >>> b = TreeBuilder(); b.append(leaf_hash(b"")); b.root().hex()[:8]
    '6e340b9c'
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, hash) of perfect subtrees
        self.size = 0

    def append(self, leaf: bytes) -> None:
        height, h = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            h = node_hash(self._stack.pop()[1], h)
            height += 1
        self._stack.append((height, h))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


def root_of(entries: Iterable[bytes]) -> bytes:
    """Merkle tree hash of a list of entries (not leaf hashes)."""
    builder = TreeBuilder()
    for entry in entries:
        builder.append(leaf_hash(entry))
    return builder.root()


def subtree_hash(get_node: NodeGetter, start: int, end: int) -> bytes:
    """MTH of leaves ``[start, end)`` where ``start`` is aligned as in the RFC 9162 recursion.

    The range is cut into perfect aligned subtrees of decreasing size, then folded from
    the right, which is the same value the recursive definition yields.
    """
    if end <= start:
        return EMPTY_ROOT
    pieces: list[bytes] = []
    pos = start
    while pos < end:
        level = (end - pos).bit_length() - 1
        while pos % (1 << level):
            level -= 1
        pieces.append(get_node(level, pos >> level))
        pos += 1 << level
    h = pieces[-1]
    for left in reversed(pieces[:-1]):
        h = node_hash(left, h)
    return h


def inclusion_proof(get_node: NodeGetter, index: int, size: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:size]): sibling hashes from the leaf up."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree_hash(get_node, lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_hash(get_node, lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def consistency_proof(get_node: NodeGetter, first: int, second: int) -> list[bytes]:
    """RFC 9162 PROOF(first, D[0:second]) that the first tree is a prefix of the second."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    proof: list[bytes] = []
    m, lo, hi, complete = first, 0, second, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(subtree_hash(get_node, lo, hi))
            break
        k = _split(n)
        if m <= k:
            proof.append(subtree_hash(get_node, lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree_hash(get_node, lo, lo + k))
            m, lo, complete = m - k, lo + k, False
    proof.reverse()
    return proof


def _check_hashes(*hashes: bytes) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ProofError(f"a hash has {len(h)} bytes, expected {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root implied by a leaf hash and its audit path."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hashes(leaf, *proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ``ProofError`` unless ``proof`` puts leaf hash ``leaf`` at ``index`` under ``root``."""
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the tree head root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2: raise ``ProofError`` unless the second tree extends the first."""
    if not 0 <= first <= second:
        raise ProofError(f"tree size went from {first} to {second}: a log never shrinks")
    if first == second:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError(f"two different roots for the same tree size {first}")
        return
    if first == 0:
        if proof:
            raise ProofError("consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    _check_hashes(first_root, second_root, *proof)
    path = list(proof)
    if first & (first - 1) == 0:  # first is an exact power of two
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != first_root:
        raise ProofError(f"the earlier tree head (size {first}) is not a prefix of this log")
    if sr != second_root:
        raise ProofError(f"consistency proof does not lead to the root of size {second}")
