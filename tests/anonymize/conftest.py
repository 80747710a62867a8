"""Fixtures for the face tests: scikit-image photographs and a small generated video.

The video is 2 s at 15 frames/s, 240x180, with the astronaut's face sliding right, a 440 Hz
AAC tone, and planted container and stream metadata that must not survive anonymization.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

VIDEO_SIZE = (240, 180)
VIDEO_FPS = 15
VIDEO_FRAMES = 30
SECRET_TAGS = (b"secret-title", b"+48.8584+002.2945", b"secret-audio-title", b"secret-comment")


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(_rgb(skimage.data.coffee()))


@pytest.fixture(scope="session")
def lfw() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(faces, non-faces) of scikit-image's lfw_subset, 25x25 grey crops upscaled to 100x100
    and set on a 40-px grey border so the face is not cut by the image edge."""
    import skimage.data

    def prep(crop: np.ndarray) -> np.ndarray:
        grey = cv2.resize(
            (crop * 255).round().astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC
        )
        return cv2.copyMakeBorder(
            _rgb(grey), 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=(128, 128, 128)
        )

    data = skimage.data.lfw_subset()
    return [prep(c) for c in data[:100]], [prep(c) for c in data[100:]]


def face_frame(astronaut: np.ndarray, index: int) -> np.ndarray:
    """Frame `index` of the fixture video: the face (96x120) moves 3 px right per frame."""
    face = cv2.resize(astronaut[30:210, 150:300], (96, 120), interpolation=cv2.INTER_AREA)
    w, h = VIDEO_SIZE
    frame = np.full((h, w, 3), 96, np.uint8)
    x = 20 + 3 * index
    frame[30:150, x : x + 96] = face
    return frame


def ffmpeg() -> str:
    from imageio_ffmpeg import get_ffmpeg_exe

    return str(get_ffmpeg_exe())


@pytest.fixture(scope="session")
def face_video(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("video") / "talk.mp4"
    w, h = VIDEO_SIZE
    cmd = [
        ffmpeg(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
        "-r", str(VIDEO_FPS), "-i", "-", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-metadata", "title=secret-title",
        "-metadata", "location=+48.8584+002.2945/", "-metadata", "comment=secret-comment",
        "-metadata:s:a", "title=secret-audio-title", "-movflags", "use_metadata_tags", str(path),
    ]  # fmt: skip
    frames = b"".join(face_frame(astronaut, i).tobytes() for i in range(VIDEO_FRAMES))
    subprocess.run(cmd, input=frames, check=True)
    data = path.read_bytes()
    assert all(tag in data for tag in SECRET_TAGS), "fixture must carry the planted tags"
    return path


def probe(path: Path) -> str:
    """ffmpeg's description of a media file (streams, tags) as text."""
    result = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True)
    return result.stderr.decode(errors="replace")


def decode_frames(path: Path) -> list[np.ndarray]:
    from imageio_ffmpeg import read_frames

    reader = read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(raw, np.uint8).reshape(h, w, 3) for raw in reader]
