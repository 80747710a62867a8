"""`anonymize faces` over a path: every image and video under a file or a folder, planned as
jobs onto a mirrored output, each masked by penumbra.anonymize.faces (images) or
penumbra.anonymize.video (videos)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from penumbra.anonymize.faces import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    FaceReport,
    FaceSettings,
    Progress,
    anonymize_image,
    media_kind,
)
from penumbra.anonymize.video import VideoReport, anonymize_video
from penumbra.errors import DataError


@dataclass
class Job:
    src: Path
    dst: Path
    kind: Literal["image", "video"] = field(init=False)

    def __post_init__(self) -> None:
        self.kind = media_kind(self.src)


def plan(src: Path, dst: Path) -> tuple[list[Job], int]:
    """(jobs, files skipped as not images/videos). A folder maps onto a mirrored folder; a file
    onto `dst` itself, or `dst/<name>` when dst is a folder or has no suffix."""
    if not src.exists():
        raise DataError(f"{src}: not found; give an image, a video or a folder of them")
    if src.is_file():
        if dst.is_dir() or not dst.suffix:
            dst = dst / src.name
        return [Job(src, dst)], 0
    root, out_root = src.resolve(), dst.resolve()
    if out_root == root or out_root.is_relative_to(root):
        raise DataError(f"{dst}: output folder is inside the input folder {src}; choose another")
    if dst.exists() and not dst.is_dir():
        raise DataError(f"{dst}: is a file; the output of a folder must be a folder")
    jobs, skipped = [], 0
    for path in _walk(src):
        if path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
            jobs.append(Job(path, dst / path.relative_to(src)))
        else:
            skipped += 1
    if not jobs:
        raise DataError(f"{src}: no images or videos found; check the folder")
    return jobs, skipped


def _walk(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(root).parts):
            yield path


def anonymize_faces(
    src: Path, dst: Path, settings: FaceSettings, on_progress: Progress | None = None
) -> list[FaceReport | VideoReport]:
    """Every image and video under `src` (a file or a folder) into `dst`. Files that fail are
    skipped while the others go on; then one DataError lists each failure."""
    jobs, _ = plan(src, dst)
    reports: list[FaceReport | VideoReport] = []
    failures: list[str] = []
    for job in jobs:
        try:
            if job.kind == "image":
                reports.append(anonymize_image(job.src, job.dst, settings))
            else:
                reports.append(anonymize_video(job.src, job.dst, settings, on_progress))
        except DataError as e:
            if len(jobs) == 1:
                raise
            failures.extend(e.problems)
    if failures:
        raise DataError(*failures)
    return reports
