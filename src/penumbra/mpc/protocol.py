"""Wire messages between holders, aggregators and the coordinator; ids, nonces, the VDAF.

Every report is a Prio3BoundedVoteVec report (a Prio3SumVec with per-entry and L1 bounds):
each entry in [0, min(declared, 2^bits − 1)], their sum at most the holder's declared count × k,
where k is the deployment's (every party's config), never the coordinator's. The VDAF context string
binds a report to its deployment and round, so a share replayed into another round also fails
verification; the aggregators additionally refuse any report id or nonce seen before.

A report share travels as bytes (`Upload.encode`, `application/octet-stream`): the draft's
encodings of the shares inside a length-prefixed frame like DAP's Report, a third smaller than
base64 in JSON. Control messages, small next to reports, stay JSON with base64 fields.
"""

from __future__ import annotations

import base64
import secrets
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from penumbra.mpc import field as vdaf_field
from penumbra.mpc.prio3 import Prio3BoundedVoteVec

PROTOCOL = "penumbra-mpc/v1"
REPORT_ID_BYTES = 16


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def new_report_id() -> str:
    return secrets.token_hex(REPORT_ID_BYTES)


def new_round_id(iteration: int) -> str:
    """Unique per attempt: a retried round is a new round, with new reports."""
    return f"t{iteration:03d}-{secrets.token_hex(6)}"


# Field64 with three proofs: each element half the bytes of Field128 and word-sized arithmetic
# (`goldilocks.py`), at an estimated soundness of 2^-162 against one Field128 proof's 2^-118
# at 10k candidates (`Prio3.soundness_bits`; two Field64 proofs would give only 2^-108).
VOTE_FIELD: type[vdaf_field.Field] = vdaf_field.Field64
VOTE_PROOFS = 3


def vdaf_for(length: int, bits: int, declared: int, k: int = 1) -> Prio3BoundedVoteVec:
    """The VDAF of one holder's report: no entry above its declared count (nor 2^bits − 1),
    the sum at most declared × k. Aggregating shares needs only the length: any declared."""
    return Prio3BoundedVoteVec(
        length, bits, None, declared * k, min(declared, 2**bits - 1),
        field=VOTE_FIELD, proofs=VOTE_PROOFS,
    )  # fmt: skip


def vdaf_ctx(deployment: str, round_id: str) -> bytes:
    return f"{PROTOCOL}/{deployment}/{round_id}".encode()


def sigma_fraction(sigma: float) -> Fraction:
    """The exact value of a float σ, for the exact discrete Gaussian sampler."""
    return Fraction(sigma)


def encode_embeddings(embeddings: np.ndarray) -> tuple[str, list[int]]:
    array = np.ascontiguousarray(embeddings, dtype="<f4")
    return b64(array.tobytes()), list(array.shape)


def decode_embeddings(data: str, shape: list[int]) -> np.ndarray:
    raw = unb64(data)
    array = np.frombuffer(raw, dtype="<f4")
    if len(shape) != 2 or array.size != shape[0] * shape[1]:
        raise ValueError(f"candidate embeddings do not have shape {shape}")
    return array.reshape(shape).astype(np.float32)


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoundParams(_Msg):
    """What the coordinator tells both aggregators when a round opens (all public). An
    aggregator checks `k` and `length` against its own config and never adds less than its
    own σ (penumbra.mpc.policy)."""

    round_id: str
    iteration: int = Field(ge=0)
    length: int = Field(ge=1)
    k: int = Field(default=1, ge=1)
    sigma: float = Field(ge=0)  # each aggregator's discrete Gaussian parameter
    deadline_unix: float


class Announcement(_Msg):
    """GET /round on the coordinator: the open round's public candidates (or none). A holder
    answers only if k, metric, bits and the candidate count match its own config."""

    open: bool
    finished: bool = False  # the run is over: holders may exit
    round_id: str = ""
    iteration: int = 0
    length: int = 0
    k: int = 1
    metric: str = "l2"
    bits: int = 0  # the deployment's entry width; 0 (unset) matches no holder
    deadline_unix: float = 0.0
    embeddings: str = ""
    shape: list[int] = []
    embedder: str = ""  # model URI the holders embed their private data with
    # its options from the run's config (models.options), e.g. a tone grid that changes the
    # embedding itself: public settings, and holders must load the model the same way
    embedder_options: dict[str, Any] = {}
    embedder_fingerprint: str = ""


UPLOAD_MEDIA_TYPE = "application/octet-stream"
MAX_UPLOAD_BYTES = 1 << 26  # 64 MiB: a report for ~400k candidates; more is refused unread


