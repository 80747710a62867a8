"""builtin:pixels and builtin:composite: image embeddings made of standardised, weighted parts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from penumbra.errors import ModelError
from penumbra.models import load
from penumbra.models.protocols import ImageEmbedder


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).convert("RGB")
            for _ in range(5)]  # fmt: skip


def test_pixels_are_box_means_scaled_by_the_grid() -> None:
    pixels = load("builtin:pixels", grid=4)
    assert isinstance(pixels, ImageEmbedder)
    white, black = Image.new("RGB", (28, 28), "white"), Image.new("RGB", (28, 28), "black")
    x = pixels.embed([white, black])
    assert x.shape == (2, 16)
    np.testing.assert_allclose(x[0], 1 / 4, rtol=1e-6)  # length exactly 1 for all-white
    np.testing.assert_allclose(x[1], 0.0)
    half = np.zeros((28, 28), np.uint8)
    half[:, 14:] = 255  # right half white: right two columns of cells are 1/G
    row = pixels.embed([Image.fromarray(half)])[0].reshape(4, 4)
    np.testing.assert_allclose(row[:, :2], 0.0)
    np.testing.assert_allclose(row[:, 2:], 0.25, rtol=1e-6)
    assert load("builtin:pixels", grid=8).fingerprint != pixels.fingerprint
    with pytest.raises(ModelError, match="grid"):
        load("builtin:pixels", grid=0)


def test_composite_is_the_parts_standardised_and_weighted() -> None:
    parts = [
        {"uri": "builtin:effnet-lite0", "weight": 1.0},
        {"uri": "builtin:pixels", "weight": 2.0, "options": {"grid": 8}, "normalise": False},
    ]
    composite = load("builtin:composite", parts=parts)
    assert isinstance(composite, ImageEmbedder)
    images = _images()
    x = composite.embed(images)
    deep = load("builtin:effnet-lite0").embed(images)  # type: ignore[attr-defined]
    grey = load("builtin:pixels", grid=8).embed(images)  # type: ignore[attr-defined]
    assert x.shape == (5, 1280 + 64)
    np.testing.assert_allclose(np.linalg.norm(x[:, :1280], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(x[:, 1280:], 2.0 * grey, rtol=1e-6)
    # squared distances are the weighted sum of the parts' (standardised) squared distances
    unit = deep / np.linalg.norm(deep, axis=1, keepdims=True)
    d = ((x[0] - x[1]) ** 2).sum()
    expect = ((unit[0] - unit[1]) ** 2).sum() + 4.0 * ((grey[0] - grey[1]) ** 2).sum()
    assert d == pytest.approx(expect, rel=1e-4)
    heavier = load("builtin:composite", parts=[parts[0], {**parts[1], "weight": 3.0}])
    assert heavier.fingerprint != composite.fingerprint  # cached embeddings never mix


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (None, "non-empty list"),
        ([], "non-empty list"),
        (["builtin:pixels"], r"parts\[0\] must be a mapping"),
        ([{"uri": "openai:clip@https://example.com/v1"}], r"parts\[0\]\.uri .*openai"),
        ([{"uri": "hf:some/repo"}], r"parts\[0\]\.uri must be a builtin:"),
        ([{"uri": "builtin:composite"}], "cannot contain a composite"),
        ([{"uri": "builtin:pixels", "weight": 0}], r"parts\[0\]\.weight"),
        ([{"uri": "builtin:pixels", "weight": float("nan")}], r"weight"),
        ([{"uri": "builtin:pixels", "weight": True}], r"weight"),
        ([{"uri": "builtin:pixels", "normalise": "yes"}], "normalise"),
        ([{"uri": "builtin:pixels", "scale": 2}], "unknown keys"),
        ([{"uri": "builtin:pixels", "options": {"grid": 0}}], "grid"),
        ([{"uri": "builtin:smollm2-135m"}], "not a image-embedder|text-generator"),
    ],
)
def test_bad_parts_are_refused_by_name(parts: object, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load("builtin:composite", parts=parts)


def test_composite_takes_only_parts() -> None:
    with pytest.raises(ModelError, match="unknown options"):
        load("builtin:composite", parts=[{"uri": "builtin:pixels"}], grid=8)


def test_effnet_tone_grid_is_the_composite_of_effnet_and_pixels() -> None:
    """The demo's `tone_grid` option and the named composite are one embedding space."""
    images = _images()
    toned = load("builtin:effnet-lite0", tone_grid=8, tone_weight=2.0).embed(images)  # type: ignore[attr-defined]
    parts = [{"uri": "builtin:effnet-lite0"},
             {"uri": "builtin:pixels", "weight": 2.0, "normalise": False}]  # fmt: skip
    composite = load("builtin:composite", parts=parts).embed(images)  # type: ignore[attr-defined]
    np.testing.assert_allclose(toned, composite, rtol=1e-5, atol=1e-6)


def test_fingerprints_cover_every_option() -> None:
    """Private embeddings are cached by fingerprint: two spaces must never share one."""
    at = {
        size: load("builtin:composite", parts=[{"uri": "builtin:effnet-lite0",
                                                "options": {"image_size": size}}])
        for size in (96, 128)
    }  # fmt: skip
    assert at[96].fingerprint != at[128].fingerprint
    plain = load("builtin:effnet-lite0")
    assert load("builtin:effnet-lite0", image_size=128).fingerprint != plain.fingerprint
    assert plain.fingerprint == load("builtin:effnet-lite0", image_size=96).fingerprint
    close = [load("builtin:effnet-lite0", tone_grid=8, tone_weight=w).fingerprint
             for w in (2.0, 2.0000001)]  # fmt: skip
    assert close[0] != close[1] and close[0].endswith("+tone8x2")  # older runs keep their key


def test_weights_are_bounded() -> None:
    with pytest.raises(ModelError, match="weight"):
        load("builtin:composite", parts=[{"uri": "builtin:pixels", "weight": 1e300}])
