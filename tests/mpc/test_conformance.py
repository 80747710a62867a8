"""The draft-irtf-cfrg-vdaf-20 test vectors, replayed operation by operation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from penumbra.mpc.conformance import run_vector, run_xof_vector

VECTORS = Path(__file__).parent / "vectors"
SHARED = Path("/work/shared/testdata/vdaf")


def _vector_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _run(path: Path) -> None:
    if path.name.startswith("Xof"):
        run_xof_vector(str(path))
    else:
        run_vector(str(path))


def test_vectors_are_present() -> None:
    names = {p.name for p in _vector_files(VECTORS)}
    prefixes = ("Prio3Count_", "Prio3Sum_", "Prio3SumVec_", "Prio3Histogram_", "Xof")
    for prefix in (*prefixes, "Prio3SumVecWithMultiproof_"):
        assert any(n.startswith(prefix) for n in names), prefix
    assert any("_bad_" in n for n in names)


@pytest.mark.parametrize("path", _vector_files(VECTORS), ids=lambda p: p.name)
def test_vector(path: Path) -> None:
    _run(path)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared draft vectors not on this machine")
@pytest.mark.parametrize("path", _vector_files(SHARED), ids=lambda p: f"shared-{p.name}")
def test_shared_vector(path: Path) -> None:
    _run(path)


def _mutate_and_run(tmp_path: Path, name: str, edit: object) -> None:
    doc = json.loads((VECTORS / name).read_text())
    assert callable(edit)
    edit(doc)
    target = tmp_path / name
    target.write_text(json.dumps(doc))
    _run(target)


def _flip(hex_string: str, index: int) -> str:
    raw = bytearray(bytes.fromhex(hex_string))
    raw[index] ^= 0x01
    return raw.hex()


@pytest.mark.parametrize(
    ("name", "edit", "operation"),
    [
        (
            "Prio3SumVec_0.json",
            lambda d: d["reports"][0]["input_shares"].__setitem__(
                0, _flip(d["reports"][0]["input_shares"][0], 3)
            ),
            "shard",
        ),
        (
            "Prio3Sum_0.json",
            lambda d: d["reports"][0]["verifier_shares"][0].__setitem__(
                1, _flip(d["reports"][0]["verifier_shares"][0][1], 0)
            ),
            "verify_init",
        ),
        (
            "Prio3Histogram_0.json",
            lambda d: d.__setitem__("agg_result", [*d["agg_result"][:-1], 7]),
            "unshard",
        ),
        (
            "Prio3Count_0.json",
            lambda d: d["agg_shares"].__setitem__(0, _flip(d["agg_shares"][0], 1)),
            "aggregate",
        ),
        (  # a bit of the leader's share of the second proof (element 48 + 29 + 3)
            "Prio3SumVecWithMultiproof_1.json",
            lambda d: d["reports"][1]["input_shares"].__setitem__(
                0, _flip(d["reports"][1]["input_shares"][0], 8 * (48 + 29 + 3))
            ),
            "shard",
        ),
        (
            "Prio3SumVecWithMultiproof_0.json",  # the third proof's first verifier element
            lambda d: d["reports"][2]["verifier_shares"][0].__setitem__(
                1, _flip(d["reports"][2]["verifier_shares"][0][1], 8 * 2 * 20)
            ),
            "verify_init",
        ),
    ],
)
def test_mutated_vector_fails(tmp_path: Path, name: str, edit: object, operation: str) -> None:
    with pytest.raises(AssertionError, match=operation):
        _mutate_and_run(tmp_path, name, edit)


def test_negative_vector_that_passes_is_caught(tmp_path: Path) -> None:
    """A file claiming a valid report's check fails must itself be reported."""

    def claim_failure(d: dict[str, list[dict[str, object]]]) -> None:
        for op in d["operations"]:
            if op["operation"] == "verifier_shares_to_message":
                op["success"] = False

    with pytest.raises(AssertionError, match="succeeded but the test vector says it fails"):
        _mutate_and_run(tmp_path, "Prio3Histogram_0.json", claim_failure)


def test_multiproof_vectors_use_field64_and_three_proofs() -> None:
    """The files do not name the field or proof count; a wrong guess changes every length."""
    from penumbra.mpc.conformance import vdaf_from_vector
    from penumbra.mpc.field import Field64

    name = "Prio3SumVecWithMultiproof_0.json"
    vdaf = vdaf_from_vector(name, json.loads((VECTORS / name).read_text()))
    assert vdaf.field is Field64 and vdaf.PROOFS == 3 and vdaf.ID == 0xFFFFFFFF
    # leader share: 80 measurement elements, 3 proofs of 49, one 32-byte blind (1848 bytes)
    assert 8 * (vdaf.flp.MEAS_LEN + vdaf.PROOFS * vdaf.flp.PROOF_LEN) + 32 == 1848
