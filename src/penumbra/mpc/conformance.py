"""Known-answer tests against the draft-irtf-cfrg-vdaf-20 test vector files.

`run_vector` replays one Prio3 vector file operation by operation (schema: the draft's
"Test Vectors" section) and raises AssertionError naming the operation on any mismatch, or
when an operation the file marks as failing succeeds. `run_xof_vector` checks an XOF file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from penumbra.mpc.field import Field64, Field128
from penumbra.mpc.prio3 import (
    InputShare,
    Prio3,
    Prio3Count,
    Prio3Histogram,
    Prio3Sum,
    Prio3SumVec,
    Prio3SumVecWithMultiproof,
    VerifierShare,
    VerifyState,
)
from penumbra.mpc.xof import Xof, XofFixedKeyAes128, XofTurboShake128

# The draft's reference code generates its Prio3SumVecWithMultiproof vectors with Field64 and
# three proofs; the files do not record either, so they are fixed here.
MULTIPROOF_FIELD = Field64
MULTIPROOF_PROOFS = 3


def vdaf_from_vector(name: str, doc: dict[str, Any]) -> Prio3:
    """The Prio3 instance a vector file describes; `name` is the file name."""
    shares = int(doc["shares"])
    if name.startswith("Prio3Count"):
        return Prio3Count(shares=shares)
    if name.startswith("Prio3SumVecWithMultiproof"):  # before the Prio3SumVec prefix
        return Prio3SumVecWithMultiproof(
            MULTIPROOF_FIELD,
            MULTIPROOF_PROOFS,
            int(doc["length"]),
            int(doc["max_measurement"]),
            int(doc["chunk_length"]),
            shares=shares,
        )
    if name.startswith("Prio3SumVec"):
        return Prio3SumVec(
            int(doc["length"]),
            chunk_length=int(doc["chunk_length"]),
            max_measurement=int(doc["max_measurement"]),
            shares=shares,
        )
    if name.startswith("Prio3Sum"):
        return Prio3Sum(int(doc["max_measurement"]), shares=shares)
    if name.startswith("Prio3Histogram"):
        return Prio3Histogram(int(doc["length"]), int(doc["chunk_length"]), shares=shares)
    raise ValueError(f"{name}: not a Prio3Count/Sum/SumVec/SumVecWithMultiproof/Histogram vector")


class _Report:
    """Per-report state while replaying: decoded messages and each Aggregator's state."""

    def __init__(self, vdaf: Prio3, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.nonce = bytes.fromhex(doc["nonce"])
        self.public_share = vdaf.decode_public_share(bytes.fromhex(doc["public_share"]))
        self.input_shares: list[InputShare] = [
            vdaf.decode_input_share(j, bytes.fromhex(s)) for j, s in enumerate(doc["input_shares"])
        ]
        self.states: dict[int, VerifyState] = {}
        self.verifier_shares: dict[int, VerifierShare] = {}


def _check(cond: bool, op: str, what: str) -> None:
    if not cond:
        raise AssertionError(f"{op}: {what} differs from the test vector")


def _expect_failure(op: str, fn: Any) -> None:
    try:
        fn()
    except ValueError:
        return
    raise AssertionError(f"{op}: succeeded but the test vector says it fails")


def run_vector(path: str) -> None:
    """Replay every operation of one Prio3 test vector file (see module docstring)."""
    file = Path(path)
    doc = json.loads(file.read_text())
    vdaf = vdaf_from_vector(file.name, doc)
    ctx = bytes.fromhex(doc["ctx"])
    verify_key = bytes.fromhex(doc["verify_key"])
    reports = [_Report(vdaf, r) for r in doc["reports"]]
    agg_shares: dict[int, list[int]] = {}
    out_shares: dict[tuple[int, int], list[int]] = {}

    for op in doc["operations"]:
        kind = op["operation"]
        success = bool(op["success"])
        idx = op.get("report_index")
        rep = reports[idx] if idx is not None else None
        agg_id = op.get("aggregator_id")
        name = f"{file.name} {kind} report={idx} aggregator={agg_id}"

        if kind == "shard":
            assert rep is not None
            rand = bytes.fromhex(rep.doc["rand"])
            if not success:
                _expect_failure(
                    name, lambda r=rep, x=rand: vdaf.shard(ctx, r.doc["measurement"], r.nonce, x)
                )
                continue
            public, inputs = vdaf.shard(ctx, rep.doc["measurement"], rep.nonce, rand)
            _check(
                vdaf.encode_public_share(public).hex() == rep.doc["public_share"],
                name,
                "public share",
            )
            for j, share in enumerate(inputs):
                _check(
                    vdaf.encode_input_share(share).hex() == rep.doc["input_shares"][j],
                    name,
                    f"input share {j}",
                )

        elif kind == "verify_init":
            assert rep is not None and agg_id is not None

            def init(r: _Report = rep, j: int = agg_id) -> tuple[VerifyState, VerifierShare]:
                return vdaf.verify_init(
                    verify_key, ctx, j, None, r.nonce, r.public_share, r.input_shares[j]
                )

            if not success:
                _expect_failure(name, init)
                continue
            state, vshare = init()
            rep.states[agg_id] = state
            rep.verifier_shares[agg_id] = vshare
            expected = rep.doc["verifier_shares"][0][agg_id]
            _check(vdaf.encode_verifier_share(vshare).hex() == expected, name, "verifier share")

        elif kind == "verifier_shares_to_message":
            assert rep is not None
            rnd = int(op.get("round", 0))
            shares = [
                vdaf.decode_verifier_share(bytes.fromhex(s))
                for s in rep.doc["verifier_shares"][rnd]
            ]
            if not success:
                _expect_failure(
                    name, lambda s=shares: vdaf.verifier_shares_to_message(ctx, None, s)
                )
                continue
            for j, s in rep.verifier_shares.items():
                _check(s == shares[j], name, f"verifier share {j} (as computed)")
            message = vdaf.verifier_shares_to_message(ctx, None, shares)
            _check(
                vdaf.encode_verifier_message(message).hex() == rep.doc["verifier_messages"][rnd],
                name,
                "verifier message",
            )

        elif kind == "verify_next":
            assert rep is not None and agg_id is not None
            rnd = int(op["round"])
            message = vdaf.decode_verifier_message(
                bytes.fromhex(rep.doc["verifier_messages"][rnd - 1])
            )
            if agg_id not in rep.states:
                raise AssertionError(f"{name}: no verification state (verify_init not run)")
            state = rep.states[agg_id]
            if not success:
                _expect_failure(name, lambda s=state, m=message: vdaf.verify_next(ctx, s, m))
                continue
            out = vdaf.verify_next(ctx, state, message)
            _check(
                vdaf.encode_out_share(out).hex() == rep.doc["out_shares"][agg_id],
                name,
                "output share",
            )
            out_shares[(idx, agg_id)] = out

        elif kind == "aggregate":
            assert agg_id is not None
            agg = vdaf.agg_init(None)
            for (_, j), out in sorted(out_shares.items()):
                if j == agg_id:
                    agg = vdaf.agg_update(None, agg, out)
            agg_shares[agg_id] = agg
            _check(
                vdaf.encode_agg_share(agg).hex() == doc["agg_shares"][agg_id],
                name,
                "aggregate share",
            )

        elif kind == "unshard":
            decoded = [vdaf.decode_agg_share(bytes.fromhex(s)) for s in doc["agg_shares"]]
            result = vdaf.unshard(None, decoded, len(reports))
            _check(result == doc["agg_result"], name, "aggregate result")

        else:
            raise AssertionError(f"{name}: unknown operation")


def run_xof_vector(path: str) -> None:
    """Check `derive_seed` and `expand_into_vec(Field128, ...)` against an XOF vector file."""
    file = Path(path)
    doc = json.loads(file.read_text())
    xof: type[Xof]
    if file.name.startswith("XofTurboShake128"):
        xof = XofTurboShake128
    elif file.name.startswith("XofFixedKeyAes128"):
        xof = XofFixedKeyAes128
    else:
        raise ValueError(f"{file.name}: not an XOF vector")
    seed, dst, binder = (bytes.fromhex(doc[k]) for k in ("seed", "dst", "binder"))
    _check(
        xof.derive_seed(seed, dst, binder).hex() == doc["derived_seed"],
        f"{file.name} derive_seed",
        "derived seed",
    )
    vec = xof.expand_into_vec(Field128, seed, dst, binder, int(doc["length"]))
    _check(
        Field128.encode_vec(vec).hex() == doc["expanded_vec_field128"],
        f"{file.name} expand_into_vec",
        "expanded vector",
    )
