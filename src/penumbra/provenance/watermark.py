"""The invisible watermark: invisible-watermark's DWT-DCT-SVD method (the library Stable
Diffusion XL ships), carrying `mark.encode_mark`'s 72 bits in the U channel.

The library embeds; reading is the library's own decoder written with numpy over all blocks
at once (the largest singular value of each 4x4 block of the Haar approximation, which the
library takes after a DCT that leaves singular values unchanged), so that `identify` can try
several sizes of one image in the time the library reads one. tests/provenance holds both
to the same bits.

What the mark survives and what breaks it is measured in bench/provenance.py (RESULTS.md):
JPEG and resizing back to a standard size are survived, cropping is not."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version

import cv2
import numpy as np
import numpy.typing as npt
import pywt
from PIL import Image

from penumbra.errors import ModelError
from penumbra.provenance.mark import PAYLOAD_BITS, Bits, Decoded, decode_mark, encode_mark

METHOD = "dwtDctSvd"
SCALE = 60  # quantisation step of the U channel's singular values: robustness vs. PSNR (bench)
MIN_PIXELS = 256 * 256  # the library refuses smaller images: they are left unmarked
# Sizes an image is scaled back to when its own size does not read: penumbra's outputs are
# square, and a copy is most often a resize of one of these.
READ_SIZES = (256, 384, 512, 768, 1024)


def library_version() -> str:
    return version("invisible-watermark")


def can_carry(width: int, height: int) -> bool:
    """Whether an image of this size gets a mark (below it the report and ledger say so)."""
    return width * height >= MIN_PIXELS


def embed_mark(image: Image.Image, mark: str) -> Image.Image:
    """A copy of `image` carrying `mark`; ValueError if it is too small to carry one."""
    try:
        from imwatermark import WatermarkEncoder
    except ImportError:
        raise ModelError(
            "the watermark needs invisible-watermark: run `make install` "
            "(pip install --no-deps invisible-watermark PyWavelets)"
        ) from None
    if not can_carry(*image.size):
        raise ValueError(f"a {image.size[0]}x{image.size[1]} image is too small for a mark")
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", encode_mark(mark).tolist())
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
    marked = encoder.encode(bgr, METHOD, scales=[0, SCALE, 0])
    return Image.fromarray(np.ascontiguousarray(marked[..., ::-1]))


def read_bits(image: Image.Image, length: int = PAYLOAD_BITS) -> Bits:
    """The bits the library's dwtDctSvd decoder reads from `image` (no size check)."""
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
    rows, cols = bgr.shape[0] // 4 * 4, bgr.shape[1] // 4 * 4
    if rows < 8 or cols < 8:  # not one 4x4 block of the half-size approximation
        return np.zeros(length, np.uint8)
    u = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)[:rows, :cols, 1]
    approx, _ = pywt.dwt2(u, "haar")
    h, w = approx.shape[0] // 4, approx.shape[1] // 4
    blocks = approx[: h * 4, : w * 4].reshape(h, 4, w, 4).swapaxes(1, 2).reshape(-1, 4, 4)
    if len(blocks) < length:
        return np.zeros(length, np.uint8)
    largest = np.linalg.svd(blocks, compute_uv=False)[:, 0]
    scores = (largest % SCALE > SCALE * 0.5).astype(np.float64)
    slot = np.arange(len(scores)) % length
    mean = np.bincount(slot, scores, length) / np.bincount(slot, minlength=length)
    bits: npt.NDArray[np.uint8] = (mean * 255 > 127).astype(np.uint8)
    return bits


@dataclass(frozen=True)
class Reading:
    mark: str | None
    errors: int  # payload bits corrected
    how: str  # which reading found it ("as is", "at 512x512", "inverted at 256x256", ...)


def read_mark(image: Image.Image) -> Reading:
    """The run identifier `image` carries, or Reading(None, ...). Tries the image as it is,
    then scaled back to each READ_SIZES square, each also with its bits inverted (a
    brightness change can shift every block by half a step); at most 12 readings, which the
    false-positive bound of `mark` multiplies (bench measures it on unmarked images)."""
    rgb = image.convert("RGB")
    candidates = [("as is", rgb)] if can_carry(*rgb.size) else []
    candidates += [
        (f"at {side}x{side}", rgb.resize((side, side), Image.Resampling.BICUBIC))
        for side in READ_SIZES
        if rgb.size != (side, side)
    ]
    best: tuple[Decoded, str] | None = None
    for how, candidate in candidates:
        bits = read_bits(candidate)
        for decoded, label in (
            (decode_mark(bits), how),
            (decode_mark(1 - bits), f"inverted {how}"),
        ):
            if decoded.mark is not None and (best is None or decoded.errors < best[0].errors):
                best = (decoded, label)
        if best is not None and best[0].errors == 0:
            break
    if best is None:
        return Reading(None, 0, "no reading")
    return Reading(best[0].mark, best[0].errors, best[1])
