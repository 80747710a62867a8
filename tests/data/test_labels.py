"""Reading class labels: class subfolders or metadata.jsonl, public class lists, bad rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penumbra.data.images import list_image_files, scan_image_files
from penumbra.data.labels import detect_label_source, read_labels
from penumbra.errors import DataError


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), "white").save(path)


def _metadata(root: Path, rows: list[dict[str, object]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_class_subfolders_are_sorted_class_names(tmp_path: Path) -> None:
    for rel in ("zebra/a.png", "ant/b.png", "ant/c.png", "moth/sub/d.png"):
        _png(tmp_path / rel)
    labels = read_labels(tmp_path, list_image_files(tmp_path), "folders")
    assert labels.classes == ["ant", "moth", "zebra"]
    assert labels.labels == [0, 0, 1, 2]  # files sorted: ant/b, ant/c, moth/sub/d, zebra/a
    assert labels.counts() == [2, 1, 1]
    assert detect_label_source(tmp_path) == "folders"


def test_a_file_outside_any_class_folder_is_named(tmp_path: Path) -> None:
    _png(tmp_path / "ant" / "a.png")
    _png(tmp_path / "loose.png")
    with pytest.raises(DataError, match=r"loose\.png: not in a class subfolder"):
        read_labels(tmp_path, list_image_files(tmp_path), "folders")


def test_integer_labels_keep_their_numbers_and_class_names(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        _png(tmp_path / name)
    _metadata(tmp_path, [
        {"file_name": "a.png", "label": 2, "class_name": "bag"},
        {"file_name": "b.png", "label": 0, "class_name": "shirt"},
        {"file_name": "c.png", "label": 2, "class_name": "bag"},
    ])  # fmt: skip
    labels = read_labels(tmp_path, list_image_files(tmp_path), "metadata")
    assert labels.classes == ["shirt", "1", "bag"]  # label 1 has no image and no name
    assert labels.labels == [2, 0, 2]
    assert detect_label_source(tmp_path) == "metadata"
    public = read_labels(tmp_path, list_image_files(tmp_path), "metadata", ["s", "t", "b"])
    assert public.classes == ["s", "t", "b"] and public.labels == [2, 0, 2]


def test_string_labels_and_a_public_class_list(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        _png(tmp_path / name)
    _metadata(tmp_path, [{"file_name": "a.png", "label": "cat"},
                         {"file_name": "b.png", "label": "ant"}])  # fmt: skip
    files = list_image_files(tmp_path)
    assert read_labels(tmp_path, files, "metadata").classes == ["ant", "cat"]
    given = read_labels(tmp_path, files, "metadata", ["cat", "dog", "ant"])
    assert given.labels == [0, 2]
    with pytest.raises(DataError, match="class 'cat' .* is not in data.classes"):
        read_labels(tmp_path, files, "metadata", ["ant", "dog"])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"file_name": "a.png", "label": 0}], r"no row for b\.png"),
        ([{"file_name": "a.png"}, {"file_name": "b.png", "label": 1}], r":1: label must be"),
        ([{"file_name": "a.png", "label": True}, {"file_name": "b.png", "label": 1}], "label"),
        ([{"file_name": "a.png", "label": -1}, {"file_name": "b.png", "label": 1}], "negative"),
        ([{"file_name": "a.png", "label": 0}, {"file_name": "b.png", "label": "x"}], "mix"),
        ([{"file_name": "a.png", "label": 0, "class_name": "u"},
          {"file_name": "b.png", "label": 0, "class_name": "v"}], "one name per class"),
        ([{"label": 0}], "needs a file_name"),
    ],
)  # fmt: skip
def test_bad_metadata_rows_are_named(
    tmp_path: Path, rows: list[dict[str, object]], message: str
) -> None:
    for name in ("a.png", "b.png"):
        _png(tmp_path / name)
    _metadata(tmp_path, rows)
    with pytest.raises(DataError, match=message) as caught:
        read_labels(tmp_path, list_image_files(tmp_path), "metadata")
    assert "metadata.jsonl" in str(caught.value)


def test_metadata_labels_need_the_file(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    with pytest.raises(DataError, match=r"metadata\.jsonl: missing; --labels metadata needs"):
        read_labels(tmp_path, list_image_files(tmp_path), "metadata")


def _photo(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (6, 6, 3), np.uint8)
    Image.fromarray(pixels).save(path)


def _two_classes(root: Path) -> None:
    """24 images, 12 per class folder, each its own file."""
    for c in range(2):
        for i in range(12):
            _photo(root / f"class{c}" / f"{i:02d}.png", 12 * c + i)


def test_an_image_linked_into_a_second_class_is_refused(tmp_path: Path) -> None:
    _two_classes(tmp_path)
    os.symlink(tmp_path / "class0" / "00.png", tmp_path / "class1" / "s1.png")
    os.symlink(tmp_path / "class0" / "01.png", tmp_path / "class1" / "s2.png")
    os.link(tmp_path / "class0" / "02.png", tmp_path / "class1" / "h1.png")
    assert len(list_image_files(tmp_path)) == 24
    with pytest.raises(DataError, match="one image is counted once and in one class only") as e:
        read_labels(tmp_path, list_image_files(tmp_path), "folders")
    (line,) = e.value.problems
    assert "\n" not in line
    assert "class0/00.png (class 'class0') and class1/s1.png (class 'class1')" in line


def test_the_hard_link_alone_is_refused_too(tmp_path: Path) -> None:
    _two_classes(tmp_path)
    os.link(tmp_path / "class0" / "02.png", tmp_path / "class1" / "h1.png")
    listing = scan_image_files(tmp_path)
    with pytest.raises(DataError, match=r"class0/02\.png .* and class1/h1\.png .*remove one"):
        read_labels(tmp_path, listing.files, "folders", aliases=listing.aliases)


def test_a_folder_linked_into_a_second_class_is_refused(tmp_path: Path) -> None:
    _two_classes(tmp_path)
    os.symlink(tmp_path / "class1", tmp_path / "class0" / "more")
    with pytest.raises(DataError, match=r"class0/more/00\.png \(class 'class0'\) and class1/00"):
        read_labels(tmp_path, list_image_files(tmp_path), "folders")


def test_links_within_one_class_count_once(tmp_path: Path) -> None:
    _two_classes(tmp_path)
    os.symlink(tmp_path / "class0" / "00.png", tmp_path / "class0" / "s1.png")
    os.symlink(tmp_path / "class0" / "01.png", tmp_path / "class0" / "s2.png")
    os.link(tmp_path / "class0" / "02.png", tmp_path / "class0" / "h1.png")
    labels = read_labels(tmp_path, list_image_files(tmp_path), "folders")
    assert len(labels.labels) == 24 and labels.counts() == [12, 12]
    assert len(set(labels.relpaths)) == 24


def test_metadata_rows_of_one_file_must_agree(tmp_path: Path) -> None:
    _photo(tmp_path / "a.png", 0)
    _photo(tmp_path / "b.png", 1)
    os.link(tmp_path / "a.png", tmp_path / "c.png")
    rows: list[dict[str, object]] = [
        {"file_name": "a.png", "label": "cat"},
        {"file_name": "b.png", "label": "dog"},
    ]
    _metadata(tmp_path, [*rows, {"file_name": "c.png", "label": "cat"}])
    assert read_labels(tmp_path, list_image_files(tmp_path), "metadata").counts() == [1, 1]
    _metadata(tmp_path, [*rows, {"file_name": "c.png", "label": "dog"}])
    with pytest.raises(DataError, match=r"a\.png \(class 'cat'\) and c\.png \(class 'dog'\)"):
        read_labels(tmp_path, list_image_files(tmp_path), "metadata")


def test_a_link_listed_twice_is_refused(tmp_path: Path) -> None:
    _photo(tmp_path / "ant" / "a.png", 0)
    os.link(tmp_path / "ant" / "a.png", tmp_path / "ant" / "b.png")
    files = [tmp_path / "ant" / "a.png", tmp_path / "ant" / "b.png"]
    with pytest.raises(DataError, match=r"ant/a\.png and ant/b\.png are one file"):
        read_labels(tmp_path, files, "folders")


def test_one_file_name_on_two_rows_with_two_labels_is_refused(tmp_path: Path) -> None:
    """Second review: the last of two rows for one file won silently (counts [11, 13])."""
    _photo(tmp_path / "a.png", 0)
    _photo(tmp_path / "b.png", 1)
    rows: list[dict[str, object]] = [
        {"file_name": "a.png", "label": "cat"},
        {"file_name": "b.png", "label": "dog"},
        {"file_name": "./a.png", "label": "dog"},
    ]
    _metadata(tmp_path, rows)
    with pytest.raises(DataError, match=r"metadata.jsonl:3: ./a\.png is labelled 'dog' here"):
        read_labels(tmp_path, list_image_files(tmp_path), "metadata")
    _metadata(tmp_path, [*rows[:2], {"file_name": "./a.png", "label": "cat"}])  # agrees: fine
    assert read_labels(tmp_path, list_image_files(tmp_path), "metadata").counts() == [1, 1]
