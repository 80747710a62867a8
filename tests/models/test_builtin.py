"""The builtin models load offline from their PyPI packages and do their jobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penumbra.errors import ModelError
from penumbra.models import (
    Captioner,
    ImageEmbedder,
    TextEmbedder,
    TextGenerator,
    load,
)
from penumbra.models.fingerprint import file_sha256


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_minilm_embeds_meaning() -> None:
    model = load("builtin:minilm-l6")
    assert isinstance(model, TextEmbedder) and model.role == "text-embedder"
    vectors = model.embed(["a red running shoe", "a crimson sneaker", "a bowl of hot soup"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2]) + 0.2
    assert model.embed([]).shape == (0, 384)
    assert load("builtin:minilm-l6") is model  # loaded once per process


def test_effnet_embeds_images(skimage_data: Path) -> None:
    model = load("builtin:effnet-lite0")
    assert isinstance(model, ImageEmbedder)
    cat = Image.open(skimage_data / "chelsea.png")
    coffee = Image.open(skimage_data / "coffee.png")
    vectors = model.embed([cat, coffee, cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    assert vectors.shape == (3, 1280) and vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    # a mirrored cat is closer to the cat than a cup of coffee is
    assert _cos(vectors[0], vectors[2]) > _cos(vectors[0], vectors[1])
    np.testing.assert_allclose(model.embed([cat]), vectors[:1], rtol=1e-3, atol=1e-4)


def test_effnet_fingerprint_is_the_weights_hash() -> None:
    from penumbra.models.effnet import weights_path

    model = load("builtin:effnet-lite0")
    assert model.fingerprint == file_sha256(weights_path())
    assert len(model.fingerprint) == 64


def test_effnet_tone_grid_separates_a_dark_item_from_a_light_one() -> None:
    """ImageNet features barely see brightness; the tone grid must, and it must never share a
    cache key with plain features."""
    plain = load("builtin:effnet-lite0")
    toned = load("builtin:effnet-lite0", tone_grid=4, tone_weight=2.0)
    assert toned.fingerprint != plain.fingerprint and plain.fingerprint in toned.fingerprint
    yy, xx = np.mgrid[:28, :28]
    shape = (abs(xx - 13.5) < 8) & (abs(yy - 13.5) < 11)  # a garment-like block
    dark, light = (Image.fromarray((shape * v).astype(np.uint8)) for v in (70, 210))
    vectors = toned.embed([dark, light])
    assert vectors.shape == (2, 1280 + 16)
    np.testing.assert_allclose(np.linalg.norm(vectors[:, :1280], axis=1), 1.0, rtol=1e-5)
    # the tone block is the 4×4 mean grey level scaled by weight / grid
    expected = np.asarray(light.resize((4, 4), Image.Resampling.BOX), np.float32) / 255 * 0.5
    np.testing.assert_allclose(vectors[1, 1280:], expected.ravel(), atol=1e-6)
    tone_gap = np.linalg.norm(vectors[0] - vectors[1])
    plain_vectors = plain.embed([dark, light])
    unit = plain_vectors / np.linalg.norm(plain_vectors, axis=1, keepdims=True)
    assert tone_gap > 2 * np.linalg.norm(unit[0] - unit[1])
    with pytest.raises(ModelError, match="tone_grid must be in"):
        load("builtin:effnet-lite0", tone_grid=-1)
    with pytest.raises(ModelError, match="tone_weight must be a positive"):
        load("builtin:effnet-lite0", tone_grid=4, tone_weight=0.0)


def test_label_captioner_names_what_it_sees(skimage_data: Path) -> None:
    model = load("builtin:label-captioner")
    assert isinstance(model, Captioner)
    captions = model.caption(
        [Image.open(skimage_data / "coffee.png"), Image.open(skimage_data / "chelsea.png")]
    )
    assert captions[0].startswith("a photo of an espresso")
    assert "cat" in captions[1] or "Mau" in captions[1]


@pytest.mark.slow
def test_smollm2_generates_reproducibly() -> None:
    model = load("builtin:smollm2-135m")
    assert isinstance(model, TextGenerator)
    prompts = ["Describe a photo of a clothing item in one short sentence."] * 2
    first = model.generate(prompts, max_new_tokens=16, temperature=0.8, seed=3)
    again = model.generate(prompts, max_new_tokens=16, temperature=0.8, seed=3)
    assert first == again
    assert all(isinstance(t, str) and len(t.split()) >= 3 for t in first)
    assert "<|im_start|>" not in first[0] and "assistant" not in first[0].split()[0]
    greedy = model.generate(prompts[:1], max_new_tokens=8, temperature=0.0, seed=None)
    assert len(greedy) == 1 and greedy[0]


def test_wrong_role_unknown_builtin_and_bad_option() -> None:
    with pytest.raises(ModelError, match="is a text-embedder, not a captioner"):
        load("builtin:minilm-l6", role="captioner")
    with pytest.raises(ModelError, match="unknown builtin model 'builtin:sdxl'.*minilm-l6"):
        load("builtin:sdxl")
    with pytest.raises(
        ModelError,
        match="builtin:effnet-lite0: unknown option.*image_sise.*allowed: image_size, batch_size, "
        "tone_grid, tone_weight",
    ):
        load("builtin:effnet-lite0", image_sise=64)
    with pytest.raises(ModelError, match="no scheme"):
        load("minilm-l6")
    with pytest.raises(ModelError, match="unknown scheme 'ftp'"):
        load("ftp:model")
    with pytest.raises(ModelError, match="unknown model role"):
        load("builtin:minilm-l6", role="painter")  # type: ignore[arg-type]
