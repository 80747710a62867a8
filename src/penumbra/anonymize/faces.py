"""Masking faces in images: the settings, the masks, and the residual-face check.

Videos are masked frame by frame in penumbra.anonymize.video with these masks; a file or a
folder of both is planned and dispatched in penumbra.anonymize.face_jobs.

Each face box (grown by `mask_scale`, 1.3 like deface, so hair line and chin are covered) is
replaced inside its bounding ellipse, or the whole box with `ellipse=False`:
- "blur": Gaussian with sigma = 1/6 of the box side, kernel the size of the box -- strong
  enough that neither detector finds a face afterwards (tested), but a blur is not a
  cryptographic erasure: prefer "solid" when re-identification by deblurring is a concern;
- "mosaic": 8 cells across the box's longer side (a pixelation scaled to the face, not a
  fixed cell size, so a large face is not left recognisable);
- "solid": filled black.
Pixels outside the masks are left bit-identical. Outputs are re-encoded by Pillow without the
source's EXIF/XMP/ICC, so GPS tags and camera serials do not survive; alpha is flattened on
white (penumbra.data.read_image).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from penumbra.anonymize.detect import BACKENDS, Backend, Box, Image, detect_faces, second_detector
from penumbra.durable import atomic_write_bytes
from penumbra.errors import ConfigError, DataError

Mode = Literal["blur", "mosaic", "solid"]
MODES: tuple[str, ...] = ("blur", "mosaic", "solid")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm"})
Progress = Callable[[int, int | None], None]  # frames done, total (None: not known)
_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP",
                ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}  # fmt: skip


@dataclass(frozen=True)
class FaceSettings:
    """What `penumbra anonymize faces` does; validated on creation (ConfigError, one line)."""

    mode: Mode = "blur"
    threshold: float = 0.2
    mask_scale: float = 1.3
    keep_audio: bool = False
    scale: tuple[int, int] | None = None  # detection input size (W, H); None: full size
    hold: int = 5  # video: frames a box is kept/interpolated across detector misses
    backend: Backend = "auto"
    ellipse: bool = True
    check_every: int = 10  # video: residual check on every Nth output frame (0: none)

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode: must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0 < self.threshold < 1:
            problems.append(f"threshold: must be in (0, 1), got {self.threshold}")
        if not 1 <= self.mask_scale <= 4:
            problems.append(f"mask-scale: must be in [1, 4], got {self.mask_scale}")
        if self.scale is not None and (min(self.scale) < 32 or max(self.scale) > 8192):
            problems.append(f"scale: each side must be in [32, 8192], got {self.scale}")
        if not 0 <= self.hold <= 300:
            problems.append(f"hold: must be in [0, 300] frames, got {self.hold}")
        if self.backend not in BACKENDS:
            problems.append(f"backend: must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.check_every < 0:
            problems.append(f"check-every: must be >= 0, got {self.check_every}")
        if problems:
            raise ConfigError(*problems)

    def detect(self, image: Image) -> list[Box]:
        return detect_faces(image, self.threshold, in_size=self.scale, backend=self.backend)


# Residual faces are counted at stricter thresholds than masking uses, so that the count means
# "a face is still there" rather than "something scored a little": CenterFace at 0.5 (the
# default of deface's wrapper; at 0.2 a black ellipse beside the astronaut's collar scores 0.3),
# MTCNN at 0.9 for its last stage (on upscaled LFW faces it finds 99/100 at 0.9 as at 0.7, while
# at 0.87 it fires on the collar of the original astronaut JPEG, masked or not).
RESIDUAL_CENTERFACE = 0.5
RESIDUAL_MTCNN = 0.9


@dataclass
class Residual:
    """Faces found on the output: by CenterFace again and by the independent MTCNN."""

    primary: int = 0
    second: int = 0

    def add(self, image: Image, settings: FaceSettings) -> None:
        self.primary += len(
            detect_faces(
                image, RESIDUAL_CENTERFACE, in_size=settings.scale, backend=settings.backend
            )
        )
        self.second += len(second_detector()(image, RESIDUAL_MTCNN))


@dataclass
class FaceReport:
    src: Path
    dst: Path
    faces: int
    scores: list[float]
    residual: Residual
    seconds: float
    kind: Literal["image"] = "image"

    @property
    def fps(self) -> float:
        return 1 / self.seconds if self.seconds > 0 else math.inf


def mask_faces(
    image: Image, boxes: list[Box], mode: Mode, mask_scale: float = 1.3, ellipse: bool = True
) -> Image:
    """A copy of `image` with every box masked; each mask is computed from the original pixels."""
    out = image.copy()
    height, width = image.shape[:2]
    for box in boxes:
        grown = box.scaled(mask_scale)
        x1, y1 = max(0, math.floor(grown.x1)), max(0, math.floor(grown.y1))
        x2, y2 = min(width, math.ceil(grown.x2)), min(height, math.ceil(grown.y2))
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        roi = image[y1:y2, x1:x2]
        side = max(grown.width, grown.height)
        if mode == "blur":
            filled = _blur(roi, side / 6)
        elif mode == "mosaic":
            cell = max(side / 8, 1.0)
            small = (max(1, round(roi.shape[1] / cell)), max(1, round(roi.shape[0] / cell)))
            tiny = cv2.resize(roi, small, interpolation=cv2.INTER_AREA)
            filled = np.asarray(
                cv2.resize(tiny, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_NEAREST),
                np.uint8,
            )
        else:
            filled = np.zeros_like(roi)
        target = out[y1:y2, x1:x2]
        if ellipse:  # pixel centres inside the ellipse inscribed in the grown box
            cx, cy = (grown.x1 + grown.x2) / 2, (grown.y1 + grown.y2) / 2
            yy, xx = np.ogrid[y1:y2, x1:x2]
            inside = ((xx + 0.5 - cx) / (grown.width / 2)) ** 2 + (
                (yy + 0.5 - cy) / (grown.height / 2)
            ) ** 2 <= 1
            target[inside] = filled[inside]
        else:
            target[...] = filled
    return out


def _blur(roi: Image, sigma: float) -> Image:
    """Gaussian blur of std `sigma`; done at a reduced size (sigma 3 px there) and scaled back
    up, since OpenCV's direct blur with a face-sized kernel costs ~60 ms per face."""
    factor = max(1.0, sigma / 3)
    h, w = roi.shape[:2]
    small_size = (max(1, round(w / factor)), max(1, round(h / factor)))
    small = cv2.resize(roi, small_size, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(
        small, (0, 0), sigmaX=max(sigma / factor, 0.5), borderType=cv2.BORDER_REPLICATE
    )
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)


