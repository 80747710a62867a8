"""Hugging Face backends: causal LMs, sentence-transformers, vision-language captioners and
diffusers text-to-image pipelines. The builtin text models reuse these classes, so the code
path that runs offline in tests is the one users run with their own weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from penumbra.errors import ModelError
from penumbra.models.constrained import choose_options
from penumbra.models.device import default_device
from penumbra.models.fingerprint import fingerprint_dir, fingerprint_text
from penumbra.models.hf_source import HFSource, hub_offline
from penumbra.models.protocols import Role, check_generation

T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fingerprint(source: HFSource) -> str:
    if source.local_dir is not None:
        return fingerprint_dir(source.local_dir)
    return fingerprint_text("hf-hub", source.ref)


def _load_error(source: HFSource, role: Role, err: Exception) -> ModelError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelError(f"hf:{source.ref}: cannot load as {role} ({first})")


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No per-tensor progress bars (GGUF de-quantisation prints hundreds of lines)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _dtype_for(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


class HFTextGenerator:
    """A causal LM prompted through its chat template (when it has one), batched, left-padded."""

    role: Role = "text-generator"

    def __init__(
        self, name: str, model: Any, tokenizer: Any, fingerprint: str, *, batch_size: int = 32
    ) -> None:
        self.name = name
        self._model = model
        self._tokenizer = tokenizer
        self._fingerprint = fingerprint
        self.batch_size = batch_size
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _format(self, prompt: str) -> str:
        if getattr(self._tokenizer, "chat_template", None):
            text = self._tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            return str(text)
        return prompt

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[str]:
        check_generation(max_new_tokens, temperature)
        outputs: list[str] = []
        device = self._model.device
        for index, batch in enumerate(batched(prompts, self.batch_size)):
            if seed is not None:
                torch.manual_seed(seed + index)
            enc = self._tokenizer(
                [self._format(p) for p in batch], return_tensors="pt", padding=True
            )
            enc = {k: v.to(device) for k, v in enc.items()}
            sampling: dict[str, Any] = (
                {"do_sample": True, "temperature": temperature, "top_p": 0.95}
                if temperature > 0
                else {"do_sample": False}
            )
            with torch.inference_mode():
                out = self._model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=self._tokenizer.pad_token_id,
                    **sampling,
                )
            new_tokens = out[:, enc["input_ids"].shape[1] :]
            outputs.extend(
                t.strip()
                for t in self._tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            )
        return outputs

    def choose(
        self,
        prompts: list[str],
        options: list[list[str]],
        *,
        reply_prefixes: list[str] | None = None,
        temperature: float,
        seed: int | None,
    ) -> list[int]:
        """The option each prompt's reply continues `reply_prefixes[i]` with, sampled from the
        model restricted to the options (`models.constrained`): well-formed by construction."""
        check_generation(1, temperature)
        prefixes = reply_prefixes or [""] * len(prompts)
        texts = [self._format(p) + r.rstrip() for p, r in zip(prompts, prefixes, strict=True)]
        return choose_options(
            self._model, self._tokenizer, texts, options,
            temperature=temperature, seed=seed, batch_size=self.batch_size,
        )  # fmt: skip


def load_causal_lm(
    source: HFSource,
    *,
    name: str,
    gguf_file: str | None = None,
    fingerprint: str | None = None,
    batch_size: int = 32,
) -> HFTextGenerator:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = default_device()
    kwargs: dict[str, Any] = {"local_files_only": hub_offline() or source.local_dir is not None}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source.ref, **kwargs)
            model: Any = AutoModelForCausalLM.from_pretrained(
                source.ref, dtype=_dtype_for(device), **kwargs
            )
    except (OSError, ValueError, KeyError) as e:
        raise _load_error(source, "text-generator", e) from e
    model.to(device).eval()
    return HFTextGenerator(
        name, model, tokenizer, fingerprint or _fingerprint(source), batch_size=batch_size
    )


class HFTextEmbedder:
    """A sentence-transformers model; embeddings as the model defines them (normalised or not)."""

    role: Role = "text-embedder"

    def __init__(self, name: str, model: Any, fingerprint: str, *, batch_size: int = 64) -> None:
        self.name = name
        self._model = model
        self._fingerprint = fingerprint
        self.batch_size = batch_size

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dim(self) -> int:
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        get_dim = get_dim or self._model.get_sentence_embedding_dimension
        return int(get_dim())

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_sentence_transformer(
    source: HFSource, *, name: str, fingerprint: str | None = None, batch_size: int = 64
) -> HFTextEmbedder:
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(
            source.ref,
            device=str(default_device()),
            local_files_only=hub_offline() or source.local_dir is not None,
        )
    except (OSError, ValueError, KeyError) as e:
        raise _load_error(source, "text-embedder", e) from e
    return HFTextEmbedder(name, model, fingerprint or _fingerprint(source), batch_size=batch_size)


class HFCaptioner:
    """A vision-language model (BLIP, Florence-2, ...) that writes one caption per image."""

    role: Role = "captioner"

    def __init__(
        self,
        name: str,
        model: Any,
        processor: Any,
        fingerprint: str,
        *,
        prompt: str | None = None,
        max_new_tokens: int = 40,
        batch_size: int = 16,
    ) -> None:
        self.name = name
        self._model = model
        self._processor = processor
        self._fingerprint = fingerprint
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def caption(self, images: list[Image.Image]) -> list[str]:
        captions: list[str] = []
        device = self._model.device
        for batch in batched(images, self.batch_size):
            rgb = [im.convert("RGB") for im in batch]
            if self.prompt is None:
                inputs = self._processor(images=rgb, return_tensors="pt")
            else:
                inputs = self._processor(
                    images=rgb, text=[self.prompt] * len(rgb), return_tensors="pt"
                )
            inputs = {
                k: (v.to(device, self._model.dtype) if v.is_floating_point() else v.to(device))
                for k, v in inputs.items()
            }
            with torch.inference_mode():
                out = self._model.generate(
                    **inputs, max_new_tokens=self.max_new_tokens, do_sample=False
                )
            prompt_ids = inputs.get("input_ids")
            if (
                prompt_ids is not None
                and out.shape[1] >= prompt_ids.shape[1]
                and torch.equal(out[:, : prompt_ids.shape[1]], prompt_ids)
            ):
                out = out[:, prompt_ids.shape[1] :]
            texts = self._processor.batch_decode(out, skip_special_tokens=True)
            captions.extend(t.strip() for t in texts)
        return captions


def load_captioner(
    source: HFSource,
    *,
    name: str,
    prompt: str | None = None,
    max_new_tokens: int = 40,
    batch_size: int = 16,
) -> HFCaptioner:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = default_device()
    local = hub_offline() or source.local_dir is not None
    try:
        processor = AutoProcessor.from_pretrained(source.ref, local_files_only=local)
        model: Any = AutoModelForImageTextToText.from_pretrained(
            source.ref, dtype=_dtype_for(device), local_files_only=local
        )
    except (OSError, ValueError, KeyError) as e:
        raise _load_error(source, "captioner", e) from e
    model.to(device).eval()
    return HFCaptioner(
        name,
        model,
        processor,
        _fingerprint(source),
        prompt=prompt,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )


class DiffusersImageGenerator:
    """A diffusers text-to-image pipeline; one seeded generator per image for reproducibility."""

    role: Role = "image-generator"

    def __init__(
        self,
        name: str,
        pipeline: Any,
        fingerprint: str,
        *,
        steps: int = 30,
        guidance_scale: float = 7.5,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 4,
    ) -> None:
        self.name = name
        self._pipeline = pipeline
        self._fingerprint = fingerprint
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.height = height
        self.width = width
        self.batch_size = batch_size
        self._img2img: Any = None

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _generators(self, seed: int | None, start: int, count: int) -> list[Any] | None:
        if seed is None:
            return None
        device = self._pipeline.device
        return [torch.Generator(device).manual_seed(seed + start + i) for i in range(count)]

    def generate(self, prompts: list[str], *, seed: int | None) -> list[Image.Image]:
        images: list[Image.Image] = []
        extra: dict[str, Any] = {}
        if self.height is not None:
            extra["height"] = self.height
        if self.width is not None:
            extra["width"] = self.width
        for start in range(0, len(prompts), self.batch_size):
            batch = list(prompts[start : start + self.batch_size])
            with torch.inference_mode():
                result = self._pipeline(
                    prompt=batch,
                    num_inference_steps=self.steps,
                    guidance_scale=self.guidance_scale,
                    generator=self._generators(seed, start, len(batch)),
                    output_type="pil",
                    **extra,
                )
            images.extend(im.convert("RGB") for im in result.images)
        return images

    def vary(
        self,
        images: list[Image.Image],
        prompts: list[str],
        *,
        strength: float,
        seed: int | None,
    ) -> list[Image.Image]:
        """SDEdit-style variations (img2img): strength 0 keeps the image, 1 ignores it."""
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if self._img2img is None:
            from diffusers import AutoPipelineForImage2Image

            self._img2img = AutoPipelineForImage2Image.from_pipe(self._pipeline)
            self._img2img.set_progress_bar_config(disable=True)
        out: list[Image.Image] = []
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            with torch.inference_mode():
                result = self._img2img(
                    prompt=list(prompts[start : start + self.batch_size]),
                    image=batch,
                    strength=strength,
                    num_inference_steps=self.steps,
                    guidance_scale=self.guidance_scale,
                    generator=self._generators(seed, start, len(batch)),
                    output_type="pil",
                )
            out.extend(im.convert("RGB") for im in result.images)
        return out


def load_diffusers_pipeline(
    source: HFSource,
    *,
    name: str,
    steps: int = 30,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 4,
) -> DiffusersImageGenerator:
    from diffusers import AutoPipelineForText2Image

    device = default_device()
    try:
        pipeline = AutoPipelineForText2Image.from_pretrained(
            source.ref,
            torch_dtype=_dtype_for(device),
            local_files_only=hub_offline() or source.local_dir is not None,
        )
    except (OSError, ValueError, KeyError) as e:
        raise _load_error(source, "image-generator", e) from e
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return DiffusersImageGenerator(
        name,
        pipeline,
        _fingerprint(source),
        steps=steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
        batch_size=batch_size,
    )


def model_folder(path: str | Path) -> HFSource:
    """An HFSource for a folder that ships inside a package (builtin models)."""
    p = Path(path)
    return HFSource(ref=str(p), local_dir=p)
