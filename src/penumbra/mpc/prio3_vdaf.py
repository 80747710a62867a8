"""The Prio3 VDAF itself (draft-irtf-cfrg-vdaf-20, section "Prio3"), over any validity circuit.

A Client `shard`s a measurement into one public share and SHARES input shares; each
Aggregator runs `verify_init` on its input share, the verifier shares are combined by
`verifier_shares_to_message` (which raises ValueError when the proof fails), and
`verify_next` returns the Aggregator's output share (or raises when the joint randomness the
Client claimed is not the one the Aggregators recomputed). Output shares are summed with
`agg_init`/`agg_update`/`merge` and the Collector `unshard`s the aggregate shares.

Every message has the draft's byte encoding (`encode_*`/`decode_*`, from `encoding.py`);
decoders raise ValueError on malformed bytes. Field vectors are `list[int]` (see `field.py`).
The instantiations (which circuit, field and algorithm ID) are in penumbra.mpc.prio3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from penumbra.mpc.encoding import (
    InputShare,
    Prio3Encoding,
    PublicShare,
    VerifierMessage,
    VerifierShare,
    VerifyState,
)
from penumbra.mpc.field import Field
from penumbra.mpc.flp import Flp, Valid, forget_reused_rows, wire_poly_len
from penumbra.mpc.xof import Xof, XofTurboShake128, format_dst

USAGE_MEAS_SHARE = 1
USAGE_PROOF_SHARE = 2
USAGE_JOINT_RANDOMNESS = 3
USAGE_PROVE_RANDOMNESS = 4
USAGE_QUERY_RANDOMNESS = 5
USAGE_JOINT_RAND_SEED = 6
USAGE_JOINT_RAND_PART = 7


def _byte(x: int) -> bytes:
    return x.to_bytes(1, "big")


class Prio3(Prio3Encoding):
    """Prio3 over an FLP; subclasses fix the circuit, the field and the algorithm ID."""

    ID: int
    NONCE_SIZE = 16
    ROUNDS = 1
    xof: type[Xof] = XofTurboShake128

    def __init__(self, valid: Valid, shares: int = 2, proofs: int = 1) -> None:
        if not 2 <= shares < 256:
            raise ValueError("shares must be in [2, 256)")
        if not 1 <= proofs < 256:
            raise ValueError("proofs must be in [1, 256)")
        self.valid = valid
        self.flp = Flp(valid)
        self.field: type[Field] = valid.field
        self.SHARES = shares
        self.PROOFS = proofs
        self.VERIFY_KEY_SIZE = self.xof.SEED_SIZE
        seeds = shares if self.flp.JOINT_RAND_LEN == 0 else 2 * shares
        self.RAND_SIZE = self.xof.SEED_SIZE * seeds

    # -- domain separation and derived randomness -------------------------------------------

    def domain_separation_tag(self, usage: int, ctx: bytes) -> bytes:
        return format_dst(0, self.ID, usage) + ctx

    def helper_meas_share(self, ctx: bytes, agg_id: int, share: bytes) -> list[int]:
        return self.xof.expand_into_vec(
            self.field,
            share,
            self.domain_separation_tag(USAGE_MEAS_SHARE, ctx),
            _byte(agg_id),
            self.flp.MEAS_LEN,
        )

    def helper_proofs_share(self, ctx: bytes, agg_id: int, share: bytes) -> list[int]:
        return self.xof.expand_into_vec(
            self.field,
            share,
            self.domain_separation_tag(USAGE_PROOF_SHARE, ctx),
            _byte(self.PROOFS) + _byte(agg_id),
            self.flp.PROOF_LEN * self.PROOFS,
        )

    def expand_input_share(
        self, ctx: bytes, agg_id: int, input_share: InputShare
    ) -> tuple[list[int], list[int], bytes | None]:
        if agg_id > 0:
            if len(input_share) != 2:
                raise ValueError("helper input share expected")
            share, blind = input_share  # type: ignore[misc]
            return (
                self.helper_meas_share(ctx, agg_id, share),
                self.helper_proofs_share(ctx, agg_id, share),
                blind,
            )
        if len(input_share) != 3:
            raise ValueError("leader input share expected")
        meas_share, proofs_share, blind = input_share  # type: ignore[misc]
        return list(meas_share), list(proofs_share), blind

    def prove_rands(self, ctx: bytes, prove_seed: bytes) -> list[int]:
        return self.xof.expand_into_vec(
            self.field,
            prove_seed,
            self.domain_separation_tag(USAGE_PROVE_RANDOMNESS, ctx),
            _byte(self.PROOFS),
            self.flp.PROVE_RAND_LEN * self.PROOFS,
        )

    def query_rands(self, verify_key: bytes, ctx: bytes, nonce: bytes) -> list[int]:
        return self.xof.expand_into_vec(
            self.field,
            verify_key,
            self.domain_separation_tag(USAGE_QUERY_RANDOMNESS, ctx),
            _byte(self.PROOFS) + nonce,
            self.flp.QUERY_RAND_LEN * self.PROOFS,
        )

    def joint_rand_part(
        self, ctx: bytes, agg_id: int, blind: bytes, meas_share: Sequence[int], nonce: bytes
    ) -> bytes:
        return self.xof.derive_seed(
            blind,
            self.domain_separation_tag(USAGE_JOINT_RAND_PART, ctx),
            _byte(agg_id) + nonce + self.field.encode_vec(meas_share),
        )

    def joint_rand_seed(self, ctx: bytes, joint_rand_parts: Sequence[bytes]) -> bytes:
        return self.xof.derive_seed(
            bytes(self.xof.SEED_SIZE),
            self.domain_separation_tag(USAGE_JOINT_RAND_SEED, ctx),
            b"".join(joint_rand_parts),
        )

    def joint_rands(self, ctx: bytes, joint_rand_seed: bytes) -> list[int]:
        return self.xof.expand_into_vec(
            self.field,
            joint_rand_seed,
            self.domain_separation_tag(USAGE_JOINT_RANDOMNESS, ctx),
            _byte(self.PROOFS),
            self.flp.JOINT_RAND_LEN * self.PROOFS,
        )

    def soundness_bits(self) -> float:
        """-log2 of the chance that an invalid measurement passes verification (an estimate).

        Per proof, by the FLP theorem of BBCGGI19 (4.3) and Schwartz-Zippel for the random
        linear combinations: the gadget-polynomial identity test fails with probability at
        most `degree * P / (|F| - P)` (P the wire polynomials' length), the joint-randomness
        combination of the range checks (a polynomial of degree `chunk` in the randomness)
        with at most `chunk / |F|`, and the query-randomness combination of the circuit
        outputs with at most `1 / |F|`. Each proof draws its own joint and query randomness,
        so an invalid measurement must pass every proof: the errors multiply.

        Per attempt: the query randomness comes from the Aggregators' secret verify key, but the
        joint randomness is derived (Fiat-Shamir) from blinds the Client picks, so a cheating
        Client can re-draw it offline; after q tries the joint-randomness terms lose about
        log2(q) bits. With three Field64 proofs at 10k candidates the estimate stays above one
        Field128 proof's for any feasible q (each term is ~55 bits per proof).
        """
        field_size = self.field.MODULUS
        per_proof = 0.0
        for gadget, calls in zip(self.valid.GADGETS, self.valid.GADGET_CALLS, strict=True):
            points = wire_poly_len(calls)
            per_proof += gadget.DEGREE * points / (field_size - points)
        chunk = getattr(self.valid, "chunk_length", 1)
        per_proof += (chunk + 1) / field_size
        return -self.PROOFS * math.log2(per_proof)

    # -- sharding ---------------------------------------------------------------------------

    def shard(
        self, ctx: bytes, measurement: Any, nonce: bytes, rand: bytes
    ) -> tuple[PublicShare, list[InputShare]]:
        """Encode (ValueError on an invalid measurement) and split into shares.

        `rand` must be RAND_SIZE fresh random bytes (`secrets.token_bytes`), `nonce`
        NONCE_SIZE bytes unique per report.
        """
        meas = self.valid.encode(measurement)  # type: ignore[attr-defined]
        return self._shard_encoded(ctx, meas, nonce, rand)

    def _shard_encoded(
        self, ctx: bytes, meas: Sequence[int], nonce: bytes, rand: bytes
    ) -> tuple[PublicShare, list[InputShare]]:
        """Shard an already encoded measurement without validating it (tests craft invalid
        encodings here to check that honest Aggregators reject them)."""
        try:
            return self._shard_unchecked(ctx, meas, nonce, rand)
        finally:
            forget_reused_rows()  # measurement-derived rows leave memory with the shard
            self.valid.forget_memos()

    def _shard_unchecked(
        self, ctx: bytes, meas: Sequence[int], nonce: bytes, rand: bytes
    ) -> tuple[PublicShare, list[InputShare]]:
        if len(nonce) != self.NONCE_SIZE:
            raise ValueError("incorrect nonce size")
        if len(rand) != self.RAND_SIZE:
            raise ValueError("incorrect size of random bytes argument")
        if len(meas) != self.flp.MEAS_LEN:
            raise ValueError("encoded measurement has the wrong length")
        meas = [x % self.field.MODULUS for x in meas]
        size = self.xof.SEED_SIZE
        seeds = [rand[i : i + size] for i in range(0, self.RAND_SIZE, size)]
        use_joint = self.flp.JOINT_RAND_LEN > 0
        helpers = self.SHARES - 1
        if use_joint:
            helper_shares = seeds[0 : 2 * helpers : 2]
            helper_blinds: list[bytes | None] = list(seeds[1 : 2 * helpers : 2])
            leader_blind: bytes | None = seeds[2 * helpers]
            prove_seed = seeds[2 * helpers + 1]
        else:
            helper_shares = seeds[:helpers]
            helper_blinds = [None] * helpers
            leader_blind = None
            prove_seed = seeds[helpers]

        leader_meas = list(meas)
        joint_rand_parts: list[bytes] = []
        for j in range(helpers):
            share = self.helper_meas_share(ctx, j + 1, helper_shares[j])
            leader_meas = self.field.vec_sub(leader_meas, share)
            if use_joint:
                blind = helper_blinds[j]
                assert blind is not None
                joint_rand_parts.append(self.joint_rand_part(ctx, j + 1, blind, share, nonce))
        joint_rands: list[int] = []
        if use_joint:
            assert leader_blind is not None
            joint_rand_parts.insert(
                0, self.joint_rand_part(ctx, 0, leader_blind, leader_meas, nonce)
            )
            joint_rands = self.joint_rands(ctx, self.joint_rand_seed(ctx, joint_rand_parts))

        prove_rands = self.prove_rands(ctx, prove_seed)
        plen, jlen = self.flp.PROVE_RAND_LEN, self.flp.JOINT_RAND_LEN
        leader_proofs: list[int] = []
        for k in range(self.PROOFS):
            leader_proofs += self.flp.prove(
                meas,
                prove_rands[k * plen : (k + 1) * plen],
                joint_rands[k * jlen : (k + 1) * jlen],
            )
        for j in range(helpers):
            share = self.helper_proofs_share(ctx, j + 1, helper_shares[j])
            leader_proofs = self.field.vec_sub(leader_proofs, share)

        input_shares: list[InputShare] = [(leader_meas, leader_proofs, leader_blind)]
        for j in range(helpers):
            input_shares.append((helper_shares[j], helper_blinds[j]))
        return (joint_rand_parts if use_joint else None), input_shares

    # -- verification -----------------------------------------------------------------------

    def verify_init(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        agg_param: None,
        nonce: bytes,
        public_share: PublicShare,
        input_share: InputShare,
    ) -> tuple[VerifyState, VerifierShare]:
        try:
            return self._verify_init(verify_key, ctx, agg_id, nonce, public_share, input_share)
        finally:
            self.valid.forget_memos()  # the share's words and truncation stay with the call

    def _verify_init(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        nonce: bytes,
        public_share: PublicShare,
        input_share: InputShare,
    ) -> tuple[VerifyState, VerifierShare]:
        if len(verify_key) != self.VERIFY_KEY_SIZE:
            raise ValueError("incorrect verify key size")
        if len(nonce) != self.NONCE_SIZE:
            raise ValueError("incorrect nonce size")
        if not 0 <= agg_id < self.SHARES:
            raise ValueError("aggregator id out of range")
        meas_share, proofs_share, blind = self.expand_input_share(ctx, agg_id, input_share)
        if len(meas_share) != self.flp.MEAS_LEN:
            raise ValueError("measurement share has the wrong length")
        if len(proofs_share) != self.flp.PROOF_LEN * self.PROOFS:
            raise ValueError("proof share has the wrong length")
        out_share = self.valid.truncate(meas_share)

        joint_rands: list[int] = []
        corrected_seed: bytes | None = None
        joint_rand_part: bytes | None = None
        if self.flp.JOINT_RAND_LEN > 0:
            if blind is None or public_share is None or len(public_share) != self.SHARES:
                raise ValueError("joint randomness blind or parts missing")
            joint_rand_part = self.joint_rand_part(ctx, agg_id, blind, meas_share, nonce)
            parts = list(public_share)
            parts[agg_id] = joint_rand_part
            corrected_seed = self.joint_rand_seed(ctx, parts)
            joint_rands = self.joint_rands(ctx, corrected_seed)

        query_rands = self.query_rands(verify_key, ctx, nonce)
        qlen, jlen, plen = self.flp.QUERY_RAND_LEN, self.flp.JOINT_RAND_LEN, self.flp.PROOF_LEN
        verifiers_share: list[int] = []
        for k in range(self.PROOFS):
            verifiers_share += self.flp.query(
                meas_share,
                proofs_share[k * plen : (k + 1) * plen],
                query_rands[k * qlen : (k + 1) * qlen],
                joint_rands[k * jlen : (k + 1) * jlen],
                self.SHARES,
            )
        return (out_share, corrected_seed), (verifiers_share, joint_rand_part)

    def verifier_shares_to_message(
        self, ctx: bytes, agg_param: None, verifier_shares: Sequence[VerifierShare]
    ) -> VerifierMessage:
        """Combine all Aggregators' verifier shares; ValueError if any proof is rejected."""
        if len(verifier_shares) != self.SHARES:
            raise ValueError(f"expected {self.SHARES} verifier shares")
        vlen = self.flp.VERIFIER_LEN
        verifiers = [0] * (vlen * self.PROOFS)
        parts: list[bytes] = []
        for share, part in verifier_shares:
            if len(share) != len(verifiers):
                raise ValueError("verifier share has the wrong length")
            verifiers = self.field.vec_add(verifiers, share)
            if self.flp.JOINT_RAND_LEN > 0:
                if part is None:
                    raise ValueError("joint randomness part missing")
                parts.append(part)
        for k in range(self.PROOFS):
            if not self.flp.decide(verifiers[k * vlen : (k + 1) * vlen]):
                raise ValueError("proof verifier check failed")
        return self.joint_rand_seed(ctx, parts) if self.flp.JOINT_RAND_LEN > 0 else None

    def verify_next(
        self, ctx: bytes, verify_state: VerifyState, verifier_message: VerifierMessage
    ) -> list[int]:
        out_share, corrected_seed = verify_state
        if verifier_message != corrected_seed:
            raise ValueError("joint randomness check failed")
        return out_share

    # -- aggregation and unsharding ---------------------------------------------------------

    def is_valid(self, agg_param: None, previous_agg_params: Sequence[None]) -> bool:
        return len(previous_agg_params) == 0

    def agg_init(self, agg_param: None) -> list[int]:
        return [0] * self.flp.OUTPUT_LEN

    def agg_update(
        self, agg_param: None, agg_share: Sequence[int], out_share: Sequence[int]
    ) -> list[int]:
        return self.field.vec_add(agg_share, out_share)

    def merge(self, agg_param: None, agg_shares: Sequence[Sequence[int]]) -> list[int]:
        agg = self.agg_init(None)
        for share in agg_shares:
            agg = self.field.vec_add(agg, share)
        return agg

    def unshard(
        self, agg_param: None, agg_shares: Sequence[Sequence[int]], num_measurements: int
    ) -> Any:
        agg = self.merge(None, agg_shares)
        return self.valid.decode(agg, num_measurements)  # type: ignore[attr-defined]
