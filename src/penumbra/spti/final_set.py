"""The final set on disk: the DP captions rendered into synthetic/ (an imagefolder, each output
its own seed, written atomically), their C2PA labels, or Aug-PE's texts as JSONL; and the check
that a synthetic/ kept from before a crash is the render of the releases the ledger holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image
from rich.progress import Progress

from penumbra.compute.engine import Engine, LocalEngine, batched
from penumbra.config import ContentCredentialsConfig
from penumbra.data.imagefolder import read_imagefolder_metadata, write_imagefolder
from penumbra.durable import atomic_write_bytes
from penumbra.errors import PenumbraError
from penumbra.models.protocols import ImageGenerator
from penumbra.pe.evolve import RunStateError
from penumbra.provenance.policy import OutputPolicy, PolicyLog, check_render, policy_settings
from penumbra.spti.render import generate_images


def label_outputs(out: Path, credentials: ContentCredentialsConfig, *, mark: str) -> None:
    """C2PA-label every synthetic image before the ledger records its hash. A list of the
    files already labelled (under cache/) makes a resumed run skip them: a second manifest
    would not validate as ours."""
    from penumbra.anonymize.credentials import label_synthetic

    done_path = out / "cache" / "c2pa-labelled.json"
    done: list[str] = json.loads(done_path.read_text()) if done_path.exists() else []
    for path in sorted((out / "synthetic").iterdir()):
        if path.suffix == ".jsonl" or path.name in done:
            continue
        label_synthetic(path, path, signer_cert=credentials.cert, signer_key=credentials.key,
                        tsa_url=credentials.tsa_url, run_mark=mark)  # fmt: skip
        done.append(path.name)
        done_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(done_path, json.dumps(done).encode())


RETRY_STRIDE = 7_919_000_003  # attempt a of output j renders with seed + j + a * stride


def final_render(
    out: Path,
    generator: ImageGenerator,
    outputs: dict[str, list[Any]],
    seed: int,
    image_format: str,
    progress: Progress,
    task: Any,
    *,
    engine: Engine | None = None,
    batch_size: int = 32,
    classes: list[str] | None = None,
    policy: OutputPolicy | None = None,
) -> None:
    """Render the DP captions (one seed per output) into synthetic/, atomically. A labelled
    run's rows carry `label` (the class number) and `class_name`, which `datasets`'
    imagefolder loader returns as columns.

    With a `policy`, each render is marked and checked before it is written; one the policy
    withholds is rendered again from the same caption with the next seed (post-processing of
    the same DP release), up to `max_attempts` times, and cache/policy.json records what was
    withheld before synthetic/ appears."""
    target = out / "synthetic"
    log_path = out / "cache" / "policy.json"
    if target.exists() and (target / "metadata.jsonl").exists():
        check_rendered(target, outputs)  # rendered before a crash, from these releases?
        if policy is None or _logged_policy(log_path) == policy_settings(policy):
            return  # the folder only appears once complete
    engine = engine if engine is not None else LocalEngine()
    (out / "cache" / "c2pa-labelled.json").unlink(missing_ok=True)  # labels of older files
    captions = outputs["payload"]
    base = [seed * 1_000_003 + j for j in range(len(captions))]  # output j's own seed
    batches = batched(list(zip(captions, base, strict=True)), batch_size)
    log = PolicyLog()

    def checked(j: int, image: Image.Image) -> tuple[Image.Image, dict[str, Any]]:
        assert policy is not None
        for attempt in range(policy.max_attempts):
            if attempt:
                job = [(captions[j], base[j] + attempt * RETRY_STRIDE)]
                image = generate_images(generator, job)[0]
            result = check_render(image, policy, image_format)
            if result.reason is None:
                log.blurred += result.blurred
                log.unmarked += result.fields["watermark"] is None
                return result.image, {**result.fields, "attempt": attempt}
            log.withheld.append(result.withheld_row(j, attempt))
        raise PolicyError(
            f"output {j}: withheld by policy in all {policy.max_attempts} renders (last: "
            f"{log.withheld[-1]['reason']}); relax policy: or raise policy.max_attempts, then "
            "--resume"
        )

    def items() -> Iterator[tuple[Image.Image, dict[str, Any]]]:
        j = 0
        for images in engine.map(generate_images, batches, model=generator):
            for image in images:
                chain = outputs["lineage"][j]
                row = {
                    "caption": captions[j],
                    "iteration": outputs["iteration"][j],
                    "candidate_id": outputs["id"][j],
                    "parent_chain": chain,
                }
                if classes is not None:
                    label = outputs["label"][j]
                    row.update({"label": label, "class_name": classes[label]})
                if policy is not None:
                    image, fields = checked(j, image)
                    row.update(fields)
                yield image, row
                j += 1
            progress.update(task, advance=len(images))
        if policy is not None:  # before synthetic/ appears: its presence means both exist
            record = {"policy": policy_settings(policy), "log": asdict(log)}
            log_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(log_path, json.dumps(record).encode())

    write_imagefolder(target, items(), image_format=image_format, overwrite=True)


class PolicyError(PenumbraError):
    """An output the policy withholds however often it is rendered again."""


def _logged_policy(path: Path) -> Any:
    try:
        return json.loads(path.read_text())["policy"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_policy_log(out: Path) -> PolicyLog:
    """What the final render's policy withheld, blurred and left unmarked (cache/policy.json,
    written before synthetic/ appeared)."""
    try:
        return PolicyLog(**json.loads((out / "cache" / "policy.json").read_text())["log"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunStateError(
            f"{out / 'cache' / 'policy.json'}: missing or damaged ({e.__class__.__name__}) "
            "while synthetic/ exists; delete synthetic/ and --resume to render it again"
        ) from None


def check_rendered(target: Path, outputs: dict[str, list[Any]]) -> None:
    """An existing synthetic/ must be the render of the outputs the ledger's releases select
    (same candidates, captions and labels, in order): otherwise it came from other releases,
    and logging it under these would pass old outputs off as the new ones."""
    rows = read_imagefolder_metadata(target)
    have = [(r.get("candidate_id"), r.get("caption"), r.get("label")) for r in rows]
    labels = outputs.get("label") or [None] * len(outputs["id"])
    want = list(zip(outputs["id"], outputs["payload"], labels, strict=True))
    if have != want:
        raise RunStateError(
            f"{target}: holds outputs of other releases than the ledger's (candidates or "
            "captions differ): the run folder was modified; restore it or start a new run"
        )


def write_texts(out: Path, outputs: dict[str, list[Any]]) -> None:
    """DP synthetic texts (Aug-PE) as JSONL with their lineage, written atomically."""
    lines = [
        json.dumps({"text": text, "iteration": it, "candidate_id": cid, "parent_chain": chain},
                   ensure_ascii=False, sort_keys=True)
        for text, it, cid, chain in zip(outputs["payload"], outputs["iteration"], outputs["id"],
                                        outputs["lineage"], strict=True)
    ]  # fmt: skip
    atomic_write_bytes(out / "synthetic" / "texts.jsonl", ("\n".join(lines) + "\n").encode())
