from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penumbra.anonymize.detect import Box, detect_faces, second_detector
from penumbra.anonymize.face_jobs import anonymize_faces
from penumbra.anonymize.faces import FaceSettings, anonymize_image, mask_faces
from penumbra.anonymize.faces_cli import parse_size
from penumbra.cli import main
from penumbra.errors import ConfigError, DataError


def ellipse_mask(shape: tuple[int, ...], box: Box, scale: float) -> np.ndarray:
    """Pixels a generous ellipse around the grown box covers (1 px margin for rasterisation)."""
    g = box.scaled(scale)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    cx, cy = (g.x1 + g.x2) / 2, (g.y1 + g.y2) / 2
    rx, ry = g.width / 2 + 1, g.height / 2 + 1
    return bool_array(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1)


def bool_array(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=bool)


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


@pytest.mark.parametrize("mode", ["blur", "mosaic", "solid"])
def test_mask_changes_only_the_ellipse(astronaut: np.ndarray, mode: str) -> None:
    box = Box(180, 58, 270, 178, 0.9)
    out = mask_faces(astronaut, [box], mode, 1.3)  # type: ignore[arg-type]
    inside = ellipse_mask(astronaut.shape, box, 1.3)
    changed = np.any(out != astronaut, axis=-1)
    assert not np.any(changed & ~inside), "a pixel outside the mask changed"
    core = ellipse_mask(astronaut.shape, box, 0.8)  # well inside: must be altered
    assert changed[core].mean() > 0.9
    assert not np.shares_memory(out, astronaut)


def test_box_mode_fills_the_whole_box(astronaut: np.ndarray) -> None:
    out = mask_faces(astronaut, [Box(100, 100, 140, 160, 1)], "solid", 1.0, ellipse=False)
    assert np.all(out[100:160, 100:140] == 0)
    assert np.array_equal(out[:100], astronaut[:100])


def test_boxes_at_the_border_are_clipped(astronaut: np.ndarray) -> None:
    out = mask_faces(astronaut, [Box(-50, -40, 30, 20, 1), Box(600, 600, 700, 700, 1)], "blur")
    assert out.shape == astronaut.shape
    assert np.array_equal(out[200:], astronaut[200:])


@pytest.mark.parametrize("mode", ["blur", "mosaic", "solid"])
def test_astronaut_image_has_no_residual_face(
    tmp_path: Path, astronaut: np.ndarray, mode: str
) -> None:
    src = write_png(tmp_path / "astronaut.png", astronaut)
    report = anonymize_image(src, tmp_path / "out" / "a.png", FaceSettings(mode=mode))  # type: ignore[arg-type]
    assert report.faces == 1
    assert (report.residual.primary, report.residual.second) == (0, 0)
    out = np.asarray(Image.open(report.dst))
    # The written file agrees with the report: neither detector finds a face in it.
    assert detect_faces(out, 0.5) == [] and second_detector()(out, 0.9) == []
    box = detect_faces(astronaut, 0.2)[0]
    outside = ~ellipse_mask(astronaut.shape, box, 1.3)
    assert np.array_equal(out[outside], astronaut[outside])  # PNG: lossless


def test_no_face_image_is_left_as_it_was(tmp_path: Path, coffee: np.ndarray) -> None:
    src = write_png(tmp_path / "coffee.png", coffee)
    report = anonymize_image(src, tmp_path / "coffee-out.png", FaceSettings())
    assert report.faces == 0
    assert np.array_equal(np.asarray(Image.open(report.dst)), coffee)


def test_exif_gps_does_not_survive(tmp_path: Path, astronaut: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0)}  # GPS IFD
    src = tmp_path / "gps.jpg"
    Image.fromarray(astronaut).save(src, exif=exif, quality=95)
    assert b"SecretCam" in src.read_bytes()
    report = anonymize_image(src, tmp_path / "gps-out.jpg", FaceSettings())
    data = report.dst.read_bytes()
    assert b"SecretCam" not in data and b"Exif" not in data
    assert report.faces == 1


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError) as info:
        FaceSettings(mode="pixelate", threshold=1.5, mask_scale=0.5, hold=-1)  # type: ignore[arg-type]
    assert len(info.value.problems) == 4
    assert parse_size("640x360") == (640, 360)
    with pytest.raises(ConfigError, match="--scale"):
        parse_size("640")


