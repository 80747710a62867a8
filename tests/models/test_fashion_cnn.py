"""builtin:fashion-cnn: an image embedder trained on public data that puts a real garment and a
render of the same class together (issue 25: the component that limited the votes)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from penumbra.errors import ModelError
from penumbra.models import load
from penumbra.models.protocols import ImageEmbedder


@pytest.fixture(scope="module")
def cnn() -> ImageEmbedder:
    model = load("builtin:fashion-cnn")
    assert isinstance(model, ImageEmbedder)
    return model


def test_unit_vectors_any_size_deterministic(cnn: ImageEmbedder) -> None:
    from penumbra.data.demo import demo_private_set

    images = list(demo_private_set().images[:6])
    x = cnn.embed(images)
    assert x.shape == (6, 64) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(cnn.embed(images), x)
    # a 56-px nearest copy is read as the same frame (bicubic back to 28: nearly the same)
    big = [im.resize((56, 56), Image.Resampling.NEAREST) for im in images]
    assert float(np.min(np.sum(cnn.embed(big) * x, axis=1))) > 0.98
    assert cnn.embed([]).shape == (0, 64)
    assert cnn.fingerprint.startswith("fashion-cnn-v1-")
    with pytest.raises(ModelError, match="batch_size"):
        load("builtin:fashion-cnn", batch_size=0)


def test_real_garments_vote_for_renders_of_their_own_class(cnn: ImageEmbedder) -> None:
    """Exact nearest-render votes of 300 real images (the demo's private set: Fashion-MNIST's
    test split, never trained on) over 200 renders of public captions (20 per class): the share
    that lands on a render of the image's own class, against EfficientNet-Lite0's. Fixed seeds,
    so deterministic (no false failures); measured 0.96 vs 0.80 when written."""
    from penumbra.data.demo import demo_private_set
    from penumbra.data.fashion import make_caption

    demo = demo_private_set()
    rng = np.random.default_rng(0)
    pick = rng.choice(len(demo.images), 300, replace=False)
    real = [demo.images[i] for i in pick]
    labels = np.asarray(demo.labels)[pick]
    classes = np.repeat(np.arange(10), 20)
    captions = [make_caption(int(c), (0, 0, 0), rng) for c in classes]
    renders = load("builtin:fashion-t2i").generate(captions, seed=1)  # type: ignore[attr-defined]

    def same_class(embedder: ImageEmbedder) -> float:
        p, r = embedder.embed(real), embedder.embed(renders)
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        r = r / np.linalg.norm(r, axis=1, keepdims=True)
        return float((classes[(p @ r.T).argmax(1)] == labels).mean())

    ours, effnet = same_class(cnn), same_class(load("builtin:effnet-lite0"))  # type: ignore[arg-type]
    assert ours >= 0.90, ours
    assert ours >= effnet + 0.10, (ours, effnet)
