"""Reading image folders as users actually have them."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penumbra.data import (
    ReadReport,
    find_identical_copies,
    images,
    iter_images,
    list_image_files,
    read_image,
    scan_image_files,
)
from penumbra.errors import DataError


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (a decompression bomb, without the RAM)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_corrupt_and_truncated_files_are_skipped_and_counted(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "good.png")
    (tmp_path / "corrupt.jpg").write_bytes(os.urandom(512))
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(full)
    (tmp_path / "truncated.png").write_bytes(full.read_bytes()[:-200])
    full.unlink()
    report = ReadReport()
    records = list(iter_images(tmp_path, report=report))
    assert [r.relpath for r in records] == ["good.png"]
    assert report.read == 1
    assert sorted(name for name, _ in report.skipped) == ["corrupt.jpg", "truncated.png"]
    assert all(name in reason for name, reason in report.skipped)
    assert report.summary() == "1 image(s) read, 2 skipped as unreadable"


def test_fail_mode_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "a-corrupt.jpg").write_bytes(b"not an image")
    Image.new("RGB", (4, 4)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="a-corrupt.jpg"):
        list(iter_images(tmp_path, on_error="fail"))


def test_tiny_and_huge_images(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "one.png")
    _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    assert read_image(tmp_path / "one.png").getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(DataError, match=r"bomb.png: .*decompression-bomb guard"):
        read_image(tmp_path / "bomb.png")
    report = ReadReport()
    assert [r.relpath for r in iter_images(tmp_path, report=report)] == ["one.png"]
    assert report.skipped[0][0] == "bomb.png"


def test_pixel_limit_is_configurable(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="exceeds the 5,000-pixel limit"):
        read_image(tmp_path / "a.png", max_pixels=5000)


def test_cmyk_16bit_alpha_and_palette_become_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "sixteen.png")
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "sixteen-mid.png")
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.save(tmp_path / "alpha.png")
    Image.new("LA", (4, 4), (0, 0)).save(tmp_path / "la.png")
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 255, 0] * 256)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png", transparency=0)

    images = {r.relpath: r.image for r in iter_images(tmp_path, on_error="fail")}
    assert all(im.mode == "RGB" for im in images.values())
    red = images["cmyk.jpg"].getpixel((1, 1))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert images["sixteen.png"].getpixel((0, 0)) == (255, 255, 255)  # scaled, not clipped
    assert images["sixteen-mid.png"].getpixel((0, 0)) == (128, 128, 128)
    assert images["alpha.png"].getpixel((0, 0)) == (0, 0, 255)
    assert images["alpha.png"].getpixel((2, 2)) == (255, 255, 255)  # transparent -> white
    assert images["la.png"].getpixel((1, 1)) == (255, 255, 255)
    assert images["palette.png"].getpixel((1, 1)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").size == (20, 40)


def test_unicode_names_and_nested_folders(tmp_path: Path) -> None:
    (tmp_path / "ünïcødé" / "日本").mkdir(parents=True)
    Image.new("RGB", (3, 3)).save(tmp_path / "ünïcødé" / "日本" / "café ☕.webp")
    Image.new("RGB", (3, 3)).save(tmp_path / "B.BMP")
    Image.new("RGB", (3, 3)).save(tmp_path / "c.tiff")
    (tmp_path / "notes.txt").write_text("not an image")
    records = list(iter_images(tmp_path, on_error="fail"))
    assert [r.relpath for r in records] == ["B.BMP", "c.tiff", "ünïcødé/日本/café ☕.webp"]


def test_symlink_loop_terminates(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (2, 2)).save(tmp_path / "sub" / "x.png")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    files = list_image_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["sub/x.png"]


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images found"):
        list_image_files(tmp_path)
    assert list_image_files(tmp_path, allow_empty=True) == []
    with pytest.raises(DataError, match="does not exist"):
        list(iter_images(tmp_path / "missing"))
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DataError, match="is not a folder"):
        list_image_files(tmp_path / "file.png")


def test_reading_streams_one_image_at_a_time(tmp_path: Path) -> None:
    for i in range(3):
        Image.new("RGB", (2, 2)).save(tmp_path / f"{i}.png")
    report = ReadReport()
    stream = iter_images(tmp_path, report=report)
    next(stream)
    assert report.read == 1  # nothing beyond the first image has been decoded yet
    assert len(list(stream)) == 2 and report.read == 3


def _photo(path: Path, seed: int) -> None:
    """A small PNG whose pixels (and so bytes) differ by seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (6, 6, 3), np.uint8)
    Image.fromarray(pixels).save(path)


def _rel(root: Path, files: list[Path]) -> list[str]:
    return [p.relative_to(root).as_posix() for p in files]


def test_a_symlink_and_a_hard_link_to_one_image_list_it_once(tmp_path: Path) -> None:
    _photo(tmp_path / "a" / "x.png", 0)
    _photo(tmp_path / "a" / "y.png", 1)
    (tmp_path / "b").mkdir()
    os.symlink(tmp_path / "a" / "x.png", tmp_path / "b" / "soft.png")
    os.link(tmp_path / "a" / "y.png", tmp_path / "b" / "hard.png")
    assert _rel(tmp_path, list_image_files(tmp_path)) == ["a/x.png", "a/y.png"]
    listing = scan_image_files(tmp_path)
    assert {_rel(tmp_path, [k])[0]: _rel(tmp_path, v) for k, v in listing.aliases.items()} == {
        "a/x.png": ["b/soft.png"],
        "a/y.png": ["b/hard.png"],
    }
    assert len(list(iter_images(tmp_path))) == 2


