"""PDQ perceptual hashes (Meta's PDQ through `pdqhash`) and the blocklists that hold them.

Hashes are 64 hex digits in ThreatExchange's convention (the 256 bits of `pdqhash.compute`,
first bit most significant), the form industry hash-sharing and StopNCII exchange, so a list
exported there is read here as it is."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from penumbra.errors import ConfigError, ModelError

_HASH = re.compile(r"[0-9a-fA-F]{64}")
MAX_BLOCKLIST_BYTES = 256 * 1024 * 1024


def library_version() -> str:
    return version("pdqhash")


def pdq_hash(image: Image.Image) -> tuple[str, int]:
    """(hash, quality 0-100) of an image; Meta advises ignoring matches of quality < 50."""
    try:
        import pdqhash
    except ImportError:
        raise ModelError("PDQ hashing needs pdqhash: run `make install`") from None
    vector, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(image.convert("RGB"))))
    return np.packbits(np.asarray(vector, np.uint8)).tobytes().hex(), int(quality)


def hash_bits(hashes: list[str]) -> npt.NDArray[np.uint8]:
    """Hex hashes as rows of 32 bytes, for distances by XOR and bit count."""
    return np.array([np.frombuffer(bytes.fromhex(h), np.uint8) for h in hashes], np.uint8).reshape(
        -1, 32
    )


def distance(a: str, b: str) -> int:
    """Hamming distance of two PDQ hashes (0-256)."""
    return int(np.bitwise_count(hash_bits([a]) ^ hash_bits([b])).sum())


@dataclass(frozen=True)
class Blocklist:
    path: Path
    sha256: str  # of the file's bytes: the ledger names the list by it
    rows: npt.NDArray[np.uint8]  # (n, 32)

    def nearest(self, pdq: str) -> tuple[int, int]:
        """(distance, line index) of the closest listed hash; (257, -1) for an empty list."""
        if not len(self.rows):
            return 257, -1
        distances = np.bitwise_count(self.rows ^ hash_bits([pdq])).sum(axis=1)
        index = int(np.argmin(distances))
        return int(distances[index]), index


def load_blocklist(path: Path, *, field: str = "policy.blocklist.file") -> Blocklist:
    """Read a blocklist; ConfigError (one line naming the file, the line and what to do) on
    anything that is not one PDQ hash per line."""
    try:
        if path.stat().st_size > MAX_BLOCKLIST_BYTES:
            raise ConfigError(f"{field}: {path}: larger than 256 MiB; split the list")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{field}: {path}: no such file; give a file of PDQ hashes") from None
    except IsADirectoryError:
        raise ConfigError(f"{field}: {path}: is a folder; give a file of PDQ hashes") from None
    except OSError as e:
        raise ConfigError(f"{field}: {path}: cannot read it ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{field}: {path}: not text; give one PDQ hash (64 hex) per line"
        ) from None
    hashes = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        first = re.split(r"[\s,;]+", content, maxsplit=1)[0]
        if not _HASH.fullmatch(first):
            raise ConfigError(
                f"{field}: {path}:{number}: {first[:70]!r} is not a PDQ hash; each line must "
                "start with 64 hex digits"
            )
        hashes.append(first.lower())
    if not hashes:
        raise ConfigError(f"{field}: {path}: holds no PDQ hash; give one per line")
    return Blocklist(path, hashlib.sha256(data).hexdigest(), hash_bits(hashes))