def max_upload_bytes(config: Any) -> int:
    """The largest report frame a holder of this deployment can honestly send: the leader's
    share of `max_candidates` entries for the largest declared count (bits, k from the party
    config), its proofs, the public share and the frame's own bytes; at most MAX_UPLOAD_BYTES.
    An aggregator reads nothing larger."""
    declared = max((h.declared_count for h in config.holders), default=1)
    vdaf = vdaf_for(config.max_candidates, config.bits, declared, config.k)
    elements = vdaf.flp.MEAS_LEN + vdaf.flp.PROOF_LEN * vdaf.PROOFS
    share = elements * vdaf.field.ENCODED_SIZE + vdaf.xof.SEED_SIZE
    public = vdaf.SHARES * vdaf.xof.SEED_SIZE
    frame = 1 + 255 + REPORT_ID_BYTES + 1 + 255 + 4 + 4
    return min(MAX_UPLOAD_BYTES, share + public + frame)


@dataclass(frozen=True)
class Upload:
    """One holder's report share for one aggregator.

    Wire layout (big-endian lengths, no trailing bytes): round id `u8 length || ASCII`, report
    id (REPORT_ID_BYTES raw bytes), nonce `u8 length || bytes`, public share and input share
    each `u32 length || the VDAF's encoding`. `decode` raises ValueError naming the field.
    """

    round_id: str
    report_id: str  # hex
    nonce: bytes
    public_share: bytes
    input_share: bytes

    def encode(self) -> bytes:
        round_id = self.round_id.encode("ascii")
        report_id = bytes.fromhex(self.report_id)
        if not 1 <= len(round_id) < 256 or len(report_id) != REPORT_ID_BYTES:
            raise ValueError("round id or report id out of range")
        if len(self.nonce) >= 256:
            raise ValueError("nonce too long")
        return b"".join(
            [
                struct.pack(">B", len(round_id)), round_id, report_id,
                struct.pack(">B", len(self.nonce)), self.nonce,
                struct.pack(">I", len(self.public_share)), self.public_share,
                struct.pack(">I", len(self.input_share)), self.input_share,
            ]
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> Upload:
        reader = _Reader(data)
        round_bytes = reader.take(reader.u8("round id length"), "round id")
        try:
            round_id = round_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("round id is not ASCII") from None
        report_id = reader.take(REPORT_ID_BYTES, "report id").hex()
        nonce = reader.take(reader.u8("nonce length"), "nonce")
        public_share = reader.take(reader.u32("public share length"), "public share")
        input_share = reader.take(reader.u32("input share length"), "input share")
        if reader.left():
            raise ValueError(f"{reader.left()} bytes after the input share")
        if not round_id:
            raise ValueError("empty round id")
        return cls(round_id, report_id, nonce, public_share, input_share)


class _Reader:
    """Bounds-checked reads from a byte string (ValueError naming what was cut short)."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.at = 0

    def take(self, n: int, what: str) -> bytes:
        if self.at + n > len(self.data):
            raise ValueError(f"{what} cut short")
        out = bytes(self.data[self.at : self.at + n])
        self.at += n
        return out

    def u8(self, what: str) -> int:
        return int(self.take(1, what)[0])

    def u32(self, what: str) -> int:
        return int(struct.unpack(">I", self.take(4, what))[0])

    def left(self) -> int:
        return len(self.data) - self.at


class UploadReply(_Msg):
    accepted: bool
    reason: str = ""


class RoundStatus(_Msg):
    round_id: str
    state: str
    uploads: dict[str, int]


class Rejection(_Msg):
    report_id: str
    holder: str
    reason: str


class VerifyItem(_Msg):
    report_id: str
    holder: str
    verifier_share: str


class VerifyRequest(_Msg):
    """Leader → helper: the leader's verifier shares (ping-pong 'initialize')."""

    round_id: str
    items: list[VerifyItem]
    rejected: list[Rejection]


class VerifyResult(_Msg):
    report_id: str
    ok: bool
    reason: str = ""
    verifier_message: str = ""


class VerifyReply(_Msg):
    """Helper → leader: per report the verifier message ('finish') or why it was rejected."""

    items: list[VerifyResult]
    rejected: list[Rejection]  # reports only the helper holds, or refused at its upload


class Accepted(_Msg):
    report_id: str
    holder: str


class CommitRequest(_Msg):
    """Leader → helper: the final accepted set (both aggregators sum exactly this)."""

    round_id: str
    accepted: list[Accepted]
    rejected: list[Rejection]


class RoundOutcome(_Msg):
    round_id: str
    accepted: list[Accepted]
    rejected: list[Rejection]


class AggregateShare(_Msg):
    """An aggregator's noisy aggregate share: uniformly random without the other one."""

    round_id: str
    aggregator: str
    agg_share: str
    accepted: list[str]
    sigma: float
    noiseless: bool


class CosignRequest(_Msg):
    """Coordinator → aggregator: new ledger lines and the checkpoint to co-sign."""

    origin: str
    size: int
    root: str
    start: int
    entries: list[str]


class CosignReply(_Msg):
    signature: str = ""
    need_from: int = -1  # when >= 0: send the entries from this index
