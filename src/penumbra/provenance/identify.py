"""`penumbra identify`: does a stray image carry a penumbra mark, which run's, and is it one
of that run's outputs byte for byte?

The mark names a run by 32 bits of its verifier key, so naming the run needs its folder
(`--ledger RUN`): the folder's ledger/pubkey gives the identifier and its outputs entries the
hashes. Runs signed with one key (`--signing-key`, a token) share the identifier; the folder
holding the file's bytes is named first. identify names; it does not prove: `penumbra verify
--pubkey` proves a folder."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from penumbra.errors import ConfigError
from penumbra.provenance.mark import run_mark
from penumbra.provenance.watermark import read_mark


@dataclass(frozen=True)
class KnownRun:
    folder: Path
    mark: str
    outputs: dict[str, str]  # sha256 → output file name


def load_run(folder: Path) -> KnownRun:
    """A run folder's mark and output hashes; ConfigError naming `--ledger` if it is none."""
    pubkey = folder / "ledger" / "pubkey"
    entries = folder / "ledger" / "entries.jsonl"
    try:
        vkey = pubkey.read_text(encoding="utf-8").strip()
        lines = entries.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise ConfigError(
            f"--ledger {folder}: not a penumbra run folder (needs ledger/pubkey and "
            "ledger/entries.jsonl)"
        ) from None
    outputs: dict[str, str] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a damaged line: `verify` names it; identify only reads hashes
        if isinstance(entry, dict) and entry.get("type") == "outputs":
            for row in entry.get("files") or []:
                if isinstance(row, dict) and isinstance(row.get("sha256"), str):
                    outputs[row["sha256"]] = str(row.get("file"))
    return KnownRun(folder, run_mark(vkey), outputs)


def identify_file(path: Path, runs: list[KnownRun]) -> dict[str, Any]:
    """The issue's JSON object for one file; `error` is set (and nothing else) when it cannot
    be read as an image."""
    result: dict[str, Any] = {"file": str(path), "marked": False, "mark": None, "run": None,
                              "output": None}  # fmt: skip
    try:
        if not path.is_file():
            raise OSError(2, "not a file")
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        reading = read_mark(image)
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except Exception as e:  # PIL and the decoders raise many kinds; each file gets its line
        reason = getattr(e, "strerror", None) or str(e).split("\n")[0][:120] or type(e).__name__
        return {**result, "error": f"not a readable image ({reason})"}
    if reading.mark is None:
        return result
    result.update({"marked": True, "mark": reading.mark})
    # runs signed with one key share its mark: name the one holding these bytes, if any
    named = [run for run in runs if run.mark == reading.mark]
    holding = [run for run in named if digest in run.outputs]
    if holding:
        result.update({"run": str(holding[0].folder), "output": holding[0].outputs[digest]})
    elif named:
        result["run"] = str(named[0].folder)
    return result


def describe(result: dict[str, Any]) -> str:
    """One line for a person."""
    name = result["file"]
    if "error" in result:
        return f"{name}: {result['error']}"
    if not result["marked"]:
        return f"{name}: no penumbra mark"
    if result["run"] is None:
        return f"{name}: penumbra mark {result['mark']} (no --ledger run given has this key)"
    where = f"output {result['output']}" if result["output"] else "not byte-identical to an output"
    return f"{name}: penumbra mark {result['mark']}: run {result['run']}, {where}"
