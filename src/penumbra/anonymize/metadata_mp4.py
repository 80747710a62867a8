"""MP4/MOV metadata stripping for `penumbra.anonymize.metadata`.

ffmpeg (imageio-ffmpeg's binary) remuxes with stream copy, dropping global/stream metadata,
chapters, non-audio/video tracks and H.264/HEVC SEI units, bit-exact so it writes no encoder
string; the 'moov' box is then rebuilt without the udta/meta/uuid boxes ffmpeg itself adds,
and the result is re-parsed before it is moved into place.
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from penumbra.durable import atomic_write_bytes
from penumbra.errors import ConfigError, DataError


class _Corrupt(Exception):
    """Internal: the file does not parse as MP4/MOV."""


_BOX_CONTAINERS = {
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"edts", b"dinf", b"moof", b"traf",
    b"mvex", b"meta", b"ilst",
}  # fmt: skip
_BOX_METADATA = {b"udta", b"meta", b"ilst", b"uuid", b"XMP_", b"keys", b"loci", b"cprt"}
_ENCODER_STRINGS = (b"Lavf", b"Lavc", b"x264 - core", b"x265 (build", b"\xa9xyz")


def _box_at(data: bytes, pos: int, end: int) -> tuple[bytes, int, int]:
    """(type, total size, header size) of the box at `pos`."""
    size, kind = struct.unpack(">I4s", data[pos : pos + 8])
    header = 8
    if size == 1:
        (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
        header = 16
    elif size == 0:
        size = end - pos
    if size < header or pos + size > end:
        raise _Corrupt(f"bad box size for '{kind.decode('latin-1')}'")
    return kind, size, header


def _children(data: bytes, kind: bytes, pos: int, header: int) -> int:
    child = pos + header
    if kind == b"meta" and data[child : child + 4] == b"\x00\x00\x00\x00":
        child += 4  # ISO 'meta' is a full box; QuickTime's is not
    return child


def _box_tree(data: bytes, start: int, end: int, out: list[bytes]) -> None:
    """Append every box type under [start, end), descending into containers (not mdat)."""
    pos = start
    while pos + 8 <= end:
        kind, size, header = _box_at(data, pos, end)
        out.append(kind)
        if kind in _BOX_CONTAINERS:
            _box_tree(data, _children(data, kind, pos, header), pos + size, out)
        pos += size


def _is_metadata_box(kind: bytes) -> bool:
    return kind in _BOX_METADATA or kind[:1] == b"\xa9"


def _rebuild(data: bytes, start: int, end: int) -> bytes:
    """Container content with every metadata box (udta, meta, uuid, ...) left out."""
    out, pos = bytearray(), start
    while pos + 8 <= end:
        kind, size, header = _box_at(data, pos, end)
        if _is_metadata_box(kind):
            pass
        elif kind in _BOX_CONTAINERS:
            body = _rebuild(data, pos + header, pos + size)
            out += struct.pack(">I4s", 8 + len(body), kind) + body
        else:
            out += data[pos : pos + size]
        pos += size
    return bytes(out)


def _top_level(data: bytes) -> list[tuple[bytes, int, int]]:
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        kind, size, _ = _box_at(data, pos, len(data))
        boxes.append((kind, pos, pos + size))
        pos += size
    return boxes


def _drop_metadata_boxes(data: bytes) -> bytes:
    """Remove metadata boxes everywhere; only safe when 'moov' follows the media data."""
    top = _top_level(data)
    out = bytearray()
    seen_moov = False
    for kind, start, end in top:
        if _is_metadata_box(kind):
            continue
        if kind == b"moov":
            seen_moov = True
            body = _rebuild(data, start + 8, end)
            out += struct.pack(">I4s", 8 + len(body), kind) + body
        else:
            if kind == b"mdat" and seen_moov:
                raise _Corrupt("'moov' before 'mdat': cannot resize it without moving media")
            out += data[start:end]
    return bytes(out)


def _video_findings(data: bytes) -> Counter[str]:
    top = _top_level(data)
    moovs = [(start, end) for kind, start, end in top if kind == b"moov"]
    if not moovs:
        raise _Corrupt("no 'moov' box")
    boxes: list[bytes] = []
    _box_tree(data, 0, len(data), boxes)
    found: Counter[str] = Counter()
    for kind in boxes:
        if _is_metadata_box(kind):
            found[f"box '{kind.decode('latin-1')}'"] += 1
    for handler in _handlers(data[moovs[0][0] : moovs[0][1]]):
        if handler not in (b"vide", b"soun", b"dhlr", b"url ", b"alis", b"\x00" * 4):
            found[f"'{handler.decode('latin-1')}' handler"] += 1
    for text in _ENCODER_STRINGS:
        if text in data:
            found[f"encoder string '{text.decode('latin-1')}'"] += 1
    return found


def _handlers(moov: bytes) -> list[bytes]:
    """Handler types in 'hdlr' boxes ('vide', 'soun', 'text', 'mdir', 'tmcd', ...)."""
    found, pos = [], 0
    while (pos := moov.find(b"hdlr", pos + 1)) > 0:
        found.append(moov[pos + 12 : pos + 16])
    return found


def strip_video(src: Path, dst: Path) -> dict[str, int]:
    """Write `dst`: `src` remuxed without metadata; what was found and removed, by name.

    DataError (and no `dst`) if `src` does not parse, ffmpeg fails, or the cleaned output
    still holds a metadata box, a non-media handler or an encoder string."""
    import mmap
    import re

    with open(src, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
        try:
            found = _video_findings(bytes(view))
        except (_Corrupt, struct.error) as e:
            raise DataError(f"{src}: corrupt or unsupported MP4/MOV ({e})") from None
    probe = run_ffmpeg(["-i", str(src)], src, check=False)
    codec = re.search(r"Stream #0:\d+.*?: Video: (\w+)", probe)
    bsf = {"h264": ["-bsf:v", "filter_units=remove_types=6"],
           "hevc": ["-bsf:v", "filter_units=remove_types=39|40"]}  # fmt: skip
    # FFmpeg's AAC encoder writes "Lavc<version>" into the audio stream itself; only a
    # re-encode (bit-exact, so without that tag) removes it. Video is never re-encoded.
    audio = ["-c:a", "copy"]
    if "encoder string 'Lavc'" in found:
        audio = ["-c:a", "aac", "-b:a", "192k"]
        found["audio re-encoded (encoder tag in AAC stream)"] += 1
    tmp = temp_beside(dst)
    try:
        run_ffmpeg(
            ["-i", str(src), "-map", "0:V?", "-map", "0:a?", "-map_metadata", "-1",
             "-map_chapters", "-1", "-c:v", "copy", *audio,
             *bsf.get(codec.group(1) if codec else "", []),
             "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
             "-f", "mov" if dst.suffix.lower() == ".mov" else "mp4", str(tmp)],
            src,
        )  # fmt: skip
        try:
            clean = _drop_metadata_boxes(tmp.read_bytes())
            left = _video_findings(clean)
        except (_Corrupt, struct.error) as e:
            raise DataError(f"{src}: ffmpeg output cannot be cleaned ({e})") from None
        if left:
            raise DataError(
                f"{src}: metadata still present after stripping: {', '.join(sorted(left))}"
            )
        atomic_write_bytes(dst, clean)
    finally:
        tmp.unlink(missing_ok=True)
    return dict(found)


def run_ffmpeg(args: list[str], what: Path, *, check: bool = True) -> str:
    """Run imageio-ffmpeg's binary; DataError with its last error line on failure."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ConfigError("video metadata stripping needs imageio-ffmpeg") from None
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    proc = subprocess.run(
        [exe, "-hide_banner", "-nostdin", "-y", *args], capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
        raise DataError(f"{what}: ffmpeg failed ({lines[-1] if lines else proc.returncode})")
    return proc.stderr


def temp_beside(dst: Path) -> Path:
    """A fresh temporary path in `dst`'s folder (same file system, so os.replace is atomic)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=dst.suffix, dir=dst.parent)
    os.close(fd)
    return Path(name)
