"""Reading image folders safely: streaming, EXIF-upright, RGB, bounded in size.

Private folders come from users' disks as they are: broken files, truncated downloads, CMYK
scans, 16-bit medical images, alpha channels, symlink loops. Each image is opened only when the
caller asks for it, so a million-image folder never sits in memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from collections.abc import Iterator, Sequence
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


@dataclass(frozen=True)
class ImageListing:
    """The image files of a folder, each file once, and the other paths that reach each one.

    One image is one file (DESIGN.md invariant 11): a symlink or hard link to it is the same
    image, so it is listed, embedded and counted once. `aliases` keeps the other paths because
    a caller reading labels must see them: one file under two class folders would otherwise be
    labelled by whichever path sorts first."""

    files: list[Path]  # sorted by relative path; the first path of each file
    aliases: dict[Path, list[Path]]  # a listed file -> its other paths (only files that have any)


def scan_image_files(root: Path | str, *, allow_empty: bool = False) -> ImageListing:
    """Image files under root, recursively, each file once (by device and inode), with the
    other paths reaching it. Follows symlinks inside the folder, skips cycles, and refuses one
    that leaves it: a link outside would pull in an image the holder never put in the private
    folder (or, for a folder, a whole tree)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: folder does not exist; check the path")
    if not root.is_dir():
        raise DataError(f"{root}: is not a folder; give the folder that holds the images")
    by_key: dict[tuple[int, int], list[tuple[str, Path]]] = {}
    for relpath, path, key in _walk(root):
        by_key.setdefault(key, []).append((relpath, path))
    groups = sorted(sorted(paths) for paths in by_key.values())
    files = [group[0][1] for group in groups]
    aliases = {group[0][1]: [path for _, path in group[1:]] for group in groups if len(group) > 1}
    if not files and not allow_empty:
        raise DataError(
            f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
            "check the folder"
        )
    return ImageListing(files, aliases)


def list_image_files(root: Path | str, *, allow_empty: bool = False) -> list[Path]:
    """Image files under root, recursively, sorted, each file once (see `scan_image_files`)."""
    return scan_image_files(root, allow_empty=allow_empty).files


MAX_PATHS_TO_A_FOLDER = 64  # symlinked paths to one folder before the listing refuses


def _walk(root: Path) -> Iterator[tuple[str, Path, tuple[int, int]]]:
    """(relative path, path, (device, inode)) of every image path under root. A folder is
    walked again when reached by another path (its files' other paths matter for labels), but
    never inside itself (a symlink cycle)."""
    real_root = os.path.realpath(root)
    top = os.stat(root)
    stack = [(root, "", frozenset({(top.st_dev, top.st_ino)}))]
    walks: dict[tuple[int, int], int] = {}
    while stack:
        folder, prefix, ancestors = stack.pop()
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue  # an unreadable folder, as os.walk skips it
        for name in names:
            if name.startswith("."):
                continue
            path = folder / name
            st = _stat_inside(path, real_root)
            if st is None:
                continue
            key = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                if key not in ancestors:
                    walks[key] = walks.get(key, 0) + 1
                    if walks[key] > MAX_PATHS_TO_A_FOLDER:  # a link farm: paths double per level
                        raise DataError(
                            f"{path}: more than {MAX_PATHS_TO_A_FOLDER} paths under {root} reach "
                            "this folder through symlinks; remove the links (keep one path)"
                        )
                    stack.append((path, f"{prefix}{name}/", ancestors | {key}))
            elif stat.S_ISREG(st.st_mode) and path.suffix.lower() in IMAGE_SUFFIXES:
                yield f"{prefix}{name}", path, key


def _stat_inside(path: Path, real_root: str) -> os.stat_result | None:
    """The stat of what `path` reaches; None for a broken link or a link to a non-image file;
    DataError for a link to a folder or an image outside the real root."""
    try:
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode):
            return st
        st = os.stat(path)
    except OSError:
        return None  # a broken link, or a file gone since the listing
    wanted = stat.S_ISDIR(st.st_mode) or path.suffix.lower() in IMAGE_SUFFIXES
    target = os.path.realpath(path)
    if wanted and os.path.commonpath([real_root, target]) != real_root:
        raise DataError(
            f"{path}: a symlink to {target}, outside the private folder {real_root}; copy the "
            "image(s) into the folder or remove the link"
        )
    return st if wanted else None


def find_identical_copies(files: Sequence[Path]) -> list[list[Path]]:
    """Groups of files (two or more each) with identical bytes at different inodes.

    penumbra counts them as different images (one file is one image), yet they are one person's
    photo twice, so the holder should remove all but one. Cheap: only files whose size another
    file shares are hashed."""
    by_size: dict[int, list[Path]] = {}
    seen: set[tuple[int, int]] = set()
    for path in files:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            by_size.setdefault(st.st_size, []).append(path)
    by_digest: dict[bytes, list[Path]] = {}
    for same_size in by_size.values():
        if len(same_size) > 1:
            for path in same_size:
                by_digest.setdefault(_digest(path), []).append(path)
    return sorted(sorted(group) for group in by_digest.values() if len(group) > 1)


def _digest(path: Path) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


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
