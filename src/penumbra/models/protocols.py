"""The five roles a model can play in penumbra, as structural protocols.

Pipelines depend on these protocols only, so a builtin model, local Hugging Face weights and
a remote OpenAI-compatible server are interchangeable. Every model also carries `role`, `name`
and `fingerprint` so a run can record exactly which model produced what.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np
from PIL import Image

Role = Literal["text-generator", "text-embedder", "image-embedder", "image-generator", "captioner"]
ROLES: tuple[Role, ...] = (
    "text-generator",
    "text-embedder",
    "image-embedder",
    "image-generator",
    "captioner",
)


@runtime_checkable
class Model(Protocol):
    role: Role
    name: str

    @property
    def fingerprint(self) -> str:
        """Stable hex digest of the weights/config (or, for remote APIs, of the endpoint)."""
        ...


@runtime_checkable
class TextGenerator(Model, Protocol):
    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[str]:
        """One completion per prompt, same order; prompts are user turns of a chat."""
        ...


@runtime_checkable
class OptionChooser(Protocol):
    """A text generator that can answer with one of a list of options (constrained decoding):
    what slot-form captions need (`spti.slot_api`). Local models only."""

    def choose(
        self,
        prompts: list[str],
        options: list[list[str]],
        *,
        reply_prefixes: list[str] | None = None,
        temperature: float,
        seed: int | None,
    ) -> list[int]:
        """Per prompt, the index of the option the model's reply (after its prefix) is."""
        ...


@runtime_checkable
class TextEmbedder(Model, Protocol):
    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 array of shape [len(texts), d]."""
        ...


@runtime_checkable
class ImageEmbedder(Model, Protocol):
    def embed(self, images: list[Image.Image]) -> np.ndarray:
        """float32 array of shape [len(images), d]."""
        ...


@runtime_checkable
class ImageGenerator(Model, Protocol):
    def generate(self, prompts: list[str], *, seed: int | None) -> list[Image.Image]:
        """One RGB image per prompt, same order."""
        ...


@runtime_checkable
class Captioner(Model, Protocol):
    def caption(self, images: list[Image.Image]) -> list[str]:
        """One caption per image, same order."""
        ...


@runtime_checkable
class ImageVariator(ImageGenerator, Protocol):
    """An image generator that can also vary images (SDEdit/img2img): image-domain PE."""

    def vary(
        self,
        images: list[Image.Image],
        prompts: list[str],
        *,
        strength: float,
        seed: int | None,
    ) -> list[Image.Image]:
        """One variation per image; strength in (0, 1]: how far from the original."""
        ...


def check_generation(max_new_tokens: int, temperature: float) -> None:
    """The arguments every TextGenerator refuses alike."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
