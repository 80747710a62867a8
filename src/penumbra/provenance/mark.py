"""The watermark's payload: a run identifier derived from the run's public key, protected by
three extended Golay (24, 12) codewords and whitened, 72 bits in all.

Why this shape: the watermark reads back hard bits, some of them wrong after a JPEG or a
resize. Each Golay codeword corrects any 3 flipped bits of its 24. A reading is accepted only
when at most `MAX_ERRORS` bits had to be corrected in total and the version nibble is ours,
which bounds the chance that random bits pass for a mark: 2^32 codewords of ours, each with
V(72, 3) = 62 269 words around it, out of 2^72, is 5.7e-8 per reading (README, bench). The
whitening mask keeps flat images (all bits equal) from reading as a codeword, since the
all-ones word is one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

VERSION = 1
MARK_BYTES = 4  # the run identifier: 32 bits
PAYLOAD_BITS = 72
MAX_ERRORS = 3
_GOLAY_POLY = 0b110001110101  # x^11+x^10+x^6+x^5+x^4+x^2+1: generates the (23, 12) Golay code
_WHITENING = np.unpackbits(
    np.frombuffer(hashlib.sha256(b"penumbra watermark v1 whitening").digest()[:9], np.uint8)
)

Bits = npt.NDArray[np.uint8]


def run_mark(vkey: str) -> str:
    """The run identifier a run's outputs carry: 32 bits of SHA-256 of its verifier key (the
    text of ledger/pubkey), as 8 hex digits. Anyone holding the key computes it; it says
    nothing about the data."""
    digest = hashlib.sha256(b"penumbra watermark v1\n" + vkey.strip().encode()).digest()
    return digest[:MARK_BYTES].hex()


def _codewords() -> npt.NDArray[np.int64]:
    """All 4096 extended Golay codewords as 24-bit integers, indexed by their 12 data bits."""
    words = np.zeros(4096, np.int64)
    for data in range(4096):
        word = 0
        for bit in range(12):  # the product data(x) * g(x) over GF(2)
            if data >> bit & 1:
                word ^= _GOLAY_POLY << bit
        words[data] = word << 1 | (bin(word).count("1") & 1)  # even overall parity
    return words


CODEWORDS = _codewords()


def encode_mark(mark: str) -> Bits:
    """72 payload bits for a run identifier (8 hex digits)."""
    value = VERSION << 32 | int.from_bytes(bytes.fromhex(mark), "big")
    words = [int(CODEWORDS[value >> shift & 0xFFF]) for shift in (24, 12, 0)]
    bits = np.array([w >> (23 - i) & 1 for i in range(24) for w in words], np.uint8)
    return bits ^ _WHITENING  # interleaved: neighbouring bits belong to different codewords


@dataclass(frozen=True)
class Decoded:
    mark: str | None  # the run identifier, or None: these bits are not a mark of ours
    errors: int  # bits corrected (of 72)


def decode_mark(bits: Bits) -> Decoded:
    """The run identifier in 72 read bits, if they are within MAX_ERRORS of one of our
    payloads."""
    raw = np.asarray(bits, np.uint8).reshape(-1) ^ _WHITENING
    value, errors = 0, 0
    for k in range(3):
        word = 0
        for bit in raw[k::3]:
            word = word << 1 | int(bit)
        distance = np.bitwise_count(CODEWORDS ^ word)
        data = int(np.argmin(distance))
        errors += int(distance[data])
        value = value << 12 | data
    if errors > MAX_ERRORS or value >> 32 != VERSION:
        return Decoded(None, errors)
    return Decoded((value & 0xFFFFFFFF).to_bytes(MARK_BYTES, "big").hex(), errors)