def test_twelve_images_and_two_links_are_twelve_files(tmp_path: Path) -> None:
    for i in range(12):
        _photo(tmp_path / f"{i:02d}.png", i)
    os.symlink(tmp_path / "03.png", tmp_path / "zz-soft.png")
    os.link(tmp_path / "07.png", tmp_path / "zz-hard.png")
    assert _rel(tmp_path, list_image_files(tmp_path)) == [f"{i:02d}.png" for i in range(12)]


def test_the_first_path_in_sorted_order_is_kept(tmp_path: Path) -> None:
    _photo(tmp_path / "m" / "x.png", 0)
    os.link(tmp_path / "m" / "x.png", tmp_path / "b.png")  # sorts first: kept
    os.symlink(tmp_path / "m" / "x.png", tmp_path / "z.png")
    listing = scan_image_files(tmp_path)
    assert _rel(tmp_path, listing.files) == ["b.png"]
    assert _rel(tmp_path, listing.aliases[tmp_path / "b.png"]) == ["m/x.png", "z.png"]


def test_a_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "private", tmp_path / "elsewhere"
    _photo(root / "a.png", 0)
    _photo(outside / "b.png", 1)
    os.symlink(outside / "b.png", root / "b.png")
    with pytest.raises(DataError) as caught:
        list_image_files(root)
    (line,) = caught.value.problems
    assert "\n" not in line
    assert str(root / "b.png") in line and str(outside.resolve() / "b.png") in line
    assert "outside the private folder" in line


def test_a_symlinked_folder_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "private", tmp_path / "elsewhere"
    _photo(root / "a.png", 0)
    _photo(outside / "b.png", 1)
    os.symlink(outside, root / "more")
    with pytest.raises(DataError, match=r"more: a symlink to .*elsewhere, outside") as caught:
        list_image_files(root)
    assert len(caught.value.problems) == 1 and "\n" not in caught.value.problems[0]


def test_a_root_that_is_a_symlink_is_fine(tmp_path: Path) -> None:
    _photo(tmp_path / "real" / "a.png", 0)
    os.symlink(tmp_path / "real" / "a.png", tmp_path / "real" / "b.png")
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert _rel(tmp_path / "link", list_image_files(tmp_path / "link")) == ["a.png"]


def test_a_symlinked_folder_inside_the_root_does_not_duplicate(tmp_path: Path) -> None:
    _photo(tmp_path / "a" / "x.png", 0)
    _photo(tmp_path / "a" / "sub" / "y.png", 1)
    os.symlink(tmp_path / "a", tmp_path / "b")  # walked after a
    os.symlink(tmp_path / "a", tmp_path / "0-first")  # walked before a
    listing = scan_image_files(tmp_path)
    assert _rel(tmp_path, listing.files) == ["0-first/sub/y.png", "0-first/x.png"]
    assert _rel(tmp_path, listing.aliases[tmp_path / "0-first" / "x.png"]) == ["a/x.png", "b/x.png"]


def test_identical_copies_are_found_and_only_they(tmp_path: Path) -> None:
    _photo(tmp_path / "a.png", 0)
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "b.png").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, not a copy
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a-copy.png").write_bytes(data)
    (tmp_path / "d.png").write_bytes(data)
    os.link(tmp_path / "b.png", tmp_path / "hard.png")  # a link is the same file, no copy
    Image.new("RGB", (30, 30), "white").save(tmp_path / "unique.png")
    files = [*list_image_files(tmp_path), tmp_path / "hard.png"]
    assert find_identical_copies(files) == [
        [tmp_path / "a.png", tmp_path / "c" / "a-copy.png", tmp_path / "d.png"]
    ]


def test_a_file_of_unique_size_is_never_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _photo(tmp_path / "a.png", 0)
    Image.new("RGB", (30, 30), "white").save(tmp_path / "b.png")
    hashed: list[Path] = []

    def spy(path: Path) -> bytes:
        hashed.append(path)
        return b""

    monkeypatch.setattr(images, "_digest", spy)
    assert find_identical_copies(list_image_files(tmp_path)) == []
    assert hashed == []


def test_a_symlink_farm_is_refused_not_walked_forever(tmp_path: Path) -> None:
    """Second review: folders each holding two links to the one below took exponential time
    (16 levels: 44 s for one image). Past 64 paths to one folder the listing refuses."""
    from penumbra.data.images import MAX_PATHS_TO_A_FOLDER

    root = tmp_path / "private"
    bottom = root / "level-00"
    bottom.mkdir(parents=True)
    Image.new("RGB", (4, 4), "white").save(bottom / "a.png")
    for level in range(1, 12):
        folder = root / f"level-{level:02d}"
        folder.mkdir()
        for name in ("left", "right"):
            (folder / name).symlink_to(root / f"level-{level - 1:02d}")
    assert MAX_PATHS_TO_A_FOLDER == 64
    with pytest.raises(DataError, match="paths under .* reach this folder through symlinks"):
        scan_image_files(root)
