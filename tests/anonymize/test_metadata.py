"""Metadata stripping: planted EXIF, GPS, IPTC, XMP, ICC, comments and text gone; pixels equal."""

from __future__ import annotations

import io
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from penumbra.anonymize.metadata import strip_folder, strip_metadata
from penumbra.cli import main
from penumbra.errors import DataError

SECRETS = [b"SecretMake", b"SecretModel", b"SecretArtist", b"SECRET-IPTC", b"SECRET-XMP",
           b"SECRET-COMMENT", b"SECRET-TEXT", b"SECRET-ZTEXT", b"SECRET-TRAILER", b"SECRET-DESC",
           b"SECRET-SOFTWARE", b"ICC_PROFILE", b"iCCP", b"ICCP", b"tIME", b"eXIf"]  # fmt: skip


def _pixels() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))


def _exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "SecretMake"
    exif[0x0110] = "SecretModel"
    exif[0x013B] = "SecretArtist"
    exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 29.0), "E", (2.0, 17.0, 40.0)
    return exif


def _icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _scan(data: bytes) -> bytes:
    """Entropy-coded data from the first SOS through EOI."""
    start = data.index(b"\xff\xda")
    return data[start : data.rindex(b"\xff\xd9") + 2]


@pytest.fixture()
def jpeg(tmp_path: Path) -> Path:
    buffer = io.BytesIO()
    _pixels().save(buffer, "JPEG", quality=90, exif=_exif(), icc_profile=_icc())
    data = buffer.getvalue()
    iptc = (
        b"Photoshop 3.0\x008BIM\x04\x04\x00\x00"
        + struct.pack(">I", 16)
        + b"\x1c\x02\x78\x00\x0bSECRET-IPTC"
    )
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>SECRET-XMP</x:xmpmeta>"
    extra = _segment(0xED, iptc) + _segment(0xE1, xmp) + _segment(0xFE, b"SECRET-COMMENT")
    data = data[:2] + extra + data[2:] + b"SECRET-TRAILER"
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    return path


def _assert_clean(data: bytes, before: bytes) -> None:
    planted = [s for s in SECRETS if s in before]
    assert planted, "the fixture planted nothing"
    assert [s for s in planted if s in data] == []


def test_jpeg_is_clean_with_byte_identical_scan(jpeg: Path, tmp_path: Path) -> None:
    before = jpeg.read_bytes()
    out = tmp_path / "out" / "photo.jpg"
    report = strip_metadata(jpeg, out)
    data = out.read_bytes()
    _assert_clean(data, before)
    assert _scan(data) == _scan(before[: before.rindex(b"\xff\xd9") + 2])
    removed = report.files[0].removed
    for name in ("EXIF (APP1)", "XMP (APP1)", "IPTC/Photoshop IRB (APP13)", "JPEG COM",
                 "ICC profile (APP2)", "data after end of image"):  # fmt: skip
        assert removed.get(name, 0) >= 1, (name, removed)
    with Image.open(out) as a, Image.open(jpeg) as b:
        assert a.tobytes() == b.tobytes()
        exif = a.getexif()
        assert dict(exif) == {0x0112: 6}  # orientation survives, nothing else
        assert not exif.get_ifd(0x8825) and "icc_profile" not in a.info
    with Image.open(jpeg) as b:
        assert b.getexif().get_ifd(0x8825)  # the GPS really was planted


