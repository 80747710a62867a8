"""RFC 9162 (Certificate Transparency v2) Merkle trees: hashing, proofs and their verifiers.

Pure functions, no I/O. Hashing is exactly §2.1.1: leaf = SHA-256(0x00 || data), node =
SHA-256(0x01 || left || right), empty tree = SHA-256(""). Proof generation follows §2.1.3.1
(PATH) and §2.1.4.1 (SUBPROOF); verification follows the algorithms of §2.1.3.2 and §2.1.4.2
and returns False, never raises, on any malformed input, so an auditor's tool can feed it
whatever a log hands out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class _Tree:
    """Subtree roots over a fixed list of leaf hashes, each computed once."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self.hashes = list(hashes)
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return self.hashes[start]
        k = _split(n)
        return node_hash(self.mth(start, start + k), self.mth(start + k, end))

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n <= 1:
            return []
        k = _split(n)
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.mth(start, end)]
        k = _split(n)
        if m <= k:
            return [*self.subproof(m, start, start + k, complete), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]


def root(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash of the entries' raw bytes."""
    return root_from_hashes([leaf_hash(x) for x in leaves])


def root_from_hashes(hashes: Sequence[bytes]) -> bytes:
    return _Tree(hashes).mth(0, len(hashes))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for leaves[index] in the tree of all `leaves`."""
    return inclusion_proof_from_hashes([leaf_hash(x) for x in leaves], index)


def inclusion_proof_from_hashes(hashes: Sequence[bytes], index: int) -> list[bytes]:
    if not 0 <= index < len(hashes):
        raise ValueError(f"index {index} is outside a tree of size {len(hashes)}")
    return _Tree(hashes).path(index, 0, len(hashes))


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Proof that the tree of leaves[:old_size] is a prefix of the tree of all `leaves`."""
    return consistency_proof_from_hashes([leaf_hash(x) for x in leaves], old_size)


def consistency_proof_from_hashes(hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    if not 0 <= old_size <= len(hashes):
        raise ValueError(f"old size {old_size} is outside 0..{len(hashes)}")
    if old_size in (0, len(hashes)):
        return []
    return _Tree(hashes).subproof(old_size, 0, len(hashes), True)


def _valid_hashes(*values: object) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2."""
    try:
        if not (isinstance(index, int) and isinstance(size, int)) or not 0 <= index < size:
            return False
        if not _valid_hashes(leaf_hash, root, *proof):
            return False
        fn, sn, r = index, size - 1, leaf_hash
        for p in proof:
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
    except (TypeError, ValueError):
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2 (an empty old tree is consistent with any tree; equal sizes need
    equal roots and an empty proof)."""
    try:
        if not (isinstance(old_size, int) and isinstance(new_size, int)):
            return False
        if not 0 <= old_size <= new_size or not _valid_hashes(old_root, new_root, *proof):
            return False
        if old_size == 0:
            return len(proof) == 0
        if old_size == new_size:
            return len(proof) == 0 and old_root == new_root
        path = list(proof)
        if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
            path = [old_root, *path]
        if not path:
            return False
        fn, sn = old_size - 1, new_size - 1
        while fn & 1:
            fn >>= 1
            sn >>= 1
        fr = sr = path[0]
        for c in path[1:]:
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
        return fr == old_root and sr == new_root and sn == 0
    except (TypeError, ValueError):
        return False
