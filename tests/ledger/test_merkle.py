"""RFC 9162 Merkle trees: the transparency-dev inclusion vectors and property tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from penumbra.ledger.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "merkle" / "inclusion"


def _vector_files() -> list[Path]:
    if not VECTORS.is_dir():
        return []
    return sorted(VECTORS.rglob("*.json"))


def _b64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


@pytest.mark.skipif(not VECTORS.is_dir(), reason="../shared/testdata/merkle is not present")
@pytest.mark.parametrize("path", _vector_files(), ids=lambda p: str(p.relative_to(VECTORS)))
def test_rfc9162_inclusion_vectors(path: Path) -> None:
    vector = json.loads(path.read_text())
    proof = [_b64(p) for p in vector["proof"] or []]
    ok = verify_inclusion(
        _b64(vector["leafHash"]) or b"",
        vector["leafIdx"],
        vector["treeSize"],
        proof,  # type: ignore[arg-type]
        _b64(vector["root"]) or b"",
    )
    assert ok is (not vector["wantErr"]), vector["desc"]


def test_vectors_are_there_when_shared_is() -> None:
    if VECTORS.is_dir():
        assert len(_vector_files()) > 50


def test_reference_tree_of_rfc6962() -> None:
    # The 8-leaf reference tree used by transparency-dev/merkle and the RFC 6962 test data.
    leaves = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ]
    assert root([]) == EMPTY_ROOT
    assert root(leaves).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert root(leaves[:3]).hex() == (
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
    )
    assert node_hash(leaf_hash(b""), leaf_hash(b"\x00")) == root(leaves[:2])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 70), st.data())
def test_every_inclusion_proof_verifies_and_any_bit_flip_fails(size: int, data) -> None:  # type: ignore[no-untyped-def]
    leaves = [i.to_bytes(4, "big") for i in range(size)]
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(leaves, index)
    top = root(leaves)
    lh = leaf_hash(leaves[index])
    assert verify_inclusion(lh, index, size, proof, top)
    # any single-bit change of proof, root, leaf, index or size fails
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[which] = _flip(bad[which], bit)
        assert not verify_inclusion(lh, index, size, bad, top)
        assert not verify_inclusion(lh, index, size, proof[:-1], top)
        assert not verify_inclusion(lh, index, size, [*proof, proof[0]], top)
    bit = data.draw(st.integers(0, 255))
    assert not verify_inclusion(lh, index, size, proof, _flip(top, bit))
    assert not verify_inclusion(_flip(lh, bit), index, size, proof, top)
    shift = 1 << data.draw(st.integers(0, 7))
    assert not verify_inclusion(lh, index ^ shift, size, proof, top)
    # A size is only meaningful with its root (a signed checkpoint binds the two), and RFC
    # 9162's verifier accepts a size whose tree has the same path shape; doubling or halving
    # the size (the transparency-dev mutations) changes the shape and must fail.
    assert not verify_inclusion(lh, index, size * 2, proof, top) or size == 1
    if size // 2 != size:
        assert not verify_inclusion(lh, index, size // 2, proof, top) or size == 1


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 70), st.data())
def test_every_consistency_proof_verifies_and_any_bit_flip_fails(size: int, data) -> None:  # type: ignore[no-untyped-def]
    leaves = [i.to_bytes(4, "big") for i in range(size)]
    old = data.draw(st.integers(1, size))
    proof = consistency_proof(leaves, old)
    old_root, new_root = root(leaves[:old]), root(leaves)
    assert verify_consistency(old, size, old_root, new_root, proof)
    bit = data.draw(st.integers(0, 255))
    assert not verify_consistency(old, size, _flip(old_root, bit), new_root, proof)
    assert not verify_consistency(old, size, old_root, _flip(new_root, bit), proof)
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[which] = _flip(bad[which], bit)
        assert not verify_consistency(old, size, old_root, new_root, bad)
    if old < size:
        assert not verify_consistency(old + 1, size, old_root, new_root, proof)
        assert not verify_consistency(old, size * 2, old_root, new_root, proof)


def test_malformed_inputs_return_false() -> None:
    h = leaf_hash(b"x")
    assert not verify_inclusion(h, 0, 1, [], b"short")
    assert not verify_inclusion(h, -1, 1, [], h)
    assert not verify_inclusion(h, 0, 0, [], h)
    assert not verify_inclusion(h, 0, 2, ["not bytes"], h)  # type: ignore[list-item]
    assert not verify_inclusion(h, "0", 1, [], h)  # type: ignore[arg-type]
    assert verify_inclusion(h, 0, 1, [], h)
    assert not verify_consistency(2, 1, h, h, [])
    assert not verify_consistency(1, 2, h, h, [b"\x00" * 31])
    assert verify_consistency(0, 5, EMPTY_ROOT, h, [])
    assert verify_consistency(3, 3, h, h, [])
    assert not verify_consistency(3, 3, h, h, [h])


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)