def encode_image(image: Image, suffix: str) -> bytes:
    """The image in the format its suffix names, without any metadata from the source."""
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    options = {"quality": 95} if _PIL_FORMATS[suffix] in ("JPEG", "WEBP") else {}
    PILImage.fromarray(image).save(buffer, format=_PIL_FORMATS[suffix], **options)
    return buffer.getvalue()


def anonymize_image(src: Path, dst: Path, settings: FaceSettings) -> FaceReport:
    """Mask the faces of one image into `dst` (written atomically; its suffix sets the format)."""
    from penumbra.data.images import read_image

    check_pair(src, dst)
    start = time.perf_counter()
    image = np.asarray(read_image(src), dtype=np.uint8)
    boxes = settings.detect(image)
    masked = mask_faces(image, boxes, settings.mode, settings.mask_scale, settings.ellipse)
    data = encode_image(masked, dst.suffix.lower())
    seconds = time.perf_counter() - start
    residual = Residual()
    residual.add(masked, settings)
    atomic_write_bytes(dst, data)
    return FaceReport(src, dst, len(boxes), [b.score for b in boxes], residual, seconds)


def media_kind(path: Path) -> Literal["image", "video"]:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    known = ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {known}")


def check_pair(src: Path, dst: Path) -> None:
    """Refuse what would lose or overwrite the original: a missing source, dst == src, a
    change of media kind."""
    if not src.exists():
        raise DataError(f"{src}: file not found; check the path")
    if not src.is_file():
        raise DataError(f"{src}: not a regular file")
    if dst.exists() and dst.resolve() == src.resolve():
        raise DataError(f"{dst}: output would overwrite the input; choose another output path")
    if media_kind(src) != media_kind(dst):
        raise DataError(f"{dst}: output must be a {media_kind(src)} like {src.name}")
