"""Strip identifying metadata from images and videos without touching their pixels.

JPEG, PNG and WebP are rewritten at the segment/chunk level with an allow-list: only what a
decoder needs survives, so the compressed pixel data is byte-identical and no quality is lost
(re-saving with Pillow would re-encode and would keep JPEG COM segments; piexif keeps IPTC and
XMP). TIFF is re-written by Pillow from a fresh image holding only the pixels (lossless; its
tags are re-created, so only decoding tags remain). MP4/MOV are remuxed by ffmpeg with stream
copy, keeping only video and audio streams (GPS telemetry tracks, subtitles and cover art go)
without metadata, chapters, encoder strings or H.264/HEVC SEI units (`metadata_mp4`).

ICC profiles are dropped, not replaced: they carry free text (description, copyright, device
maker and model, dates) and their exact bytes fingerprint a device or editor. A viewer then
assumes sRGB, exactly as if a clean sRGB profile were embedded, so wide-gamut (Display P3,
Adobe RGB) images look slightly less saturated; convert them to sRGB first if that matters.
The EXIF orientation is the one EXIF field kept (as a fresh one-tag EXIF block) because
dropping it would show photos sideways.

Every output is re-parsed before it is moved into place; if anything removable is still
there, or the pixels changed, DataError is raised and no output is left.
"""

from __future__ import annotations

import io
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from penumbra.anonymize.metadata_mp4 import strip_video
from penumbra.durable import atomic_write_bytes
from penumbra.errors import ConfigError, DataError

if TYPE_CHECKING:
    from penumbra.compute.engine import Engine

SUFFIXES = {
    ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".png": "png", ".webp": "webp",
    ".tif": "tiff", ".tiff": "tiff", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mp4",
}  # fmt: skip


@dataclass
class FileReport:
    """What was removed from one file: segment/chunk/tag names and how many of each."""

    src: Path
    dst: Path
    kind: str
    removed: dict[str, int] = field(default_factory=dict)


