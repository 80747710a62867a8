"""Run configuration: pydantic models, loaded from YAML plus `--set key=value` overrides.

Every invalid field becomes one line naming the field, the allowed range and the value given,
so a user can fix a config without reading a traceback. The resolved config is written back
out beside each run, so a run can be repeated exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from penumbra.config.ledger import LedgerConfig
from penumbra.config.overrides import apply_overrides, set_path
from penumbra.config.policy import PolicyConfig
from penumbra.data.images import DEFAULT_MAX_PIXELS
from penumbra.errors import ConfigError

SCHEMA_VERSION: Literal[1] = 1
MODEL_SCHEMES = ("builtin:", "hf:", "openai:")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PrivacyConfig(Section):
    epsilon: float = Field(1.0, gt=0, description="target ε of the whole run")
    delta: float | None = Field(
        None, gt=0, lt=1, description="δ; default 1/(N·ln N) for N private samples, must be < 1/N"
    )
    public_n: int | None = Field(
        None,
        ge=3,
        description="a public upper bound on the number of private samples; when set, δ, σ and "
        "the pre-flight use it and the exact N is never logged or printed",
    )
    allow_remote_private: bool = Field(
        False,
        description="let a captioner or embedder at a non-loopback openai: URL receive private "
        "data (recorded in the ledger)",
    )


class PEConfig(Section):
    iterations: int = Field(10, ge=1, le=1000, description="DP releases (PE iterations) T")
    population: int | Literal["auto"] = Field(
        200,
        description="candidates per iteration, or auto: as many as expect 2σ votes each "
        "(N / 2σ, N public_n when set), at most max_population",
    )
    max_population: int = Field(
        1000, ge=2, le=1_000_000, description="the most candidates population: auto may choose"
    )
    k: int = Field(1, ge=1, le=100, description="nearest candidates each private sample votes for")
    threshold: float = Field(0.0, ge=0, description="noisy counts below H are zeroed")
    selection: Literal["rank", "sample", "proportional"] = Field(
        "rank",
        description="parents of the next population: top bins, draws ∝ votes, or "
        "largest-remainder shares ∝ votes",
    )
    metric: Literal["l2", "cosine"] = "l2"
    lookahead: int = Field(
        0, ge=0, le=16, description="variations averaged per candidate embedding"
    )
    keep_selected: bool = False

    @field_validator("population", mode="before")
    @classmethod
    def _population(cls, value: object) -> object:
        if value == "auto":
            return value
        try:
            number = int(str(value))
        except ValueError:
            number = 0
        if isinstance(value, bool) or not 2 <= number <= 1_000_000:
            raise ValueError("must be auto or a number of candidates in [2, 1000000]")
        return number


# Public few-shot examples of the random API's prompts (free-form captions).
EXAMPLE_CAPTIONS = (
    "a pair of black leather ankle boots", "a light summer dress", "a grey knit sweater",
    "white canvas sneakers", "a dark wool coat", "a striped t-shirt", "a brown leather handbag",
    "a pair of blue jeans", "a white button-up shirt", "a pair of strappy sandals",
    "a long black evening gown", "a red hooded pullover", "a beige trench coat",
    "a plain white tee", "a small black shoulder bag",
)  # fmt: skip


def _fields_only(text: str, *fields: str) -> str:
    try:
        text.format(**dict.fromkeys(fields, "x"))
    except (KeyError, IndexError, ValueError):
        names = ", ".join("{" + f + "}" for f in fields)
        raise ValueError(f"{text!r}: only {names} may be in braces") from None
    return text


class PromptsConfig(Section):
    """LLM prompt templates: public text only, never built from private data (invariant 4)."""

    random: str = Field(
        "Examples of short descriptions of {domain}: {examples}. Write one new short "
        "description of {domain}, in the same style. Reply with the description only.",
        min_length=1,
    )
    examples: list[str] = Field(
        default_factory=lambda: list(EXAMPLE_CAPTIONS),
        description="public few-shot examples; a few, in a random order, fill {examples}",
    )
    categories: list[str] = Field(
        default_factory=list,
        description="public category words (e.g. class names): the random API writes about "
        "each in equal shares, and a caption naming none of them is off-domain and retried",
    )
    attributes: list[str] = Field(
        default_factory=list,
        description="public attribute words (colours, tones, materials) paired at random with "
        "the categories in the random API's prompts",
    )
    keep_attributes: bool = Field(
        False,
        description="a variation keeps the attribute words its parent names (e.g. a tone), so "
        "the votes, not the LLM's drift, decide how much of each attribute the population holds",
    )
    class_words: dict[str, str] | None = Field(
        None,
        description="labelled runs: the public words a class's candidates are written about "
        "(e.g. {mel: a melanoma}); default: the class name",
    )
    steer: str = Field(
        "It must describe {subject}.",
        description="added to the random prompt when categories/attributes are given",
    )
    variation: str = Field(
        "Change one or two words in this description of {domain}. Reply with the new "
        "description only.\nDescription: {caption}\nNew description:",
        min_length=1,
    )
    slots: dict[str, list[str]] | None = Field(
        None,
        description="slot-form captions (spti.slot_api): public words per slot in caption order "
        "('' = the slot may be left out); a variation changes one slot, the LLM picking the word",
    )
    templates: list[str] = Field(
        default_factory=lambda: ["a photo of {item}", "{item}", "a picture of {item}"],
        min_length=1,
        description="slot form: public caption templates, each holding {item} once",
    )
    slot_variation: str = Field(
        "Here is a description of {domain}: {caption}. Suggest a different {slot} for it. "
        "Reply with the {slot} only.",
        min_length=1,
        description="slot form: the LLM's prompt to pick a slot's new word ({caption}, {slot})",
    )

    @field_validator("templates", "slot_variation")
    @classmethod
    def _braces(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, str):
            return _fields_only(value, "domain", "caption", "slot")
        for template in value:
            if template.count("{item}") != 1:
                raise ValueError(f"template {template!r} must hold {{item}} exactly once")
            _fields_only(template, "item")
        if len(set(value)) != len(value):
            raise ValueError("a template is listed twice")
        return value

    @field_validator("slots")
    @classmethod
    def _words_in_slots(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if value is not None and not value:
            raise ValueError("name at least one slot, or remove prompts.slots")
        for name, words in (value or {}).items():
            if not any(w.strip() for w in words):
                raise ValueError(f"slot {name!r} needs at least one word")
            if len(set(words)) != len(words):
                raise ValueError(f"slot {name!r} lists a word twice")
            if any(w != " ".join(w.split()) for w in words):
                raise ValueError(f"slot {name!r}: a word has extra spaces ('' leaves it out)")
        return value

    max_words: int = Field(12, ge=3, le=200)
    max_new_tokens: int = Field(32, ge=4, le=1024)
    temperature: float = Field(0.9, ge=0.0, le=2.0)
    retries: int = Field(3, ge=0, le=20)


class OpenAIConfig(Section):
    api_key_env: str = Field("OPENAI_API_KEY", min_length=1)
    timeout: float = Field(60.0, gt=0, le=3600, description="seconds per request")
    max_retries: int = Field(5, ge=0, le=20)
    max_concurrency: int = Field(8, ge=1, le=256)


class ModelsConfig(Section):
    text_generator: str = "builtin:smollm2-135m"
    text_embedder: str = "builtin:minilm-l6"
    image_embedder: str = "builtin:effnet-lite0"
    image_generator: str = "builtin:fashion-t2i"
    final_image_generator: str | None = Field(
        None, description="a larger generator for the final render; default image_generator"
    )
    captioner: str = "builtin:label-captioner"
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-URI backend options, e.g. {hf:...: {steps: 30}}"
    )
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig)

    @field_validator(
        "text_generator",
        "text_embedder",
        "image_embedder",
        "image_generator",
        "final_image_generator",
        "captioner",
    )
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(MODEL_SCHEMES):
            raise ValueError(
                "must be a model URI: builtin:NAME, hf:REPO_OR_PATH or openai:MODEL@BASE_URL"
            )
        return value

    def options_for(self, uri: str) -> dict[str, Any]:
        """Backend options for one URI: the openai transport settings plus per-URI options."""
        options: dict[str, Any] = {}
        if uri.startswith("openai:"):
            options.update(self.openai.model_dump())
        options.update(self.options.get(uri, {}))
        return options


class DataConfig(Section):
    on_unreadable: Literal["skip", "fail"] = "skip"
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, le=10**10)
    labels: Literal["folders", "metadata"] | None = Field(
        None,
        description="labelled private set: class subfolders, or the label column of the "
        "folder's imagefolder metadata.jsonl; PE then runs per class (parallel composition)",
    )
    classes: list[str] | None = Field(
        None,
        description="the public class names (an integer label indexes this list); default: "
        "the folder names or label values, which are then published in the run",
    )

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if len(value) < 1 or any(not name.strip() for name in value):
                raise ValueError("must be a non-empty list of non-empty class names")
            if len(set(value)) != len(value):
                raise ValueError("class names must be distinct")
        return value


class ContentCredentialsConfig(Section):
    """C2PA signing material for labelling synthetic images as made by a trained model."""

    cert: Path = Field(description="PEM certificate chain, leaf first (ES256)")
    key: Path = Field(description="the leaf's PKCS#8 PEM EC P-256 private key")
    tsa_url: str | None = Field(None, description="RFC 3161 time-stamp authority, if any")


class OutputConfig(Section):
    num_images: int = Field(100, ge=1, le=10_000_000)
    selection: Literal["proportional", "sample", "rank"] = Field(
        "proportional",
        description="how the final set is drawn from the last DP histogram: proportional "
        "(largest-remainder shares of num_images), sample (draws ∝ votes) or rank",
    )
    final: Literal["variations", "draws"] = Field(
        "variations",
        description="the final set: variations (PE's final population: each output one fresh "
        "LLM variation of a parent drawn from the last DP histogram, so outputs are distinct) "
        "or draws (the selected captions themselves, repeats rendered with other seeds)",
    )
    image_size: int = Field(256, ge=8, le=4096, description="side of the square output images")
    image_format: Literal["png", "jpg", "webp"] = "png"
    content_credentials: ContentCredentialsConfig | None = Field(
        None, description="sign every synthetic image with C2PA (needs penumbra[c2pa])"
    )
    class_fractions: dict[str, float] | None = Field(
        None,
        description="labelled runs: each class's public share of the outputs (summing to 1); "
        "default: a DP release of the class counts, accounted in ε",
    )

    @field_validator("class_fractions")
    @classmethod
    def _fractions(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            if not value or any(not 0 <= f <= 1 for f in value.values()):
                raise ValueError("must map class names to fractions in [0, 1]")
            if abs(sum(value.values()) - 1.0) > 1e-6:
                raise ValueError(f"fractions must sum to 1 (they sum to {sum(value.values()):g})")
        return value


class ComputeConfig(Section):
    """Where the heavy stages run. Not part of what a run computes: the same run gives the same
    candidates, renders, votes and outputs on either engine, so it is left out of the config
    hash and a run started locally may be resumed on a cluster (or the other way)."""

    engine: Literal["local", "ray"] = Field(
        "local", description="local: this process; ray: a Ray cluster (pip install penumbra[ray])"
    )
    address: str = Field(
        "auto",
        description="auto (the running cluster Ray finds), local (a private one-machine "
        "instance for this run), HOST:PORT or ray://HOST:PORT",
    )
    workers: int | None = Field(
        None, ge=1, le=100_000,
        description="model actors per model and vote-count shards; default: the cluster's CPUs "
        "(its GPUs / gpus_per_model when that is set)",
    )  # fmt: skip
    gpus_per_model: float = Field(
        0.0, ge=0.0, le=8.0, description="GPUs each model actor reserves (fractions share one)"
    )
    cpus_per_worker: int | None = Field(
        None, ge=1, le=256,
        description="torch threads per model actor (default 1); set, it also fixes this "
        "process's threads on engine: local. Float results depend on the thread count (about "
        "1e-5 on EfficientNet between 1 and 2), so runs with the same value are bit-identical "
        "on any engine and any number of workers",
    )  # fmt: skip
    batch_size: int = Field(
        64, ge=1, le=100_000, description="items per task (images to embed, captions to render)"
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value in ("auto", "local"):
            return value
        host_port = value.removeprefix("ray://")
        host, sep, port = host_port.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must be auto, local, HOST:PORT or ray://HOST:PORT (got {value!r})")
        return value


class RunConfig(Section):
    schema_version: Literal[1] = SCHEMA_VERSION
    domain: str = Field(
        "a photo", min_length=1, description="public description of the data (public text only)"
    )
    modality: Literal["image", "text"] = Field(
        "image", description="private data: image folders, or texts (JSONL / .txt files)"
    )
    voting: Literal["image", "text"] = "image"
    seed: int | None = Field(
        None, ge=0, description="seeds generation only; DP noise is always cryptographic"
    )
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    pe: PEConfig = Field(default_factory=PEConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)


def _fields_at(loc: Sequence[Any]) -> list[str] | None:
    model: Any = RunConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return list(model.model_fields)


def problem_lines(error: ValidationError, source: str) -> list[str]:
    lines = []
    for item in error.errors():
        loc = [p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        where = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _fields_at(loc[:-1])
            hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{source}: {where}: unknown field{hint}")
            continue
        message = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        shown = "" if isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"{source}: {where}: {message}{shown}")
    return lines


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text; save the config as UTF-8") from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({e.problem})") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, not a list/value")
    return data


def load_config(
    path: Path | str | None = None,
    overrides: Sequence[str] = (),
    *,
    extra: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Resolve file < `extra` (CLI options such as --epsilon) < `--set` overrides."""
    source = str(path) if path is not None else "config"
    data = apply_overrides(read_yaml(Path(path)) if path is not None else {}, ())
    for dotted, value in (extra or {}).items():
        if value is not None:
            set_path(data, dotted.split("."), value, origin=f"option {dotted}")
    data = apply_overrides(data, overrides)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(*problem_lines(e, source)) from None


def config_to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def write_config(config: RunConfig, path: Path | str) -> None:
    """Write the resolved config (atomically: a run must never point at a half-written file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(config_to_yaml(config), encoding="utf-8")
    tmp.replace(target)


def config_hash(config: RunConfig) -> str:
    """SHA-256 of the canonical JSON of a resolved config (what the ledger records).

    Unset (None) fields are left out, so a release that adds an optional field does not
    change the hash of runs started before it (their --resume and verify keep working).
    `compute` and `ledger` are left out too: where a run computes, and which witnesses cosign
    its checkpoints (checked with the keys an auditor brings), do not change what it computes.
    Nor is `policy`: its checks post-process the final renders and the ledger's `policy`
    entry records exactly what was applied (and a stricter policy may be set on resume)."""
    canonical = json.dumps(
        config.model_dump(mode="json", exclude_none=True, exclude={"compute", "ledger", "policy"}),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
