"""XOFs: the draft's vectors (also in test_conformance) plus streaming and input checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from penumbra.mpc.conformance import run_xof_vector
from penumbra.mpc.field import Field64, Field128
from penumbra.mpc.xof import Xof, XofFixedKeyAes128, XofTurboShake128, format_dst

VECTORS = Path(__file__).parent / "vectors"


@pytest.mark.parametrize("name", ["XofTurboShake128.json", "XofFixedKeyAes128.json"])
def test_draft_vectors(name: str) -> None:
    run_xof_vector(str(VECTORS / name))


@pytest.mark.parametrize("xof", [XofTurboShake128, XofFixedKeyAes128])
def test_output_is_a_stream(xof: type[Xof]) -> None:
    seed = bytes(range(xof.SEED_SIZE))
    whole = xof(seed, b"dst", b"binder").next(100)
    parts = xof(seed, b"dst", b"binder")
    assert parts.next(7) + parts.next(50) + parts.next(43) == whole
    assert xof(seed, b"dsT", b"binder").next(100) != whole
    assert xof(seed, b"dst", b"binde").next(100) != whole


@pytest.mark.parametrize("field", [Field64, Field128])
def test_next_vec_is_in_range_and_deterministic(field: type[Field64] | type[Field128]) -> None:
    seed = bytes(32)
    a = XofTurboShake128.expand_into_vec(field, seed, b"d", b"b", 300)
    assert a == XofTurboShake128.expand_into_vec(field, seed, b"d", b"b", 300)
    assert len(a) == 300 and all(0 <= x < field.MODULUS for x in a)
    # Element i depends only on the stream, not on how many are asked for.
    assert XofTurboShake128.expand_into_vec(field, seed, b"d", b"b", 10) == a[:10]


def test_input_checks_and_dst() -> None:
    with pytest.raises(ValueError, match="seed size"):
        XofFixedKeyAes128(bytes(15), b"", b"")
    with pytest.raises(ValueError, match="255"):
        XofTurboShake128(bytes(256), b"", b"")
    assert format_dst(0, 3, 7) == bytes([18, 0, 0, 0, 0, 3, 0, 7])
