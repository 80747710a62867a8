"""The `hf:` backends, through the real loading code, on tiny random-weight models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penumbra.errors import ModelError
from penumbra.models import Captioner, ImageGenerator, TextEmbedder, TextGenerator, load
from penumbra.models.hf_source import infer_hf_role

from . import tiny_hf


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "llama": tiny_hf.tiny_llama(root / "llama"),
        "st": tiny_hf.tiny_sentence_transformer(root / "st"),
        "blip": tiny_hf.tiny_blip(root / "blip"),
        "sd": tiny_hf.tiny_stable_diffusion(root / "sd"),
    }


def test_roles_inferred_from_saved_files(tiny_models: dict[str, Path]) -> None:
    assert infer_hf_role(tiny_models["llama"]) == "text-generator"
    assert infer_hf_role(tiny_models["st"]) == "text-embedder"
    assert infer_hf_role(tiny_models["blip"]) == "captioner"
    assert infer_hf_role(tiny_models["sd"]) == "image-generator"


def test_causal_lm(tiny_models: dict[str, Path]) -> None:
    model = load(f"hf:{tiny_models['llama']}")
    assert isinstance(model, TextGenerator) and model.name.startswith("hf:")
    prompts = ["describe a red shoe", "a photo of a cat", "a dark coat"]
    first = model.generate(prompts, max_new_tokens=4, temperature=1.0, seed=11)
    assert len(first) == 3 and all(isinstance(t, str) and t for t in first)
    assert first == model.generate(prompts, max_new_tokens=4, temperature=1.0, seed=11)
    # the batch is left-padded: a prompt's output does not depend on its batch mates
    greedy_alone = model.generate(prompts[1:2], max_new_tokens=4, temperature=0.0, seed=None)
    greedy_batch = model.generate(prompts, max_new_tokens=4, temperature=0.0, seed=None)
    assert greedy_alone[0] == greedy_batch[1]


def test_sentence_transformer(tiny_models: dict[str, Path]) -> None:
    model = load(f"hf:{tiny_models['st']}", role="text-embedder")
    assert isinstance(model, TextEmbedder)
    vectors = model.embed(["a red shoe", "a blue shirt", "a red shoe"])
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0], vectors[2], rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


def test_blip_captioner(tiny_models: dict[str, Path]) -> None:
    model = load(f"hf:{tiny_models['blip']}", max_new_tokens=6)
    assert isinstance(model, Captioner)
    images = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("L", (20, 20), 128)]
    captions = model.caption(images)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert captions == model.caption(images)


def test_diffusers_pipeline(tiny_models: dict[str, Path]) -> None:
    model = load(f"hf:{tiny_models['sd']}", steps=2, height=16, width=16, batch_size=2)
    assert isinstance(model, ImageGenerator)
    images = model.generate(["a red shoe", "a cat", "a dark coat"], seed=5)
    assert [im.size for im in images] == [(16, 16)] * 3
    assert all(im.mode == "RGB" for im in images)
    again = model.generate(["a red shoe", "a cat", "a dark coat"], seed=5)
    for a, b in zip(images, again, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fingerprint_follows_weights(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    model = load(f"hf:{tiny_models['st']}")
    copy = tmp_path / "st-copy"
    shutil.copytree(tiny_models["st"], copy)
    assert load(f"hf:{copy}").fingerprint == model.fingerprint
    weights = next(copy.rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    changed = tmp_path / "st-changed"
    shutil.copytree(copy, changed)
    assert load(f"hf:{changed}").fingerprint != model.fingerprint


def test_missing_local_folder_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such folder"):
        load(f"hf:{tmp_path / 'nothing-here'}")


def test_uncached_repo_offline_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="huggingface-cli download penumbra-test/absent"):
        load("hf:penumbra-test/absent")


def test_folder_of_unknown_kind(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    with pytest.raises(ModelError, match="cannot tell which role"):
        load(f"hf:{tmp_path}")


def test_wrong_role_fails_with_model_error(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="cannot load as image-generator"):
        load(f"hf:{tiny_models['llama']}", role="image-generator")