@dataclass
class MetadataReport:
    files: list[FileReport] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # unsupported types, not copied

    def totals(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for f in self.files:
            total.update(f.removed)
        return dict(total)


class _Corrupt(Exception):
    """Internal: the file does not parse as its format."""


def _kind(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4"
    return None


# ---- JPEG ------------------------------------------------------------------------------------

_JPEG_KEEP = {0xDB, 0xC4, 0xDD, 0xCC} | {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xCC)}


def _jpeg_name(marker: int, payload: bytes) -> str:
    if marker == 0xFE:
        return "JPEG COM"
    if marker == 0xE1:
        if payload.startswith(b"Exif\x00"):
            return "EXIF (APP1)"
        if payload.startswith((b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp")):
            return "XMP (APP1)"
    if marker == 0xED:
        return "IPTC/Photoshop IRB (APP13)"
    if marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"):
        return "ICC profile (APP2)"
    if marker == 0xE0 and payload.startswith(b"JFXX\x00"):
        return "JFIF thumbnail (APP0 JFXX)"
    if 0xE0 <= marker <= 0xEF:
        return f"APP{marker - 0xE0}"
    return f"marker 0x{marker:02X}"


def _orientation(exif_payload: bytes) -> int:
    from PIL import Image

    try:
        exif = Image.Exif()
        exif.load(exif_payload[6:])
        value = int(exif.get(0x0112, 1))
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Header segments before the first SOS (marker, payload) and the SOS offset."""
    pos = 2
    out: list[tuple[int, bytes]] = []
    while True:
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise _Corrupt("bad JPEG marker")
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > len(data):
            raise _Corrupt("truncated JPEG segment")
        if marker == 0xDA:
            return out, pos
        out.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length


def _jpeg_scan(data: bytes, pos: int) -> tuple[bytes, Counter[str]]:
    """From the first SOS to EOI: scans kept, markers between scans filtered, trailer dropped."""
    removed: Counter[str] = Counter()
    kept = bytearray()
    start = pos
    while True:
        index = data.find(b"\xff", pos)
        if index < 0 or index + 1 >= len(data):
            raise _Corrupt("JPEG has no end-of-image marker")
        marker = data[index + 1]
        if marker == 0x00 or marker == 0xFF or 0xD0 <= marker <= 0xD7:
            pos = index + 1 if marker == 0xFF else index + 2
            continue
        if marker == 0xD9:
            kept += data[start : index + 2]
            if index + 2 < len(data):
                removed["data after end of image"] += 1
            return bytes(kept), removed
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        end = index + 2 + length
        if marker in _JPEG_KEEP or marker == 0xDA:
            pos = end
            continue
        kept += data[start:index]
        removed[_jpeg_name(marker, data[index + 4 : end])] += 1
        start = pos = end


def _strip_jpeg(data: bytes) -> tuple[bytes, Counter[str]]:
    segments, sos = _jpeg_segments(data)
    removed: Counter[str] = Counter()
    out = bytearray(b"\xff\xd8")
    orientation = 1
    for marker, payload in segments:
        if marker == 0xE0 and payload.startswith(b"JFIF\x00") and len(payload) >= 14:
            if payload[12] or payload[13]:
                removed["JFIF thumbnail (APP0 JFIF)"] += 1
            payload = payload[:12] + b"\x00\x00"  # density kept, thumbnail gone
        elif marker == 0xEE and payload.startswith(b"Adobe"):
            pass  # colour transform flag needed to decode CMYK/YCCK correctly
        elif marker not in _JPEG_KEEP:
            if marker == 0xE1 and payload.startswith(b"Exif\x00"):
                orientation = _orientation(payload)
            removed[_jpeg_name(marker, payload)] += 1
            continue
        out += struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload
    if orientation != 1:
        from PIL import Image

        exif = Image.Exif()
        exif[0x0112] = orientation
        block = exif.tobytes()
        segment = struct.pack(">BBH", 0xFF, 0xE1, len(block) + 2) + block
        jfif = 2 + (4 + len(segments[0][1]) if segments and segments[0][0] == 0xE0 else 0)
        out[jfif:jfif] = segment
    scans, after = _jpeg_scan(data, sos)
    removed.update(after)
    return bytes(out) + scans, removed


def _verify_jpeg(data: bytes) -> list[str]:
    segments, sos = _jpeg_segments(data)
    left = []
    for marker, payload in segments:
        if marker == 0xE1 and payload.startswith(b"Exif\x00"):
            from PIL import Image

            exif = Image.Exif()
            exif.load(payload[6:])
            if set(exif) - {0x0112} or exif.get_ifd(0x8825) or exif.get_ifd(0x8769):
                left.append("EXIF beyond orientation")
        elif marker == 0xE0 and payload.startswith(b"JFIF\x00"):
            if payload[12:14] != b"\x00\x00":
                left.append("JFIF thumbnail")
        elif not (marker in _JPEG_KEEP or (marker == 0xEE and payload.startswith(b"Adobe"))):
            left.append(_jpeg_name(marker, payload))
    _, after = _jpeg_scan(data, sos)
    return left + list(after)


# ---- PNG -------------------------------------------------------------------------------------

_PNG_KEEP = {
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD",
    b"pHYs", b"acTL", b"fcTL", b"fdAT", b"cICP", b"mDCV", b"cLLI",
}  # fmt: skip
_PNG_NAMES = {b"iCCP": "ICC profile (iCCP)"}


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, out = 8, []
    while pos < len(data):
        if pos + 12 > len(data):
            raise _Corrupt("truncated PNG chunk")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise _Corrupt("truncated PNG chunk")
        out.append((kind, data[pos:end]))
        pos = end
        if kind == b"IEND":
            break
    if not out or out[0][0] != b"IHDR" or out[-1][0] != b"IEND":
        raise _Corrupt("PNG without IHDR/IEND")
    return out


def _png_name(kind: bytes, chunk: bytes) -> str:
    if kind == b"iTXt" and chunk[8:].startswith(b"XML:com.adobe.xmp\x00"):
        return "XMP (PNG iTXt)"
    return _PNG_NAMES.get(kind, f"PNG {kind.decode('latin-1')}")


def _strip_png(data: bytes) -> tuple[bytes, Counter[str]]:
    removed: Counter[str] = Counter()
    out = bytearray(data[:8])
    for kind, chunk in _png_chunks(data):
        if kind in _PNG_KEEP:
            out += chunk
        else:
            removed[_png_name(kind, chunk)] += 1
    return bytes(out), removed


def _verify_png(data: bytes) -> list[str]:
    return [_png_name(k, c) for k, c in _png_chunks(data) if k not in _PNG_KEEP]


# ---- WebP ------------------------------------------------------------------------------------

_WEBP_KEEP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"}
_WEBP_NAMES = {b"EXIF": "EXIF (WebP)", b"XMP ": "XMP (WebP)", b"ICCP": "ICC profile (WebP)"}


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    (size,) = struct.unpack("<I", data[4:8])
    if size + 8 > len(data) or size < 4:
        raise _Corrupt("truncated RIFF")
    pos, end, out = 12, 8 + size, []
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        stop = pos + 8 + length + (length & 1)
        if pos + 8 + length > end:
            raise _Corrupt("truncated WebP chunk")
        out.append((kind, data[pos:stop]))
        pos = stop
    if not out:
        raise _Corrupt("WebP without chunks")
    return out


def _strip_webp(data: bytes) -> tuple[bytes, Counter[str]]:
    removed: Counter[str] = Counter()
    body = bytearray()
    for kind, chunk in _webp_chunks(data):
        if kind not in _WEBP_KEEP:
            removed[_WEBP_NAMES.get(kind, f"WebP {kind.decode('latin-1')}")] += 1
            continue
        if kind == b"VP8X":  # clear the ICC (0x20), EXIF (0x08) and XMP (0x04) flags
            chunk = chunk[:8] + bytes([chunk[8] & ~0x2C & 0xFF]) + chunk[9:]
        body += chunk
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + bytes(body), removed


def _verify_webp(data: bytes) -> list[str]:
    left = []
    for kind, chunk in _webp_chunks(data):
        if kind not in _WEBP_KEEP:
            left.append(_WEBP_NAMES.get(kind, kind.decode("latin-1")))
        elif kind == b"VP8X" and chunk[8] & 0x2C:
            left.append("VP8X metadata flags")
    return left


# ---- TIFF ------------------------------------------------------------------------------------

# Tags a decoder needs: size, layout, compression, photometric, strips/tiles, palette, YCbCr,
# extra samples, sample format, predictor. Everything else (make, model, dates, GPS, EXIF,
# IPTC, XMP, ICC, software, artist, description, resolution...) is dropped.
_TIFF_DECODE_TAGS = {
    254, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325,
    338, 339, 530, 531, 532,
}  # fmt: skip


def _strip_tiff(data: bytes) -> tuple[bytes, Counter[str]]:
    from PIL import Image, ImageSequence, TiffTags

    removed: Counter[str] = Counter()
    frames = []
    with Image.open(io.BytesIO(data)) as image:
        compression = image.info.get("compression", "raw")
        for frame in ImageSequence.Iterator(image):
            for tag in getattr(frame, "tag_v2", {}):
                if tag not in _TIFF_DECODE_TAGS:
                    removed[f"TIFF {TiffTags.lookup(tag).name}"] += 1
            frame.load()
            frames.append(Image.frombytes(frame.mode, frame.size, frame.tobytes()))
    if compression not in ("raw", "tiff_lzw", "tiff_adobe_deflate", "packbits", "tiff_deflate"):
        compression = "tiff_lzw"  # lossless; never re-encode lossy (JPEG-in-TIFF) lossily again
    buffer = io.BytesIO()
    frames[0].save(
        buffer, "TIFF", compression=compression, save_all=len(frames) > 1,
        append_images=frames[1:],
    )  # fmt: skip
    return buffer.getvalue(), removed


def _verify_tiff(data: bytes) -> list[str]:
    from PIL import Image, ImageSequence, TiffTags

    left = []
    with Image.open(io.BytesIO(data)) as image:
        for frame in ImageSequence.Iterator(image):
            left += [
                f"TIFF {TiffTags.lookup(t).name}"
                for t in getattr(frame, "tag_v2", {})
                if t not in _TIFF_DECODE_TAGS
            ]
    return left


# ---- shared ----------------------------------------------------------------------------------


def _pixels(data: bytes) -> list[bytes]:
    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(data)) as image:
        return [frame.tobytes() for frame in ImageSequence.Iterator(image)]


_STRIP = {"jpeg": _strip_jpeg, "png": _strip_png, "webp": _strip_webp, "tiff": _strip_tiff}
_VERIFY = {"jpeg": _verify_jpeg, "png": _verify_png, "webp": _verify_webp, "tiff": _verify_tiff}


def strip_metadata(src: Path, dst: Path) -> MetadataReport:
    """Write `dst`: `src` without metadata; DataError (and no `dst`) if that cannot be proven."""
    try:
        data = src.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{src}: file not found") from None
    except OSError as e:
        raise DataError(f"{src}: cannot read ({e.strerror})") from None
    kind = _kind(data)
    if kind is None:
        raise DataError(
            f"{src}: not a JPEG, PNG, WebP, TIFF, MP4 or MOV file; metadata stripping "
            "does not support it"
        )
    if kind == "mp4":
        return MetadataReport(files=[FileReport(src, dst, kind, strip_video(src, dst))])
    try:
        clean, removed = _STRIP[kind](data)
        left = _VERIFY[kind](clean)
        same = _pixels(clean) == _pixels(data)
    except (_Corrupt, struct.error, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{src}: corrupt or unsupported {kind.upper()} ({e})") from None
    if left:
        raise DataError(f"{src}: metadata still present after stripping: {', '.join(left)}")
    if not same:
        raise DataError(f"{src}: stripping changed the pixels; output not written")
    atomic_write_bytes(dst, clean)
    return MetadataReport(files=[FileReport(src, dst, kind, dict(removed))])


def strip_job(job: tuple[Path, Path]) -> MetadataReport:
    """One file (a task on a cluster worker)."""
    return strip_metadata(*job)


def strip_folder(src: Path, dst: Path, *, engine: Engine | None = None) -> MetadataReport:
    """Strip every supported file under `src` into the same layout under `dst`, one file per
    task on `engine` (this process by default).

    Files of other types are listed in `skipped` and not copied. Every supported file is
    tried; if some fail, DataError lists one line per failed file after the others are done.
    """
    from penumbra.compute.engine import LocalEngine
    from penumbra.compute.files import per_file

    if not src.is_dir():
        raise DataError(f"{src}: folder not found")
    src_real, dst_real = src.resolve(), dst.resolve()
    if dst_real == src_real or src_real in dst_real.parents:
        raise ConfigError(f"{dst}: output folder must not be inside the input folder")
    report, problems = MetadataReport(), list[str]()
    jobs = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        if path.suffix.lower() not in SUFFIXES:
            report.skipped.append(path)
            continue
        jobs.append((path, dst / path.relative_to(src)))
    for _, done, failed in per_file(engine or LocalEngine(), strip_job, jobs):
        if failed:
            problems += failed
        else:
            report.files += done.files
    if problems:
        raise DataError(*problems)
    return report
