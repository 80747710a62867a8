"""Reading image folders safely: streaming, EXIF-upright, RGB, bounded in size.

Private folders come from users' disks as they are: broken files, truncated downloads, CMYK
scans, 16-bit medical images, alpha channels, symlink loops. Each image is opened only when the
caller asks for it, so a million-image folder never sits in memory.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from penumbra.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb bound (~0.25 GB RGBA)
OnError = Literal["skip", "fail"]


@dataclass
class ReadReport:
    """What a folder read did; skipped files are counted and reported, never silently lost."""

    read: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.read} image(s) read"
        if self.skipped:
            text += f", {len(self.skipped)} skipped as unreadable"
        return text


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    relpath: str  # POSIX path relative to the folder: a stable id across machines
    image: Image.Image


def list_image_files(root: Path | str, *, allow_empty: bool = False) -> list[Path]:
    """Image files under root, recursively, sorted; follows symlinks but never loops."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: folder does not exist; check the path")
    if not root.is_dir():
        raise DataError(f"{root}: is not a folder; give the folder that holds the images")
    seen: set[tuple[int, int]] = set()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []  # a symlink cycle back into a folder already walked
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                found.append(path)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    if not found and not allow_empty:
        raise DataError(
            f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
            "check the folder"
        )
    return found


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with alpha composited on white and high bit depths scaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = (0.0, 65535.0) if image.mode.startswith("I;16") else (arr.min(), arr.max())
        if image.mode in ("I", "F") and hi <= 255 and lo >= 0:
            lo, hi = 0.0, 255.0
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def read_image(
    path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS, data: bytes | None = None
) -> Image.Image:
    """One image, fully decoded, upright and RGB. Raises DataError naming the file.
    With `data`, decodes those bytes (the file as read elsewhere) and `path` only names it."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else path) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise DataError(
                        f"{path}: {width}x{height} exceeds the {max_pixels:,}-pixel limit "
                        "(decompression-bomb guard); downscale it or raise max_pixels"
                    )
                opened.load()
                upright = ImageOps.exif_transpose(opened)
                return _to_rgb(upright if upright is not None else opened)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: too many pixels (decompression-bomb guard): {e}") from e
    except UnidentifiedImageError as e:
        raise DataError(f"{path}: not a readable image (unknown or corrupt format)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode ({e})") from e


def iter_images(
    root: Path | str,
    *,
    on_error: OnError = "skip",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    report: ReadReport | None = None,
    files: list[Path] | None = None,
) -> Iterator[ImageRecord]:
    """Stream the images of a folder in a stable order.

    on_error="skip" counts unreadable files in `report` (pass one in to see them at the end);
    "fail" raises DataError at the first one. `files` reuses a listing already made (e.g. to
    size a progress bar).
    """
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    root = Path(root)
    report = report if report is not None else ReadReport()
    for path in files if files is not None else list_image_files(root):
        relpath = path.relative_to(root).as_posix()
        try:
            image = read_image(path, max_pixels=max_pixels)
        except DataError as e:
            if on_error == "fail":
                raise
            report.skipped.append((relpath, e.problems[0]))
            continue
        report.read += 1
        yield ImageRecord(path=path, relpath=relpath, image=image)
