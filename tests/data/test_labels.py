"""Reading class labels: class subfolders or metadata.jsonl, public class lists, bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from penumbra.data.images import list_image_files
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
