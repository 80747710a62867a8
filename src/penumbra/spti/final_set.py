"""The final set on disk: the DP captions rendered into synthetic/ (an imagefolder, each output
its own seed, written atomically), their C2PA labels, or Aug-PE's texts as JSONL; and the check
that a synthetic/ kept from before a crash is the render of the releases the ledger holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image
from rich.progress import Progress

from penumbra.compute.engine import Engine, LocalEngine, batched
from penumbra.config import ContentCredentialsConfig
from penumbra.data.imagefolder import read_imagefolder_metadata, write_imagefolder
from penumbra.durable import atomic_write_bytes
from penumbra.models.protocols import ImageGenerator
from penumbra.pe.evolve import RunStateError
from penumbra.spti.render import generate_images


def label_outputs(out: Path, credentials: ContentCredentialsConfig) -> None:
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
                        tsa_url=credentials.tsa_url)  # fmt: skip
        done.append(path.name)
        done_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(done_path, json.dumps(done).encode())


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
) -> None:
    """Render the DP captions (one seed per output) into synthetic/, atomically. A labelled
    run's rows carry `label` (the class number) and `class_name`, which `datasets`'
    imagefolder loader returns as columns."""
    target = out / "synthetic"
    if target.exists() and (target / "metadata.jsonl").exists():
        check_rendered(target, outputs)  # rendered before a crash, from these releases?
        return  # the folder only appears once complete
    engine = engine if engine is not None else LocalEngine()
    captions = outputs["payload"]
    jobs = [(c, seed * 1_000_003 + j) for j, c in enumerate(captions)]  # output j's own seed
    batches = batched(jobs, batch_size)

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
                yield image, row
                j += 1
            progress.update(task, advance=len(images))

    write_imagefolder(target, items(), image_format=image_format, overwrite=True)


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
