"""penumbra's builtin text-to-image model: a small rectified-flow UNet on Fashion-MNIST,
conditioned on all-MiniLM-L6-v2 caption embeddings, with classifier-free guidance and an Euler
sampler of a few steps. Small enough to train and run on a laptop CPU, so Private Evolution in
the text domain runs end to end offline. See MODEL_CARD.md beside the weights.

The UNet works on a 32×32 canvas (the 28×28 images padded by 2 black pixels, so it halves
twice evenly), but images leave and enter the model in the data's own 28×28 frame: a render
shown at 32 px with its border would put the garment at 28/32 of the size of every real image
it is compared with, and every embedder, vote and metric would see that shift, not the garment
(bench/RESULTS.md, "builtin:fashion-t2i", version 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from penumbra.errors import ModelError
from penumbra.models.protocols import Role, TextEmbedder

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "fashion_t2i.safetensors"
CONFIG_FILE = WEIGHTS_DIR / "fashion_t2i.json"
NATIVE = 32  # the UNet's canvas
FRAME = 28  # the data's frame: what generate() returns and vary() reads
PAD = (NATIVE - FRAME) // 2
# 2: images in the data's 28×28 frame (1 returned the 32×32 canvas, border included)
VERSION = 2


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 4


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(torch.nn.functional.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(torch.nn.functional.silu(h))
        out: torch.Tensor = h + self.skip(x)
        return out


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    args = 100.0 * t[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class FlowUNet(nn.Module):
    """Velocity field v(x_t, t, text) of a rectified flow from noise (t=0) to images (t=1)."""

    def __init__(self, base: int = 16, mults: tuple[int, ...] = (1, 2, 4), emb: int = 128,
                 text_dim: int = 384) -> None:  # fmt: skip
        super().__init__()
        self.config = {"base": base, "mults": list(mults), "emb": emb, "text_dim": text_dim}
        self.time_mlp = nn.Sequential(nn.Linear(64, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.text_mlp = nn.Sequential(nn.Linear(text_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.null_text = nn.Parameter(torch.zeros(text_dim))
        chans = [base * m for m in mults]
        self.conv_in = nn.Conv2d(1, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = chans[0]
        for i, c in enumerate(chans):
            self.down.append(ResBlock(prev, c, emb))
            prev = c
            if i < len(chans) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = ResBlock(prev, prev, emb)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(chans))):
            c = chans[i]
            self.up.append(ResBlock(prev + c, c, emb))
            prev = c
            if i > 0:
                self.upsample.append(nn.ConvTranspose2d(c, chans[i - 1], 4, stride=2, padding=1))
                prev = chans[i - 1]
        self.norm_out = nn.GroupNorm(_groups(chans[0]), chans[0])
        self.conv_out = nn.Conv2d(chans[0], 1, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, 64)) + self.text_mlp(text)
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        out: torch.Tensor = self.conv_out(torch.nn.functional.silu(self.norm_out(h)))
        return out


def sample(
    model: FlowUNet,
    text: torch.Tensor,
    *,
    steps: int,
    guidance: float,
    generator: torch.Generator | None,
    start: torch.Tensor | None = None,
    t_start: float = 0.0,
) -> torch.Tensor:
    """Euler integration of the guided velocity from t_start to 1; images in [-1, 1].

    With `start` (an image batch) and t_start = 1 − strength this is SDEdit: the image is
    mixed with noise to time t_start and integrated back to t = 1."""
    n = text.shape[0]
    device = text.device
    noise = torch.randn(n, 1, NATIVE, NATIVE, generator=generator, device="cpu").to(device)
    x = noise if start is None else (1 - t_start) * noise + t_start * start
    if t_start >= 1.0:
        return x
    null = model.null_text[None, :].expand(n, -1)
    times = torch.linspace(t_start, 1.0, steps + 1, device=device)
    with torch.inference_mode():
        for i in range(steps):
            t = times[i].expand(n)
            v = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, null]))
            v_cond, v_null = v.chunk(2)
            x = x + (times[i + 1] - times[i]) * (v_null + guidance * (v_cond - v_null))
    return x.clamp(-1, 1)


def to_images(x: torch.Tensor, size: int, resample: str) -> list[Image.Image]:
    """Canvas tensors → RGB images of the data's frame (the padding cut off), at `size`."""
    frame = x[:, 0, PAD : NATIVE - PAD, PAD : NATIVE - PAD]
    arr = ((frame.float().cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    method = Image.Resampling.NEAREST if resample == "nearest" else Image.Resampling.BICUBIC
    out = []
    for a in arr:
        im = Image.fromarray(a, mode="L")
        if size != FRAME:
            im = im.resize((size, size), method)
        out.append(im.convert("RGB"))
    return out


def from_images(images: list[Image.Image]) -> torch.Tensor:
    """Images of any size, taken as the data's frame → canvas tensors (black padding)."""
    arrays = [
        np.asarray(im.convert("L").resize((FRAME, FRAME), Image.Resampling.BICUBIC), np.float32)
        for im in images
    ]
    canvas = np.pad(np.stack(arrays), ((0, 0), (PAD, PAD), (PAD, PAD)))
    return torch.from_numpy(canvas)[:, None] / 127.5 - 1.0


def load_flow_model(weights: Path = WEIGHTS_FILE, config: Path = CONFIG_FILE) -> FlowUNet:
    from safetensors.torch import load_file

    if not weights.is_file() or not config.is_file():
        raise ModelError(
            f"builtin:fashion-t2i: weights missing at {weights}; reinstall penumbra or train "
            "them with `python -m penumbra.models.train_fashion_t2i`"
        )
    cfg = json.loads(config.read_text(encoding="utf-8"))
    if cfg.get("frame") != FRAME:
        raise ModelError(
            f"builtin:fashion-t2i: {config} is for another version of this model (frame "
            f"{cfg.get('frame')}, this code renders {FRAME}×{FRAME}); reinstall penumbra"
        )
    model = FlowUNet(
        base=cfg["base"], mults=tuple(cfg["mults"]), emb=cfg["emb"], text_dim=cfg["text_dim"]
    )
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    return model.eval()


class FashionT2I:
    """`builtin:fashion-t2i`: ImageGenerator (and SDEdit `vary`) over the flow model above."""

    role: Role = "image-generator"

    def __init__(
        self,
        *,
        text_encoder: Callable[[], TextEmbedder],
        image_size: int = FRAME,
        steps: int | None = None,
        guidance: float | None = None,
        batch_size: int = 64,
        resample: str = "bicubic",
    ) -> None:
        """`steps` and `guidance` default to the sampler the weights ship with (their config
        file, so part of the fingerprint: a new default is a new model identity)."""
        if image_size < 8 or image_size > 1024:
            raise ModelError(
                f"builtin:fashion-t2i: image_size must be in [8, 1024], got {image_size}"
            )
        sampler = json.loads(CONFIG_FILE.read_text(encoding="utf-8")).get("sampler", {})
        steps = int(sampler.get("steps", 12)) if steps is None else steps
        guidance = float(sampler.get("guidance", 3.0)) if guidance is None else guidance
        if steps < 1:
            raise ModelError(f"builtin:fashion-t2i: steps must be >= 1, got {steps}")
        if resample not in ("bicubic", "nearest"):
            raise ModelError("builtin:fashion-t2i: resample must be 'bicubic' or 'nearest'")
        from penumbra.models.device import default_device
        from penumbra.models.fingerprint import fingerprint_files

        self.name = "builtin:fashion-t2i"
        self._text_encoder = text_encoder  # MiniLM (builtin:minilm-l6), loaded on first use
        self.image_size = image_size
        self.steps = steps
        self.guidance = guidance
        self.batch_size = batch_size
        self.resample = resample
        self.device = default_device()
        self._model = load_flow_model().to(self.device)
        self._fingerprint = fingerprint_files([WEIGHTS_FILE, CONFIG_FILE])

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @cached_property
    def _text(self) -> TextEmbedder:
        return self._text_encoder()

    def _embed(self, prompts: list[str]) -> torch.Tensor:
        return torch.from_numpy(self._text.embed(list(prompts))).to(self.device)

    def _run(
        self,
        prompts: list[str],
        seed: int | None,
        start: torch.Tensor | None,
        t_start: float,
        steps: int,
    ) -> list[Image.Image]:
        images: list[Image.Image] = []
        for offset in range(0, len(prompts), self.batch_size):
            batch = prompts[offset : offset + self.batch_size]
            gen = None
            if seed is not None:
                gen = torch.Generator().manual_seed(seed * 1_000_003 + offset)
            x0 = None if start is None else start[offset : offset + len(batch)].to(self.device)
            x = sample(
                self._model, self._embed(batch), steps=steps, guidance=self.guidance,
                generator=gen, start=x0, t_start=t_start,
            )  # fmt: skip
            images.extend(to_images(x, self.image_size, self.resample))
        return images

    def generate(self, prompts: list[str], *, seed: int | None) -> list[Image.Image]:
        return self._run(list(prompts), seed, None, 0.0, self.steps)

    def vary(
        self,
        images: list[Image.Image],
        prompts: list[str],
        *,
        strength: float,
        seed: int | None,
    ) -> list[Image.Image]:
        """SDEdit: strength 0 returns the input (at this model's size), 1 ignores it."""
        if not 0 <= strength <= 1:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        # integrate only the part of the path SDEdit re-noised
        steps = max(1, round(self.steps * strength))
        return self._run(list(prompts), seed, from_images(images), 1.0 - strength, steps)
