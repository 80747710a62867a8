"""Byte encodings of Prio3's messages (draft-irtf-cfrg-vdaf-20, "Message Serialization").

A mixin of `prio3.Prio3`: the layouts depend on the instance's field, seed size, number of
shares and FLP lengths. Every decoder raises ValueError on bytes of the wrong length or a field
element >= the modulus, so a server can turn any malformed request into a rejection.
"""

from __future__ import annotations

from collections.abc import Sequence

from penumbra.mpc.field import Field
from penumbra.mpc.flp import Flp
from penumbra.mpc.xof import Xof

# Leader: (meas_share, proofs_share, blind); Helper: (seed, blind). Blind is None without
# joint randomness.
LeaderShare = tuple[list[int], list[int], bytes | None]
HelperShare = tuple[bytes, bytes | None]
InputShare = LeaderShare | HelperShare
PublicShare = list[bytes] | None
VerifyState = tuple[list[int], bytes | None]  # (out_share, corrected joint rand seed)
VerifierShare = tuple[list[int], bytes | None]  # (verifiers_share, joint rand part)
VerifierMessage = bytes | None


class Prio3Encoding:
    """`encode_*`/`decode_*` for public, input, verifier and aggregate shares, the verifier
    message, and (not in the draft) the verification state an Aggregator stores."""

    flp: Flp
    field: type[Field]
    xof: type[Xof]
    SHARES: int
    PROOFS: int

    def _seed(self, data: bytes, what: str) -> bytes:
        if len(data) != self.xof.SEED_SIZE:
            raise ValueError(f"{what}: expected {self.xof.SEED_SIZE} bytes, got {len(data)}")
        return data

    def _vec(self, data: bytes, length: int, what: str) -> list[int]:
        if len(data) != length * self.field.ENCODED_SIZE:
            raise ValueError(f"{what}: expected {length} field elements")
        return self.field.decode_vec(data)

    def encode_public_share(self, public_share: PublicShare) -> bytes:
        return b"".join(public_share) if public_share is not None else b""

    def decode_public_share(self, data: bytes) -> PublicShare:
        if self.flp.JOINT_RAND_LEN == 0:
            if data:
                raise ValueError("public share must be empty")
            return None
        size = self.xof.SEED_SIZE
        if len(data) != size * self.SHARES:
            raise ValueError(f"public share: expected {size * self.SHARES} bytes")
        return [data[i : i + size] for i in range(0, len(data), size)]

    def encode_input_share(self, input_share: InputShare) -> bytes:
        if len(input_share) == 3:
            meas_share, proofs_share, blind = input_share  # type: ignore[misc]
            body = self.field.encode_vec(meas_share) + self.field.encode_vec(proofs_share)
        else:
            seed, blind = input_share  # type: ignore[misc]
            body = seed
        return body + (blind if blind is not None else b"")

    def decode_input_share(self, agg_id: int, data: bytes) -> InputShare:
        size = self.xof.SEED_SIZE
        blind_len = size if self.flp.JOINT_RAND_LEN > 0 else 0
        if agg_id == 0:
            n_meas = self.flp.MEAS_LEN
            n_proof = self.flp.PROOF_LEN * self.PROOFS
            vec_len = (n_meas + n_proof) * self.field.ENCODED_SIZE
            if len(data) != vec_len + blind_len:
                raise ValueError(f"leader input share: expected {vec_len + blind_len} bytes")
            vec = self.field.decode_vec(data[:vec_len])
            blind = data[vec_len:] if blind_len else None
            return vec[:n_meas], vec[n_meas:], blind
        if not 0 < agg_id < self.SHARES:
            raise ValueError("aggregator id out of range")
        if len(data) != size + blind_len:
            raise ValueError(f"helper input share: expected {size + blind_len} bytes")
        return data[:size], (data[size:] if blind_len else None)

    def encode_verifier_share(self, verifier_share: VerifierShare) -> bytes:
        share, part = verifier_share
        return self.field.encode_vec(share) + (part if part is not None else b"")

    def decode_verifier_share(self, data: bytes) -> VerifierShare:
        n = self.flp.VERIFIER_LEN * self.PROOFS * self.field.ENCODED_SIZE
        if self.flp.JOINT_RAND_LEN > 0:
            part = self._seed(data[n:], "verifier share joint randomness part")
            return self._vec(data[:n], n // self.field.ENCODED_SIZE, "verifier share"), part
        return self._vec(data, n // self.field.ENCODED_SIZE, "verifier share"), None

    def encode_verifier_message(self, message: VerifierMessage) -> bytes:
        return message if message is not None else b""

    def decode_verifier_message(self, data: bytes) -> VerifierMessage:
        if self.flp.JOINT_RAND_LEN > 0:
            return self._seed(data, "verifier message")
        if data:
            raise ValueError("verifier message must be empty")
        return None

    def encode_agg_share(self, agg_share: Sequence[int]) -> bytes:
        return self.field.encode_vec(agg_share)

    def decode_agg_share(self, data: bytes) -> list[int]:
        return self._vec(data, self.flp.OUTPUT_LEN, "aggregate share")

    def encode_out_share(self, out_share: Sequence[int]) -> bytes:
        return self.field.encode_vec(out_share)

    def encode_verify_state(self, verify_state: VerifyState) -> bytes:
        """Not in the draft: lets an Aggregator store its state between requests."""
        out_share, seed = verify_state
        return self.field.encode_vec(out_share) + (seed if seed is not None else b"")

    def decode_verify_state(self, data: bytes) -> VerifyState:
        n = self.flp.OUTPUT_LEN * self.field.ENCODED_SIZE
        if self.flp.JOINT_RAND_LEN > 0:
            seed = self._seed(data[n:], "verify state joint randomness seed")
            return self._vec(data[:n], self.flp.OUTPUT_LEN, "verify state"), seed
        return self._vec(data, self.flp.OUTPUT_LEN, "verify state"), None
