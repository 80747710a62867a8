"""What a resumed run keeps of the folder it finds: only what the signed ledger vouches for.

Each `files` entry signs whatever the run folder holds when it is written, so before a resume
writes one, every published file the ledger's tree does not list as it is now must be one
penumbra itself can vouch for. Otherwise a resume would sign a private image dropped into
`renders/`, a "clean votes" file in `candidates/`, or a private image written over
`synthetic/000000.png` before the outputs were logged. Such a file is:
- checked against the ledger later in the run, and kept: a release file, a population a logged
  release voted on (its candidate hash), a PE state file, run.yaml (the config hash);
- made again, and removed now: caches and renders, the report, an evaluation, a population no
  release voted on yet, and all of `synthetic/` while no outputs are logged;
- anything else: refused, naming it (the holder removes it or restores the folder).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from penumbra.errors import PenumbraError
from penumbra.ledger.log import Ledger
from penumbra.ledger.tree import PublishedTree, unlogged_files

_PE_FILE = re.compile(
    r"candidates/(?:class-(\d+)/)?(?:(state)\.json|(release)-\d+\.json|population-(\d+)\.parquet)"
)
_REMADE = ("renders/", "cache/", "evaluation/")
_REMADE_FILES = frozenset({"report.html", "evaluation.json"})


def clear_unlogged(out: Path, ledger: Ledger, tree: PublishedTree | None = None) -> list[str]:
    """Remove what the run makes again, refuse what it cannot vouch for (module docstring);
    returns the removed paths."""
    released = {(e.get("label"), e.get("iteration")) for _, e in ledger.find("release")}
    outputs_logged = any(True for _ in ledger.find("outputs"))
    remove: list[str] = []
    refused: list[str] = []
    for rel in unlogged_files(out, ledger.entries(), tree):
        pe = _PE_FILE.fullmatch(rel)
        if (
            rel in _REMADE_FILES
            or rel.startswith(_REMADE)
            or (rel.startswith("synthetic/") and not outputs_logged)
        ):
            remove.append(rel)
        elif rel == "run.yaml" or (pe is not None and (pe[2] or pe[3])):
            continue
        elif pe is not None and pe[4] is not None:
            label = int(pe[1]) if pe[1] is not None else None
            if (label, int(pe[4])) not in released:
                remove.append(rel)
        else:
            refused.append(rel)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise PenumbraError(
            f"{out / refused[0]}{more}: not a file penumbra wrote for this run (the ledger does "
            "not list it as it is); a resume would sign it into the published tree: remove "
            "it or restore the run folder (penumbra verify names every such file)"
        )
    if any(rel.startswith("synthetic/") for rel in remove):
        shutil.rmtree(out / "synthetic")  # rendered again, whole, from the logged releases
    for rel in remove:
        (out / rel).unlink(missing_ok=True)
    return remove
