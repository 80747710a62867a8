"""A small Fashion-MNIST classifier shipped with penumbra, for evaluating demo runs.

Softmax regression on 28×28 pixels (real test accuracy ~84%), trained on the train split by
`python -m penumbra.evaluate.fashion_classifier` (needs Debian's dataset-fashion-mnist). It
labels synthetic images so the demo can show how close the synthetic class mix comes to the
private one. Evaluation only: nothing it says feeds back into a run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

WEIGHTS = (
    Path(__file__).resolve().parents[1] / "models" / "weights" / "fashion_classifier.safetensors"
)


def to_pixels(images: list[Image.Image]) -> np.ndarray:
    """Any image, taken as the whole Fashion-MNIST frame (as builtin:fashion-t2i renders it at
    any size), → 28×28 grayscale."""
    out = []
    for im in images:
        gray = im.convert("L")
        if gray.size != (28, 28):
            gray = gray.resize((28, 28), Image.Resampling.BICUBIC)
        out.append(np.asarray(gray, dtype=np.float32) / 255.0)
    return np.stack(out).reshape(len(out), -1)


def train(seed: int = 0, epochs: int = 15) -> tuple[torch.nn.Linear, float]:
    from penumbra.data.fashion import load_fashion_mnist

    torch.manual_seed(seed)
    x, y = load_fashion_mnist("train")
    tx, ty = load_fashion_mnist("test")
    model = torch.nn.Linear(784, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.0)
    yt = torch.from_numpy(y.astype(np.int64))
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(256):
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(tx.reshape(len(tx), -1).astype(np.float32) / 255.0))
    return model, float((pred.argmax(1).numpy() == ty).mean())


def predict(images: list[Image.Image]) -> np.ndarray:
    from safetensors.torch import load_file

    state = load_file(str(WEIGHTS))
    model = torch.nn.Linear(784, 10)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    with torch.no_grad():
        logits = model(torch.from_numpy(to_pixels(images)))
    labels: np.ndarray = logits.argmax(1).numpy()
    return labels


def class_mix(labels: np.ndarray) -> np.ndarray:
    mix: np.ndarray = np.bincount(labels, minlength=10) / max(len(labels), 1)
    return mix


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p - q).sum())


def main() -> None:
    from safetensors.torch import save_file

    model, acc = train()
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(WEIGHTS))
    WEIGHTS.chmod(0o644)
    sys.stdout.write(json.dumps({"test_accuracy": acc, "weights": str(WEIGHTS)}) + "\n")


if __name__ == "__main__":
    main()
