"""Extendable output functions of draft-irtf-cfrg-vdaf-20 (section "XOFs").

`XofTurboShake128` is what Prio3 uses; `XofFixedKeyAes128` is here for the draft's test
vectors only (the draft reserves it for Poplar1's IDPF). Both stream their output, so
`next(n)` twice equals one `next(2n)`, as the draft's definition requires.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from Crypto.Hash import TurboSHAKE128
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from penumbra.mpc.field import Field

VERSION = 18


def format_dst(algo_class: int, algo: int, usage: int) -> bytes:
    """Domain separation tag: version, algorithm class, algorithm id and usage, big-endian."""
    return (
        VERSION.to_bytes(1, "big")
        + algo_class.to_bytes(1, "big")
        + algo.to_bytes(4, "big")
        + usage.to_bytes(2, "big")
    )


class Xof:
    """Common seed-derivation and field-vector expansion on top of a byte stream."""

    SEED_SIZE: ClassVar[int]

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        raise NotImplementedError

    def next(self, length: int) -> bytes:
        raise NotImplementedError

    @classmethod
    def derive_seed(cls, seed: bytes, dst: bytes, binder: bytes) -> bytes:
        return cls(seed, dst, binder).next(cls.SEED_SIZE)

    def next_vec(self, field: type[Field], length: int) -> list[int]:
        """Rejection-sample `length` field elements from the stream, in stream order.

        Reading a block of candidates at once and then only as many more as were rejected
        takes exactly the elements the draft's one-at-a-time loop takes.
        """
        size = field.ENCODED_SIZE
        modulus = field.MODULUS
        mask = (1 << (modulus - 1).bit_length()) - 1
        vec: list[int] = []
        while len(vec) < length:
            need = length - len(vec)
            words = np.frombuffer(self.next(need * size), dtype="<u8")
            if size == 8:
                masked = words & np.uint64(mask)
                vec.extend(masked[masked < np.uint64(modulus)].tolist())
                continue
            lo = words[0::2].tolist()
            hi = words[1::2].tolist()
            cand = [(a | (b << 64)) & mask for a, b in zip(lo, hi, strict=True)]
            vec.extend(x for x in cand if x < modulus)
        return vec

    @classmethod
    def expand_into_vec(
        cls, field: type[Field], seed: bytes, dst: bytes, binder: bytes, length: int
    ) -> list[int]:
        return cls(seed, dst, binder).next_vec(field, length)


class XofTurboShake128(Xof):
    """TurboSHAKE128 (RFC 9861, domain byte 1) over `len(dst) || dst || len(seed) || seed ||
    binder`."""

    SEED_SIZE = 32

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        if len(seed) > 255:
            raise ValueError("XofTurboShake128: seed longer than 255 bytes")
        if len(dst) > 65535:
            raise ValueError("XofTurboShake128: dst longer than 65535 bytes")
        self._h = TurboSHAKE128.new(domain=1)
        self._h.update(len(dst).to_bytes(2, "little") + dst)
        self._h.update(len(seed).to_bytes(1, "little") + seed)
        self._h.update(binder)

    def next(self, length: int) -> bytes:
        return bytes(self._h.read(length))


class XofFixedKeyAes128(Xof):
    """Fixed-key AES-128 in the circular correlation-robust hash mode of GKWWY20."""

    SEED_SIZE = 16

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        if len(seed) != self.SEED_SIZE:
            raise ValueError("XofFixedKeyAes128: incorrect seed size")
        if len(dst) > 65535:
            raise ValueError("XofFixedKeyAes128: dst longer than 65535 bytes")
        h = TurboSHAKE128.new(domain=2)
        h.update(len(dst).to_bytes(2, "little") + dst + binder)
        fixed_key = bytes(h.read(16))
        self._aes = Cipher(algorithms.AES(fixed_key), modes.ECB()).encryptor()
        self._seed = int.from_bytes(seed, "little")
        self._consumed = 0

    def next(self, length: int) -> bytes:
        offset = self._consumed % 16
        first = self._consumed // 16
        new_length = self._consumed + length
        self._consumed = new_length
        blocks = []
        for i in range(first, new_length // 16 + 1):
            block = (self._seed ^ i).to_bytes(16, "little")
            lo, hi = block[:8], block[8:]
            sigma = hi + bytes(a ^ b for a, b in zip(hi, lo, strict=True))
            enc = self._aes.update(sigma)
            blocks.append(bytes(a ^ b for a, b in zip(enc, sigma, strict=True)))
        return b"".join(blocks)[offset : offset + length]
