"""The FID Inception network: architecture, strict loading of pytorch-fid's layout, and FID
through `evaluate(..., inception_weights=...)` with random weights (the real file is not
available offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from penumbra.errors import ModelError
from penumbra.evaluate.frechet import frechet_distance
from penumbra.evaluate.inception import FIDInceptionV3, inception_embedder, load_fid_inception

# torchvision documents Inception_V3 with 27,161,264 parameters (1000 classes, AuxLogits). The
# FID file has no AuxLogits (3,326,696 parameters) and a 1008-way fc (+16,392).
FID_PARAMETERS = 27_161_264 - 3_326_696 + 16_392


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = FIDInceptionV3()
    for m in model.modules():  # variance-preserving init so pool3 features are O(1)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.8, 1.2)
            m.weight.data.uniform_(0.8, 1.2)
            m.bias.data.uniform_(-0.1, 0.1)
    state = {k: v for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path_factory.mktemp("fid") / "pt_inception-random.pth"
    torch.save(state, path)
    return path


def test_architecture_matches_the_fid_inception_layout() -> None:
    model = FIDInceptionV3()
    assert sum(p.numel() for p in model.parameters()) == FID_PARAMETERS
    keys = set(model.state_dict())
    for key in ("Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch5x5_2.bn.running_var",
                "Mixed_6e.branch7x7dbl_5.conv.weight", "Mixed_7c.branch3x3dbl_3b.bn.bias",
                "fc.weight"):  # fmt: skip
        assert key in keys
    assert model.state_dict()["fc.weight"].shape == (1008, 2048)
    shapes = {}
    model.Mixed_5d.register_forward_hook(lambda m, i, o: shapes.update(d5=tuple(o.shape)))
    model.Mixed_6e.register_forward_hook(lambda m, i, o: shapes.update(e6=tuple(o.shape)))
    model.Mixed_7c.register_forward_hook(lambda m, i, o: shapes.update(c7=tuple(o.shape)))
    with torch.inference_mode():
        out = model.eval()(torch.rand(1, 3, 64, 64))  # any size: resized to 299 inside
    assert out.shape == (1, 2048)
    assert shapes == {"d5": (1, 288, 35, 35), "e6": (1, 768, 17, 17), "c7": (1, 2048, 8, 8)}


def test_fid_through_evaluate_matches_a_direct_float64_computation(
    random_weights: Path, tmp_path: Path
) -> None:
    from penumbra.evaluate import evaluate

    rng = np.random.default_rng(0)
    for name, shift in (("a", 0), ("b", 60)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(4):
            pixels = np.clip(rng.normal(120 + shift, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    result = evaluate(tmp_path / "a", tmp_path / "b", inception_weights=random_weights, k=1,
                      kid_subsets=5)  # fmt: skip
    # reference: the same network applied by hand, statistics in float64, scipy sqrtm
    net = load_fid_inception(random_weights)

    def feats(folder: Path) -> np.ndarray:
        images = [Image.open(p).convert("RGB") for p in sorted(folder.glob("*.png"))]
        x = torch.from_numpy(np.stack([np.asarray(im, np.float32) / 255 for im in images]))
        with torch.inference_mode():
            return net(x.permute(0, 3, 1, 2)).numpy().astype(np.float64)

    fa, fb = feats(tmp_path / "a"), feats(tmp_path / "b")
    want = frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0),
                            np.cov(fb, rowvar=False))  # fmt: skip
    assert want > 1e-3  # the sets differ, so the check is not 0 == 0
    assert result["fid"]["fid"] == pytest.approx(want, abs=1e-3)
    one = inception_embedder(net)([Image.open(tmp_path / "a" / "0.png")])
    assert np.abs(one - fa[:1]).max() < 1e-4


def test_wrong_weights_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file"):
        load_fid_inception(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a PyTorch weights file"):
        load_fid_inception(junk)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ModelError, match="not the FID Inception weights"):
        load_fid_inception(other)