def test_library_folder_run_mirrors_layout(tmp_path: Path, astronaut: np.ndarray) -> None:
    src = tmp_path / "in"
    write_png(src / "a" / "b" / "face.png", astronaut)
    write_png(src / "top.png", astronaut[:64, :64])
    (src / "readme.txt").write_text("not media")
    reports = anonymize_faces(src, tmp_path / "out", FaceSettings())
    assert sorted(r.dst.relative_to(tmp_path / "out").as_posix() for r in reports) == [
        "a/b/face.png",
        "top.png",
    ]


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main(["anonymize", "faces", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_image_reports_faces_and_residuals(
    tmp_path: Path, astronaut: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_png(tmp_path / "astronaut.png", astronaut)
    code, out, err = run(capsys, src, tmp_path / "out", "--mode", "solid", "--threshold", "0.3")
    assert code == 0, err
    assert "1 face(s) masked" in out and "CenterFace 0, MTCNN 0" in out and "images/s" in out
    assert (tmp_path / "out" / "astronaut.png").is_file()


def test_cli_errors_exit_2_with_one_line(
    tmp_path: Path, astronaut: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    write_png(folder / "x.png", astronaut[:64, :64])
    (tmp_path / "notes.txt").write_text("x")
    cases = {
        "not found": (tmp_path / "missing.png", tmp_path / "o.png"),
        "unsupported file type '.txt'": (tmp_path / "notes.txt", tmp_path / "o.png"),
        "inside the input folder": (folder, folder / "anon"),
        "overwrite the input": (folder / "x.png", folder / "x.png"),
        "output must be a image": (folder / "x.png", tmp_path / "x.mp4"),
    }
    for needle, (src, dst) in cases.items():
        code, _, err = run(capsys, src, dst)
        assert code == 2, needle
        lines = err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], err
    code, _, err = run(capsys, folder / "x.png", tmp_path / "o.png", "--mode", "swirl")
    assert code == 2 and "mode: must be one of" in err
    assert not (folder / "anon").exists() and not (tmp_path / "o.png").exists()


def test_cli_corrupt_image_leaves_no_output(
    tmp_path: Path, astronaut: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    write_png(folder / "good.png", astronaut)
    good = (folder / "good.png").read_bytes()
    (folder / "broken.png").write_bytes(good[: len(good) // 3])  # truncated mid-stream
    (folder / "garbage.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    code, _, err = run(capsys, folder, out)
    assert code == 2
    assert "broken.png" in err and "garbage.jpg" in err
    assert len(err.strip().splitlines()) == 2
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]  # no partial, no temp file
    code, _, err = run(capsys, folder / "garbage.jpg", tmp_path / "single.jpg")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "single.jpg").exists()


def test_upscaled_lfw_faces_are_masked(
    tmp_path: Path, lfw: tuple[list[np.ndarray], list[np.ndarray]]
) -> None:
    faces, _ = lfw
    settings = FaceSettings(mode="blur")
    for k, face in enumerate(faces[:3]):
        src = write_png(tmp_path / f"lfw{k}.png", face)
        report = anonymize_image(src, tmp_path / f"lfw{k}-out.png", settings)
        assert report.faces >= 1
        assert (report.residual.primary, report.residual.second) == (0, 0)
        assert not np.array_equal(np.asarray(Image.open(report.dst)), face)


def test_single_file_into_folder(tmp_path: Path, astronaut: np.ndarray) -> None:
    src = write_png(tmp_path / "a.png", astronaut[:64, :64])
    (tmp_path / "dest").mkdir()
    (report,) = anonymize_faces(src, tmp_path / "dest", FaceSettings())
    assert report.dst == tmp_path / "dest" / "a.png"
    with pytest.raises(DataError, match="not found"):
        anonymize_faces(tmp_path / "nope", tmp_path / "dest", FaceSettings())
