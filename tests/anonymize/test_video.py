from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from penumbra.anonymize.detect import Box, detect_faces
from penumbra.anonymize.faces import FaceSettings
from penumbra.anonymize.video import TemporalHold, VideoReport, anonymize_video
from penumbra.cli import main
from penumbra.errors import DataError

from .conftest import (
    SECRET_TAGS,
    VIDEO_FPS,
    VIDEO_FRAMES,
    decode_frames,
    face_frame,
    ffmpeg,
    probe,
)

# --- temporal hold, on synthetic boxes -------------------------------------------------------


def run_hold(hold: int, detections: dict[int, list[Box]], n: int) -> list[list[Box]]:
    th: TemporalHold[int] = TemporalHold(hold)
    out: list[tuple[int, int, list[Box], int]] = []
    for i in range(n):
        out += th.push(i, i, detections.get(i, []))
        assert len(th.pending) <= hold + 1  # bounded look-ahead: streaming, not buffering
    out += th.flush()
    assert [index for index, *_ in out] == list(range(n))
    return [boxes for _, _, boxes, _ in out]


def test_a_missed_frame_gets_the_interpolated_box() -> None:
    dets = {0: [Box(0, 0, 10, 10, 0.9)], 1: [Box(2, 0, 12, 10, 0.9)], 3: [Box(6, 0, 16, 10, 0.8)]}
    frames = run_hold(5, dets, 4)
    (mid,) = frames[2]
    assert (mid.x1, mid.x2) == pytest.approx((4, 14))  # halfway between frames 1 and 3


def test_hold_carries_a_box_forward_and_backward_then_drops_it() -> None:
    box = Box(0, 0, 10, 10, 0.9)
    frames = run_hold(2, {5: [box]}, 12)
    assert [len(f) for f in frames] == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert run_hold(0, {5: [box]}, 8)[4] == []


def test_two_faces_are_tracked_apart() -> None:
    left, right = Box(0, 0, 10, 10, 0.9), Box(100, 0, 110, 10, 0.9)
    dets = {0: [left, right], 1: [left], 2: [left, right]}
    frames = run_hold(3, dets, 3)
    assert sorted(b.x1 for b in frames[1]) == [0, 100]


def test_long_gap_is_not_bridged() -> None:
    a, b = Box(0, 0, 10, 10, 0.9), Box(4, 0, 14, 10, 0.9)
    frames = run_hold(1, {0: [a], 9: [b]}, 10)
    assert [len(f) for f in frames] == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]


# --- the generated video ---------------------------------------------------------------------


def face_region(index: int) -> tuple[slice, slice]:
    x = 20 + 3 * index
    return slice(45, 135), slice(x + 15, x + 81)  # the face's centre part, inside any mask


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory, face_video: Path) -> VideoReport:
    dst = tmp_path_factory.mktemp("out") / "nested" / "talk.mp4"
    return anonymize_video(face_video, dst, FaceSettings(check_every=5))


def test_video_frames_duration_and_masking(default_run: VideoReport, astronaut: np.ndarray) -> None:
    report = default_run
    assert report.frames == VIDEO_FRAMES and report.video_fps == VIDEO_FPS
    assert report.faces_max == 1 and report.frames_with_faces >= VIDEO_FRAMES - 2
    assert report.frames_checked == 6
    assert (report.residual.primary, report.residual.second) == (0, 0)
    assert "Duration: 00:00:02.00" in probe(report.dst)
    frames = decode_frames(report.dst)
    assert len(frames) == VIDEO_FRAMES
    for i, frame in enumerate(frames):
        original = face_frame(astronaut, i)
        region = face_region(i)
        diff = np.abs(frame[region].astype(int) - original[region].astype(int)).mean()
        assert diff > 15, f"frame {i}: face region looks unmasked (mean diff {diff:.1f})"
        assert detect_faces(frame, 0.5) == [], f"frame {i}: a face is still detectable"
        # Background far from the face: only compression noise.
        assert np.abs(frame[165:, :].astype(int) - original[165:, :].astype(int)).mean() < 3


def test_no_metadata_and_no_audio_by_default(default_run: VideoReport, face_video: Path) -> None:
    assert "Audio:" in probe(face_video)
    data = default_run.dst.read_bytes()
    for tag in SECRET_TAGS:
        assert tag not in data
    assert b"x264 - core" not in data  # encoder settings banner (SEI) removed
    text = probe(default_run.dst)
    assert "Audio:" not in text
    assert not re.search(r"title|location|comment|creation_time", text)
    assert not list(default_run.dst.parent.glob(".*partial*"))


def audio_md5(path: Path) -> str:
    cmd = [ffmpeg(), "-v", "error", "-i", str(path), "-map", "0:a", "-c", "copy", "-f", "md5", "-"]
    return subprocess.run(cmd, capture_output=True, check=True, text=True).stdout.strip()


def test_keep_audio_copies_the_stream(tmp_path: Path, face_video: Path) -> None:
    report = anonymize_video(
        face_video, tmp_path / "a.mp4", FaceSettings(keep_audio=True, check_every=0)
    )
    assert report.audio_kept
    assert audio_md5(report.dst) == audio_md5(face_video)  # same packets: copied, not re-encoded
    data = report.dst.read_bytes()
    assert not any(tag in data for tag in SECRET_TAGS)


def test_hold_masks_a_frame_the_detector_missed(
    tmp_path: Path, face_video: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frame 12's detection is dropped: with the hold the face there is still masked, without
    it the face shows (so the test can tell the two apart)."""
    real = FaceSettings.detect
    calls: list[int] = []

    def flaky(self: FaceSettings, image: np.ndarray) -> list[Box]:
        calls.append(1)
        return [] if len(calls) % VIDEO_FRAMES == 13 else real(self, image)

    monkeypatch.setattr(FaceSettings, "detect", flaky)
    results = {}
    for hold in (5, 0):
        report = anonymize_video(
            face_video, tmp_path / f"h{hold}.mp4", FaceSettings(hold=hold, check_every=0)
        )
        frame = decode_frames(report.dst)[12]
        diff = np.abs(
            frame[face_region(12)].astype(int) - face_frame(astronaut, 12)[face_region(12)]
        )
        results[hold] = (report.held, float(diff.mean()))
    assert results[5][0] >= 1 and results[5][1] > 15  # masked by the hold
    assert results[0][0] == 0 and results[0][1] < 5  # really missed without it


def test_cli_video_prints_frames_per_second(
    tmp_path: Path, face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["anonymize", "faces", str(face_video), str(tmp_path / "o.mp4"), "--scale",
                 "128x96", "--mode", "mosaic", "--check-every", "0"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "30 frames" in out and "frames/s" in out and "max 1 per frame" in out


@pytest.mark.parametrize(
    "content", [b"", b"\x00\x00\x00\x18ftypmp42" + bytes(200), b"RIFF....AVI garbage"]
)
def test_corrupt_video_exit_2_no_output(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "bad.mp4"
    src.write_bytes(content)
    out = tmp_path / "out"
    code = main(["anonymize", "faces", str(src), str(out / "bad.mp4")])
    _, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "bad.mp4" in err
    assert not out.exists() or not any(out.iterdir())


def test_truncated_video_leaves_no_output(tmp_path: Path, face_video: Path) -> None:
    data = face_video.read_bytes()
    src = tmp_path / "cut.mp4"
    src.write_bytes(data[: len(data) // 2])  # moov atom at the end is lost
    with pytest.raises(DataError):
        anonymize_video(src, tmp_path / "o" / "cut.mp4", FaceSettings(check_every=0))
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
