"""The builtin LLM on CTranslate2 (int8, made for CPUs) instead of transformers.

transformers de-quantises the shipped GGUF to fp32 and runs every prompt's full chat template
through the model. CTranslate2 runs int8 weights and forwards the prompts' shared prefix (the
chat template's system line and the instruction before the caption) once per batch as a cached
static prompt. The int8 model is converted from the GGUF once per machine into penumbra's cache
(`PENUMBRA_CACHE`, default ~/.cache/penumbra), atomically; its fingerprint names the GGUF's hash
and the runtime, so a run records which weights and which runtime wrote its captions.

Seeds: CTranslate2 seeds a thread's sampler when the thread starts, so `set_random_seed` alone
does not repeat a draw within one process (OpenNMT/CTranslate2#1757). Each `generate` call
therefore opens its generator after seeding: the same prompts and seed give the same captions.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from penumbra.errors import ModelError
from penumbra.models.protocols import Role, check_generation

RUNTIME = "ctranslate2-int8"


def cache_root() -> Path:
    return Path(os.environ.get("PENUMBRA_CACHE") or Path.home() / ".cache" / "penumbra")


def convert_gguf(package_dir: Path, gguf_file: str, digest: str) -> Path:
    """The int8 CTranslate2 model of `package_dir/gguf_file`, converted once and cached under
    its SHA-256 `digest`; returns its folder (with the tokenizer beside the weights)."""
    target = cache_root() / "ct2" / f"{digest[:32]}-int8"
    if (target / "model.bin").is_file():
        return target
    import ctranslate2.converters
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        hf_dir, ct2_dir = Path(tmp) / "hf", Path(tmp) / "ct2"
        tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf_file,
                                                  local_files_only=True)  # fmt: skip
        quantised: Any = AutoModelForCausalLM.from_pretrained(
            package_dir, gguf_file=gguf_file, local_files_only=True
        )
        # a GGUF-loaded model refuses save_pretrained: copy its de-quantised weights into a
        # plain model of the same config, which the converter can read
        config = quantised.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain: Any = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(quantised.state_dict())
        plain.save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
        del quantised, plain
        ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(
            str(ct2_dir), quantization="int8"
        )
        tokenizer.save_pretrained(ct2_dir)
        try:
            os.replace(ct2_dir, target)
        except OSError:  # another process converted it first
            if not (target / "model.bin").is_file():
                raise
            shutil.rmtree(ct2_dir, ignore_errors=True)
    return target


def _shared_prefix(sequences: list[list[str]]) -> int:
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != first[i] for s in sequences):
            return i
    return n


class CT2TextGenerator:
    """A chat LLM on CTranslate2: the same `generate` as `HFTextGenerator`, int8 on CPU."""

    role: Role = "text-generator"

    def __init__(
        self,
        name: str,
        model_dir: Path,
        tokenizer: Any,
        fingerprint: str,
        *,
        batch_size: int = 64,
        threads: int = 0,
    ) -> None:
        self.name = name
        self.model_dir = model_dir
        self._tokenizer = tokenizer
        self._fingerprint = fingerprint
        self.batch_size = batch_size
        self.threads = threads or max(1, len(os.sched_getaffinity(0)))

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _tokens(self, prompt: str) -> list[str]:
        text = self._tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = self._tokenizer.encode(str(text), add_special_tokens=False)
        tokens: list[str] = self._tokenizer.convert_ids_to_tokens(ids)
        return tokens

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[str]:
        import ctranslate2

        check_generation(max_new_tokens, temperature)
        if not prompts:
            return []
        ctranslate2.set_random_seed(seed if seed is not None else int.from_bytes(os.urandom(4)))
        generator = ctranslate2.Generator(
            str(self.model_dir), device="cpu", compute_type="int8", intra_threads=self.threads
        )
        sampling: dict[str, Any] = (
            {"sampling_topk": 0, "sampling_topp": 0.95, "sampling_temperature": temperature}
            if temperature > 0
            else {"sampling_topk": 1}
        )
        outputs: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            tokens = [self._tokens(p) for p in prompts[start : start + self.batch_size]]
            shared = _shared_prefix(tokens)
            # the instruction before the caption is the same in every prompt of a variation
            # batch: forward it once (cached) rather than once per prompt
            static = tokens[0][:shared] if shared >= 8 and len(tokens) > 1 else None
            rest = [t[len(static) :] for t in tokens] if static else tokens
            if static and any(not r for r in rest):
                static, rest = None, tokens
            results = generator.generate_batch(
                rest,
                static_prompt=static,
                max_length=max_new_tokens,
                include_prompt_in_result=False,
                **sampling,
            )
            outputs.extend(
                self._tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True).strip()
                for r in results
            )
        del generator
        return outputs


def load_ct2_generator(
    package_dir: Path, gguf_file: str, *, name: str, digest: str, batch_size: int = 64
) -> CT2TextGenerator:
    try:
        from transformers import AutoTokenizer

        folder = convert_gguf(package_dir, gguf_file, digest)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"{name}: could not prepare the CTranslate2 model: {e}") from e
    return CT2TextGenerator(name, folder, tokenizer, f"{digest}+{RUNTIME}", batch_size=batch_size)
