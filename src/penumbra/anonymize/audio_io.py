"""Reading and writing speech files for voice anonymization: WAV/FLAC via soundfile, MP3 via
the ffmpeg binary bundled in imageio-ffmpeg.

Samples travel as float64 arrays of shape (n_samples, n_channels) in [-1, 1]. A file is
written in the format it came in (same container, same PCM subtype for WAV/FLAC, about the same
bitrate for MP3) and atomically: a failure leaves no output file. Any unreadable input becomes
one `DataError` line that names the file.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from penumbra.durable import atomic_write_bytes, fsync_dir
from penumbra.errors import DataError

SUPPORTED_SUFFIXES = (".wav", ".flac", ".mp3")
_SOUNDFILE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
_DEFAULT_MP3_KBPS = 192


@dataclass(frozen=True)
class AudioFormat:
    """What `write_audio` needs to reproduce an input's format."""

    suffix: str  # ".wav", ".flac" or ".mp3"
    subtype: str | None  # soundfile subtype (PCM_16, FLOAT, ...) for WAV/FLAC
    mp3_kbps: int | None  # bitrate to re-encode an MP3 at


def check_suffix(path: Path) -> str:
    """The lower-case suffix of a supported audio file, or a DataError saying what is."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"{path}: unsupported audio format {suffix or '(no extension)'!r}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return suffix


def read_audio(path: Path) -> tuple[np.ndarray, int, AudioFormat]:
    """Decode `path` to (samples (n, channels) float64, sample rate, format)."""
    suffix = check_suffix(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    if suffix == ".mp3":
        return _read_mp3(path)
    import soundfile as sf

    try:
        info = sf.info(str(path))
        data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        reason = re.sub(r"^Error opening .*?: ", "", reason).rstrip(".")
        raise DataError(f"{path}: not a readable {suffix[1:].upper()} file ({reason})") from e
    if data.shape[0] == 0:
        raise DataError(f"{path}: the file holds no audio samples")
    return data, int(rate), AudioFormat(suffix, info.subtype, None)


def write_audio(path: Path, data: np.ndarray, sample_rate: int, fmt: AudioFormat) -> None:
    """Encode `data` ((n, channels) float in [-1, 1]) to `path` in `fmt`, atomically."""
    if fmt.suffix == ".mp3":
        _write_mp3(path, data, sample_rate, fmt.mp3_kbps or _DEFAULT_MP3_KBPS)
        return
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, data, sample_rate, format=_SOUNDFILE_FORMATS[fmt.suffix], subtype=fmt.subtype)
    atomic_write_bytes(path, buf.getvalue())


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _read_mp3(path: Path) -> tuple[np.ndarray, int, AudioFormat]:
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="penumbra-mp3-") as tmp:
        wav = Path(tmp) / "decoded.wav"
        cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path), "-vn"]
        cmd += ["-acodec", "pcm_f32le", "-f", "wav", str(wav)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not wav.is_file():
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            reason = lines[-1].strip() if lines else f"ffmpeg exit code {proc.returncode}"
            raise DataError(f"{path}: not a readable MP3 file ({reason})")
        data, rate = sf.read(str(wav), dtype="float64", always_2d=True)
    if data.shape[0] == 0:
        raise DataError(f"{path}: the file holds no audio samples")
    match = re.search(r"Audio: mp3.*?(\d+) kb/s", proc.stderr)
    kbps = int(match.group(1)) if match else None
    return data, int(rate), AudioFormat(".mp3", None, kbps)


def _write_mp3(path: Path, data: np.ndarray, sample_rate: int, kbps: int) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = path.with_name(f".{path.stem}.tmp.mp3")
    with tempfile.TemporaryDirectory(prefix="penumbra-mp3-") as tmp:
        wav = Path(tmp) / "in.wav"
        sf.write(str(wav), data, sample_rate, format="WAV", subtype="FLOAT")
        cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-y", "-i", str(wav)]
        cmd += ["-codec:a", "libmp3lame", "-b:a", f"{kbps}k", "-f", "mp3", str(tmp_out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp_out.unlink(missing_ok=True)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise DataError(f"{path}: MP3 encoding failed ({lines[-1] if lines else 'ffmpeg'})")
    with open(tmp_out, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp_out, path)
    fsync_dir(path.parent)
