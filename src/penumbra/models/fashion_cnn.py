"""`builtin:fashion-cnn`: an image embedder that knows what a garment is, in the data's frame.

PE's votes go to the nearest render, so the embedding decides whether a private sandal votes
for a rendered sandal or for a rendered sneaker of the same brightness. EfficientNet-Lite0's
ImageNet features confuse Fashion-MNIST's classes between real images and renders (about one
vote in five lands on a render of another class: `bench/vote_purity.py`). This small CNN was
trained on *public* data only: the Fashion-MNIST train split (the data builtin:fashion-t2i
learnt from; the demo's private set is drawn from the test split) and renders of public
captions by builtin:fashion-t2i, so a real garment and a render of the same class meet in one
space. Its embedding is the pooled last convolution (64 numbers, unit length).

Trained by `python -m penumbra.models.train_fashion_cnn` (needs Debian's dataset-fashion-mnist);
the weights ship in the package. Nothing is learnt from the images a run embeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from penumbra.errors import ModelError
from penumbra.models.fingerprint import file_sha256
from penumbra.models.protocols import Role

VERSION = 1
FRAME = 28
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "fashion_cnn.safetensors"
METRICS_FILE = WEIGHTS_DIR / "fashion_cnn.metrics.json"
WIDTHS = (32, 64, 64)
EMBEDDING_DIM = WIDTHS[-1]


class FashionCNN(nn.Module):
    """Three conv blocks (28 → 14 → 7 → pooled), a linear class head on the pooled features."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, w in enumerate(widths):
            layers += [
                nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            ]  # fmt: skip
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[n, 1, 28, 28] in [0, 1] → [n, D] pooled features (before the class head)."""
        pooled: torch.Tensor = self.features((x - 0.5) / 0.5).mean(dim=(2, 3))
        return pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # type: ignore[no-any-return]


def to_frame(images: list[Image.Image]) -> torch.Tensor:
    """Any image, taken as the whole Fashion-MNIST frame → [n, 1, 28, 28] grey in [0, 1]
    (as `evaluate.fashion_classifier.to_pixels` reads it)."""
    out = []
    for im in images:
        gray = im.convert("L")
        if gray.size != (FRAME, FRAME):
            gray = gray.resize((FRAME, FRAME), Image.Resampling.BICUBIC)
        out.append(np.asarray(gray, dtype=np.float32) / 255.0)
    if not out:
        return torch.zeros((0, 1, FRAME, FRAME))
    return torch.from_numpy(np.stack(out)).unsqueeze(1)


def load_network(weights: Path = WEIGHTS_FILE) -> FashionCNN:
    from safetensors.torch import load_file

    if not weights.is_file():
        raise ModelError(f"builtin:fashion-cnn: weights missing at {weights}; reinstall penumbra")
    net = FashionCNN()
    state = load_file(str(weights))
    try:
        net.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except RuntimeError as e:
        raise ModelError(f"builtin:fashion-cnn: {weights} does not fit the network ({e})") from e
    return net.eval()


class FashionCNNEmbedder:
    """`builtin:fashion-cnn`: unit-length pooled CNN features of a 28×28 grey frame."""

    role: Role = "image-embedder"

    def __init__(self, *, batch_size: int = 256, weights: Path = WEIGHTS_FILE) -> None:
        if batch_size < 1:
            raise ModelError(f"builtin:fashion-cnn: batch_size must be >= 1, got {batch_size}")
        self.name = "builtin:fashion-cnn"
        self.batch_size = batch_size
        self.dim = EMBEDDING_DIM
        self.net = load_network(weights)
        self._fingerprint = f"fashion-cnn-v{VERSION}-{file_sha256(weights)}"

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        blocks = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = to_frame(images[start : start + self.batch_size])
                v = self.net.embed(x)
                blocks.append(torch.nn.functional.normalize(v, dim=1).numpy())
        return np.concatenate(blocks).astype(np.float32)
