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
        match="builtin:effnet-lite0: unknown option.*image_sise.*allowed: image_size, batch_size",
    ):
        load("builtin:effnet-lite0", image_sise=64)
    with pytest.raises(ModelError, match="no scheme"):
        load("minilm-l6")
    with pytest.raises(ModelError, match="unknown scheme 'ftp'"):
        load("ftp:model")
    with pytest.raises(ModelError, match="unknown model role"):
        load("builtin:minilm-l6", role="painter")  # type: ignore[arg-type]