def test_png_text_exif_icc_time_removed(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("Comment", "SECRET-TEXT")
    info.add_text("Author", "SECRET-ZTEXT", zip=True)
    info.add_itxt("XML:com.adobe.xmp", "<x>SECRET-XMP</x>")
    buffer = io.BytesIO()
    _pixels().save(buffer, "PNG", pnginfo=info, exif=_exif(), icc_profile=_icc())
    data = buffer.getvalue()
    iend = data.rindex(b"IEND") - 4
    data = data[:iend] + _chunk(b"tIME", bytes(7)) + data[iend:]
    src, out = tmp_path / "a.png", tmp_path / "b.png"
    src.write_bytes(data)
    removed = strip_metadata(src, out).files[0].removed
    _assert_clean(out.read_bytes(), data)
    assert removed["XMP (PNG iTXt)"] == 1 and removed["PNG tIME"] == 1
    assert removed["PNG eXIf"] == 1 and removed["ICC profile (iCCP)"] == 1
    with Image.open(out) as a, Image.open(src) as b:
        assert a.tobytes() == b.tobytes()


def test_webp_chunks_and_flags_removed(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _pixels().save(
        buffer, "WEBP", lossless=True, exif=_exif(), xmp=b"<x>SECRET-XMP</x>", icc_profile=_icc()
    )
    src, out = tmp_path / "a.webp", tmp_path / "b.webp"
    src.write_bytes(buffer.getvalue())
    removed = strip_metadata(src, out).files[0].removed
    data = out.read_bytes()
    _assert_clean(data, src.read_bytes())
    assert {"EXIF (WebP)", "XMP (WebP)", "ICC profile (WebP)"} <= set(removed)
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    with Image.open(out) as a, Image.open(src) as b:
        assert a.tobytes() == b.tobytes() and "exif" not in a.info


def test_tiff_keeps_only_decoding_tags(tmp_path: Path) -> None:
    src, out = tmp_path / "a.tif", tmp_path / "b.tif"
    tags = {270: "SECRET-DESC", 271: "SecretMake", 315: "SecretArtist", 305: "SECRET-SOFTWARE",
            700: b"<x>SECRET-XMP</x>", 33723: b"SECRET-IPTC"}  # fmt: skip
    _pixels().save(src, "TIFF", tiffinfo=tags, compression="tiff_lzw")
    removed = strip_metadata(src, out).files[0].removed
    _assert_clean(out.read_bytes(), src.read_bytes())
    assert "TIFF ImageDescription" in removed and "TIFF Make" in removed
    with Image.open(out) as a, Image.open(src) as b:
        assert a.tobytes() == b.tobytes()


def _ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _frames(exe: str, path: Path) -> bytes:
    cmd = [exe, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    return subprocess.run(cmd, capture_output=True, check=True).stdout


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_video_container_metadata_removed(tmp_path: Path, suffix: str) -> None:
    exe = _ffmpeg()
    src, out = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    subprocess.run(
        [exe, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-f", "lavfi",
         "-i", "sine=frequency=440:sample_rate=8000", "-t", "0.5", "-c:v", "libx264",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-metadata", "location=+48.8577+002.2950/",
         "-metadata", "title=SECRET-TITLE", "-metadata", "comment=SECRET-COMMENT", str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    before = src.read_bytes()
    planted = [b"SECRET-TITLE", b"SECRET-COMMENT", b"+48.8577", b"Lavf", b"x264 - core"]
    assert all(s in before for s in planted[:2])
    removed = strip_metadata(src, out).files[0].removed
    data = out.read_bytes()
    assert [s for s in planted if s in data] == []
    assert any("udta" in name or "meta" in name for name in removed), removed
    assert _frames(exe, out) == _frames(exe, src)


def test_corrupt_and_unsupported_files_leave_no_output(tmp_path: Path) -> None:
    bad, out = tmp_path / "bad.jpg", tmp_path / "out.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(DataError, match=r"bad\.jpg: corrupt"):
        strip_metadata(bad, out)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match="notes.txt: not a JPEG"):
        strip_metadata(text, tmp_path / "notes.out")
    assert not out.exists() and not (tmp_path / "notes.out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jpg", "notes.txt"]


def test_folder_mirrors_layout_and_reports_failures(jpeg: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "p.jpg").write_bytes(jpeg.read_bytes())
    _pixels().save(src / "q.png")
    (src / "readme.txt").write_text("x")
    report = strip_folder(src, dst)
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()) == [
        "q.png", "sub/p.jpg",
    ]  # fmt: skip
    assert [p.name for p in report.skipped] == ["readme.txt"]
    assert report.totals()["JPEG COM"] == 1
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    with pytest.raises(DataError, match="broken.png"):
        strip_folder(src, tmp_path / "out2")
    assert (tmp_path / "out2" / "q.png").exists() and not (
        tmp_path / "out2" / "sub" / "broken.png"
    ).exists()


def test_cli(jpeg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clean.jpg"
    assert main(["anonymize", "metadata", str(jpeg), str(out)]) == 0
    assert b"SECRET-COMMENT" not in out.read_bytes()
    assert "JPEG COM" in capsys.readouterr().out
    missing = tmp_path / "missing.jpg"
    assert main(["anonymize", "metadata", str(missing), str(tmp_path / "x.jpg")]) == 2
    err = capsys.readouterr().err
    assert "missing.jpg" in err and len(err.strip().splitlines()) == 1
