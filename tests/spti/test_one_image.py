"""One image is one file, counted once and in one class only (DESIGN.md invariant 11): links
to an image in a second class folder must not be counted, embedded or labelled twice."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penumbra.cli import main
from penumbra.config import RunConfig
from penumbra.errors import DataError
from penumbra.spti.labelled import read_private_labels


def _photo(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), np.uint8)
    Image.fromarray(pixels).save(path)


def _set(root: Path, *, into: str) -> Path:
    """The attack review's set: 2 classes x 12 images, plus 2 symlinks and 1 hard link of
    class-0 images into the folder `into`."""
    for c in range(2):
        for i in range(12):
            _photo(root / f"class{c}" / f"{i:02d}.png", 12 * c + i)
    os.symlink(root / "class0" / "00.png", root / into / "link-a.png")
    os.symlink(root / "class0" / "01.png", root / into / "link-b.png")
    os.link(root / "class0" / "02.png", root / into / "link-c.png")
    return root


def _labelled() -> RunConfig:
    cfg = RunConfig()
    cfg.data.labels = "folders"
    return cfg


def test_links_into_a_second_class_are_refused_before_any_count(tmp_path: Path) -> None:
    root = _set(tmp_path / "private", into="class1")
    with pytest.raises(DataError) as caught:
        read_private_labels(_labelled(), root)
    (line,) = caught.value.problems
    assert "class0/00.png (class 'class0') and class1/link-a.png (class 'class1')" in line
    assert "one image is counted once and in one class only; remove one of the paths" in line


def test_links_within_one_class_count_once(tmp_path: Path) -> None:
    root = _set(tmp_path / "private", into="class0")
    labels = read_private_labels(_labelled(), root)
    assert labels.counts() == [12, 12]
    assert not any("link" in rel for rel in labels.relpaths)


def test_the_cli_refuses_in_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _set(tmp_path / "private", into="class1")
    code = main(["synthesize", "--private", str(root), "--epsilon", "8",
                 "--out", str(tmp_path / "out"), "--labels", "folders"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "class1/link-a.png" in err and "in one class only" in err
    assert not (tmp_path / "out" / "ledger").exists()


def test_unlabelled_links_are_embedded_once(tmp_path: Path) -> None:
    """In an unlabelled run the two paths of one file would shift its nearest bin by 2."""
    from penumbra.models import load
    from penumbra.spti.private_embeddings import embed_private_images

    root = _set(tmp_path / "images", into="class1")
    embedder = load("builtin:effnet-lite0", role="image-embedder")
    embeddings, report = embed_private_images(
        root, tmp_path / "run", voting="image", image_embedder=embedder,  # type: ignore[arg-type]
        captioner=None, text_embedder=None, max_pixels=10**6,  # type: ignore[arg-type]
    )  # fmt: skip
    assert len(embeddings) == 24 and report.read == 24


def test_identical_copies_are_warned_about_inside_private(tmp_path: Path) -> None:
    """Byte-identical files at two paths are two images to penumbra: the holder is told, and
    the paths (which can name people) are written under private/ only."""
    from io import StringIO

    from rich.console import Console

    from penumbra.spti.pipeline import _warn_identical_copies

    root = tmp_path / "images"
    for i in range(4):
        _photo(root / f"{i}.png", i)
    (root / "copy-of-1.png").write_bytes((root / "1.png").read_bytes())
    out = tmp_path / "run"
    (out / "private").mkdir(parents=True)
    text = StringIO()
    _warn_identical_copies(out, root, Console(file=text, width=400))
    assert "warning: 1 private file(s) are byte-identical copies" in text.getvalue()
    listed = (out / "private" / "identical-copies.txt").read_text().split()
    assert sorted(Path(p).name for p in listed) == ["1.png", "copy-of-1.png"]
    assert "copy-of-1" not in text.getvalue()
    (root / "copy-of-1.png").unlink()
    quiet = StringIO()
    _warn_identical_copies(tmp_path / "run2", root, Console(file=quiet))
    assert quiet.getvalue() == ""
