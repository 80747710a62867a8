"""Checkpoints in the C2SP tlog-checkpoint "signed note" format, signed with Ed25519.

A checkpoint body is `<origin>\\n<size>\\n<base64 root>\\n`; the signed note appends a blank
line and one line per signature: `— <key name> <base64(key id || signature)>`, where the key id
is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key) and the signature covers
the body. Verifier keys travel as `<name>+<hex key id>+<base64(0x01 || public key)>`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = b"\x01"
SIG_PREFIX = "\u2014 "  # em dash and a space


class NoteError(ValueError):
    """A note or key that cannot be parsed."""


def key_id(name: str, public_key: bytes, algorithm: bytes = ED25519) -> bytes:
    """SHA-256(name || "\\n" || algorithm || public key)[:4]: 0x01 for a signed-note key,
    0x04 for a tlog-cosignature/v1 key (ledger.cosignature)."""
    return hashlib.sha256(name.encode() + b"\n" + algorithm + public_key).digest()[:4]


def raw_public_key(key: SigningKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def format_vkey(name: str, public_key: bytes, algorithm: bytes = ED25519) -> str:
    """`NAME+KEYID+BASE64(algorithm || key)`, the verifier key string (public)."""
    kid = key_id(name, public_key, algorithm).hex()
    return f"{name}+{kid}+{base64.b64encode(algorithm + public_key).decode()}"


def decode_vkey(
    text: str, algorithm: bytes = ED25519, what: str = "verifier key"
) -> tuple[str, bytes, Ed25519PublicKey]:
    """(name, key id, public key) of a verifier key of `algorithm`; NoteError naming what is
    wrong (`what`: how to call the key in that message)."""
    try:
        name, hex_id, blob = text.strip().split("+", 2)
        raw = base64.b64decode(blob, validate=True)
        kid = bytes.fromhex(hex_id)
    except ValueError as e:
        raise NoteError(f"{what} {text.strip()[:60]!r} is not NAME+KEYID+BASE64") from e
    if raw[:1] != algorithm or len(raw) != 33:
        raise NoteError(f"{what} {name!r} is not an Ed25519 key of type 0x{algorithm.hex()}")
    if key_id(name, raw[1:], algorithm) != kid:
        raise NoteError(f"{what} {name!r}: key id does not match its name and key")
    return name, kid, Ed25519PublicKey.from_public_bytes(raw[1:])


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")


class SigningKey(Protocol):
    """An Ed25519 private key in this process (Ed25519PrivateKey) or on a token (ledger.hsm)."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> Ed25519PublicKey: ...


@dataclass(frozen=True)
class Signer:
    name: str
    private_key: SigningKey

    @property
    def public_key(self) -> bytes:
        return raw_public_key(self.private_key)

    @property
    def vkey(self) -> str:
        """The verifier key string an auditor needs (public; safe to publish)."""
        return format_vkey(self.name, self.public_key)

    def sign(self, body: str) -> str:
        """The signature line for a note body."""
        sig = self.private_key.sign(body.encode("utf-8"))
        blob = base64.b64encode(key_id(self.name, self.public_key) + sig).decode()
        return f"{SIG_PREFIX}{self.name} {blob}\n"


def generate_signer(name: str) -> Signer:
    _check_name(name)
    return Signer(name, Ed25519PrivateKey.generate())


class HoldsKey(Protocol):
    """A Signer (a log's key) or a Cosigner (a witness's key)."""

    @property
    def private_key(self) -> SigningKey: ...


def save_private_key(signer: HoldsKey, path: Path) -> None:
    """PEM (PKCS#8) with mode 0600, created that way so it is never world-readable."""
    if not isinstance(signer.private_key, Ed25519PrivateKey):
        raise NoteError("a key held on a token cannot be written to a file")
    pem = signer.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())


def load_private_key(path: Path, name: str) -> Signer:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise NoteError(f"{path}: not a readable PEM private key ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise NoteError(f"{path}: not an Ed25519 private key")
    _check_name(name)
    return Signer(name, key)


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: bytes
    public_key: Ed25519PublicKey


def parse_vkey(text: str) -> Verifier:
    return Verifier(*decode_vkey(text))


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def sign_checkpoint(checkpoint: Checkpoint, signers: list[Signer]) -> str:
    body = checkpoint.body()
    return body + "\n" + "".join(s.sign(body) for s in signers)


def parse_signed_note(text: str) -> tuple[Checkpoint, list[tuple[str, bytes]]]:
    """(checkpoint, [(key name, key id || signature bytes)]); raises NoteError if malformed.

    Signature lines of any type are returned (a witness's cosignature is 4 + 8 + 64 bytes, a
    log's own 4 + 64): each verifier picks the lines whose name and key id are its own."""
    body, sep, sigs = text.partition("\n\n")
    if not sep:
        raise NoteError("no blank line between the note body and its signatures")
    lines = body.split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint body needs origin, size and root lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not (size_text.isascii() and size_text.isdigit()) or (
        size_text.startswith("0") and size_text != "0"
    ):
        raise NoteError(f"checkpoint size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError as e:
        raise NoteError("checkpoint root is not base64") from e
    if len(root) != 32:
        raise NoteError("checkpoint root is not a SHA-256 hash")
    signatures = []
    for line in sigs.splitlines():
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"signature line {line[:40]!r} does not start with '— '")
        name, _, blob = line[len(SIG_PREFIX) :].rpartition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except ValueError as e:
            raise NoteError("signature is not base64") from e
        if not name or len(raw) < 5:
            raise NoteError("signature line needs a key name, a key id and a signature")
        signatures.append((name, raw))
    checkpoint = Checkpoint(origin, int(size_text), root)
    if checkpoint.body() != body + "\n":
        raise NoteError("checkpoint body has extra lines or is not in canonical form")
    return checkpoint, signatures


def verify_signed_note(text: str, verifier: Verifier) -> Checkpoint:
    """The checkpoint, if `verifier` signed exactly this note; NoteError otherwise."""
    checkpoint, signatures = parse_signed_note(text)
    body = checkpoint.body().encode("utf-8")
    for name, raw in signatures:
        if name == verifier.name and raw[:4] == verifier.key_id and len(raw) == 4 + 64:
            try:
                verifier.public_key.verify(raw[4:], body)
            except InvalidSignature as e:
                raise NoteError(f"signature by {name} does not verify") from e
            return checkpoint
    raise NoteError(f"not signed by the expected key {verifier.name}+{verifier.key_id.hex()}")
