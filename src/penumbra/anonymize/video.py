"""Face masking for video, streamed frame by frame through the ffmpeg that imageio-ffmpeg ships.

Memory stays bounded: frames are decoded one at a time and at most `hold + 1` of them wait in
the temporal hold's look-ahead before they are masked and piped to the encoder.

Temporal hold: a detector misses a face now and then (motion blur, a turned head) and a face
that is masked in 29 frames of 30 is still seen. Detections are linked over time into tracks;
a frame where a track has no detection gets an interpolated box when the track is found again
within `hold` frames, else the last box for up to `hold` frames after it was seen and the first
box for up to `hold` frames before it appears (the look-ahead makes this pre-roll free).

Output: same container as the input, H.264 (VP9 for .webm), written to a hidden temporary file
beside the output and renamed into place only when ffmpeg exits cleanly. Audio is dropped unless
`keep_audio`, which copies the audio streams without re-encoding. Container and stream metadata
(title, location, creation time, encoder tags) and chapters are not copied (`-map_metadata -1`,
bitexact flags); for H.264 the SEI units (the x264 settings banner) are removed as well.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import numpy as np

from penumbra.anonymize.detect import Box
from penumbra.anonymize.faces import FaceSettings, Progress, Residual, check_pair, mask_faces
from penumbra.durable import fsync_dir
from penumbra.errors import DataError

T = TypeVar("T")


@dataclass
class _Track:
    seen: dict[int, Box] = field(default_factory=dict)  # frame index -> detected box

    @property
    def last(self) -> int:
        return max(self.seen)


class TemporalHold(Generic[T]):
    """Delays frames by `hold` so each can be given the boxes of detections around it.

    push() returns the frames that are now final, in order, as (index, payload, boxes, added)
    where `added` counts boxes that came from the hold rather than from a detection on that
    frame; flush() returns the rest at the end of the stream.
    """

    def __init__(self, hold: int, min_iou: float = 0.1) -> None:
        self.hold = hold
        self.min_iou = min_iou
        self.tracks: list[_Track] = []
        self.pending: deque[tuple[int, T]] = deque()
        self.newest = -1

    def push(self, index: int, payload: T, boxes: list[Box]) -> list[tuple[int, T, list[Box], int]]:
        if index <= self.newest:
            raise ValueError("frames must be pushed in increasing order")
        self.newest = index
        self._link(index, boxes)
        self.pending.append((index, payload))
        ready = []
        while self.pending and self.pending[0][0] <= index - self.hold:
            ready.append(self._finish(*self.pending.popleft()))
        return ready

    def flush(self) -> list[tuple[int, T, list[Box], int]]:
        ready = [self._finish(*item) for item in self.pending]
        self.pending.clear()
        return ready

    def _link(self, index: int, boxes: list[Box]) -> None:
        """Greedy association: each new box joins the best-overlapping live track (or one whose
        last box holds its centre, for fast motion), else starts a new track."""
        live = [t for t in self.tracks if t.last >= index - self.hold - 1]
        taken: set[int] = set()
        for box in sorted(boxes, key=lambda b: -b.score):
            best, best_score = None, 0.0
            for k, track in enumerate(live):
                if k in taken:
                    continue
                prev = track.seen[track.last]
                score = prev.iou(box)
                cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
                if score < self.min_iou and prev.x1 <= cx <= prev.x2 and prev.y1 <= cy <= prev.y2:
                    score = self.min_iou
                if score >= self.min_iou and score > best_score:
                    best, best_score = k, score
            if best is None:
                track = _Track()
                self.tracks.append(track)
                live.append(track)
                taken.add(len(live) - 1)
            else:
                track = live[best]
                taken.add(best)
            track.seen[index] = box

    def _finish(self, index: int, payload: T) -> tuple[int, T, list[Box], int]:
        boxes: list[Box] = []
        added = 0
        for track in self.tracks:
            if index in track.seen:
                boxes.append(track.seen[index])
                continue
            before = [k for k in track.seen if k < index]
            after = [k for k in track.seen if k > index]
            prev, nxt = (max(before) if before else None), (min(after) if after else None)
            if prev is not None and nxt is not None and nxt - prev - 1 <= self.hold:
                boxes.append(
                    _lerp(track.seen[prev], track.seen[nxt], (index - prev) / (nxt - prev))
                )
            elif prev is not None and index - prev <= self.hold:
                boxes.append(track.seen[prev])
            elif nxt is not None and nxt - index <= self.hold:
                boxes.append(track.seen[nxt])
            else:
                continue
            added += 1
        # Forget what can no longer reach a frame still to be finished.
        horizon = index - self.hold
        for track in self.tracks:
            for k in [k for k in track.seen if k < horizon]:
                del track.seen[k]
        self.tracks = [t for t in self.tracks if t.seen]
        return index, payload, boxes, added


def _lerp(a: Box, b: Box, t: float) -> Box:
    return Box(*(u + (v - u) * t for u, v in zip(
        (a.x1, a.y1, a.x2, a.y2, min(a.score, b.score)),
        (b.x1, b.y1, b.x2, b.y2, min(a.score, b.score)), strict=True,
    )))  # fmt: skip


@dataclass
class VideoReport:
    src: Path
    dst: Path
    frames: int
    width: int
    height: int
    video_fps: float
    faces_total: int  # detections summed over frames
    faces_max: int  # most faces masked in one frame
    frames_with_faces: int
    held: int  # boxes added by the temporal hold
    residual: Residual
    frames_checked: int
    seconds: float
    audio_kept: bool
    kind: str = "video"

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.inf


def _encoder_args(suffix: str) -> list[str]:
    if suffix == ".webm":
        return ["-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0", "-deadline", "realtime",
                "-cpu-used", "8", "-row-mt", "1"]  # fmt: skip
    return ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
            "-bsf:v", "filter_units=remove_types=6"]  # fmt: skip


class _Writer:
    """ffmpeg reading raw RGB frames on stdin; its exit status is checked, unlike imageio's."""

    def __init__(self, dst: Path, size: tuple[int, int], fps: float, audio_from: Path | None):
        from imageio_ffmpeg import get_ffmpeg_exe

        w, h = size
        cmd = [get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", _rate(fps), "-i", "-"]  # fmt: skip
        if audio_from is not None:
            cmd += ["-i", str(audio_from), "-map", "0:v:0", "-map", "1:a?", "-c:a", "copy"]
        else:
            cmd += ["-an"]
        cmd += _encoder_args(dst.suffix.lower())
        if w % 2 or h % 2:  # 4:2:0 needs even sides: pad one pixel, never rescale
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        cmd += ["-pix_fmt", "yuv420p", "-map_metadata", "-1", "-map_chapters", "-1",
                "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                "-dn", "-sn", str(dst)]  # fmt: skip
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close/kill)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self.log)

    def write(self, frame: np.ndarray[Any, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:
            self.close()  # raises with ffmpeg's own message

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        code = self.proc.wait()
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip().splitlines()
        self.log.close()
        if code != 0:
            raise DataError(f"ffmpeg could not write the video: {text[-1] if text else code}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def _rate(fps: float) -> str:
    from fractions import Fraction

    return str(Fraction(fps).limit_denominator(1001))


def anonymize_video(
    src: Path, dst: Path, settings: FaceSettings, on_progress: Progress | None = None
) -> VideoReport:
    """Mask the faces of every frame of `src` into `dst`; see the module docstring.

    `on_progress(frames_done, frames_expected)` is called after each frame (expected is
    fps x duration from the container, None when unknown)."""
    from imageio_ffmpeg import read_frames

    check_pair(src, dst)
    start = time.perf_counter()
    reader = read_frames(str(src), pix_fmt="rgb24")
    try:
        meta = next(reader)
        width, height = (int(v) for v in meta["size"])
        fps = float(meta.get("fps") or 0)
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError, TypeError) as e:
        reader.close()
        raise DataError(f"{src}: not a readable video (corrupt or unknown format)") from e
    if fps <= 0 or width <= 0 or height <= 0:
        reader.close()
        raise DataError(f"{src}: video has no usable frame rate or frame size")
    duration = float(meta.get("duration") or 0)
    expected = round(fps * duration) if duration > 0 else None
    audio = settings.keep_audio and bool(meta.get("audio_codec"))

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    writer = _Writer(tmp, (width, height), fps, src if audio else None)
    hold: TemporalHold[np.ndarray[Any, Any]] = TemporalHold(settings.hold)
    report = VideoReport(src, dst, 0, width, height, fps, 0, 0, 0, 0, Residual(), 0, 0.0, audio)

    def emit(item: tuple[int, np.ndarray[Any, Any], list[Box], int]) -> None:
        index, frame, boxes, added = item
        masked = mask_faces(frame, boxes, settings.mode, settings.mask_scale, settings.ellipse)
        writer.write(masked)
        report.frames += 1
        report.held += added
        report.faces_max = max(report.faces_max, len(boxes))
        if settings.check_every and index % settings.check_every == 0:
            report.residual.add(masked, settings)
            report.frames_checked += 1
        if on_progress is not None:
            on_progress(report.frames, expected)

    try:
        try:
            for index, raw in enumerate(reader):
                frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
                found = settings.detect(frame)
                report.faces_total += len(found)
                report.frames_with_faces += bool(found)
                for item in hold.push(index, frame, found):
                    emit(item)
        except RuntimeError as e:
            raise DataError(f"{src}: video is corrupt or truncated ({_first_line(e)})") from e
        finally:
            reader.close()
        for item in hold.flush():
            emit(item)
        if report.frames == 0:
            raise DataError(f"{src}: video has no frames")
        writer.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except BaseException:
        writer.kill()
        tmp.unlink(missing_ok=True)
        raise
    report.seconds = time.perf_counter() - start
    return report


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__
