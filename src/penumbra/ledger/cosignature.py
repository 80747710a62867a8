"""C2SP tlog-cosignature v1 (Ed25519): a witness's statement that a checkpoint is the largest
consistent tree it has seen of that log, at a time.

A cosignature is a signed-note signature line `— <name> base64(key id || u64 timestamp ||
signature)`, where the key id is SHA-256(name || "\\n" || 0x04 || public key)[:4] and the
signature covers `cosignature/v1\\ntime <timestamp>\\n` followed by the checkpoint body. Witness
verifier keys travel as `<name>+<hex key id>+<base64(0x04 || public key)>`.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from penumbra.ledger.note import (
    SIG_PREFIX,
    Checkpoint,
    NoteError,
    SigningKey,
    decode_vkey,
    format_vkey,
    generate_signer,
    key_id,
    parse_signed_note,
    raw_public_key,
)

COSIGNATURE_V1 = b"\x04"
MAX_TIMESTAMP = 2**63 - 1


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    return key_id(name, public_key, COSIGNATURE_V1)


def cosigned_message(checkpoint: Checkpoint, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint.body()}".encode()


@dataclass(frozen=True)
class Cosigner:
    """A witness's signing key (the private half stays in the witness's state folder)."""

    name: str
    private_key: SigningKey  # in this process, or on a PKCS#11 token (ledger.hsm)

    @property
    def public_key(self) -> bytes:
        return raw_public_key(self.private_key)

    @property
    def vkey(self) -> str:
        return format_vkey(self.name, self.public_key, COSIGNATURE_V1)

    def cosign(self, checkpoint: Checkpoint, timestamp: int) -> str:
        """One cosignature line (with its newline)."""
        if not 0 <= timestamp <= MAX_TIMESTAMP:
            raise ValueError(f"timestamp {timestamp} is outside 0..2^63-1")
        sig = self.private_key.sign(cosigned_message(checkpoint, timestamp))
        blob = cosigner_key_id(self.name, self.public_key) + struct.pack(">Q", timestamp) + sig
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True)
class CosignerKey:
    """A witness's verifier key, as an auditor or a run holds it."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey
    text: str

    def verify(self, note: str) -> tuple[Checkpoint, int]:
        """(checkpoint, timestamp) if `note` (a checkpoint with its signature lines) carries a
        valid cosignature of this witness; NoteError otherwise."""
        checkpoint, signatures = parse_signed_note(note)
        for name, blob in signatures:
            if name != self.name or blob[:4] != self.key_id or len(blob) != 4 + 8 + 64:
                continue
            (timestamp,) = struct.unpack(">Q", blob[4:12])
            if timestamp > MAX_TIMESTAMP:
                raise NoteError(f"cosignature by {name} has a timestamp past 2^63-1")
            try:
                self.public_key.verify(blob[12:], cosigned_message(checkpoint, timestamp))
            except InvalidSignature as e:
                raise NoteError(f"cosignature by {name} does not verify") from e
            return checkpoint, timestamp
        raise NoteError(f"no cosignature by the witness {self.name}+{self.key_id.hex()}")


def parse_cosigner_key(text: str) -> CosignerKey:
    """A witness verifier key `NAME+KEYID+BASE64(0x04 || key)`; NoteError naming what is wrong."""
    name, kid, public_key = decode_vkey(text, COSIGNATURE_V1, "witness key")
    return CosignerKey(name, kid, public_key, text.strip())


def generate_cosigner(name: str) -> Cosigner:
    return Cosigner(name, generate_signer(name).private_key)  # the same key-name rules
