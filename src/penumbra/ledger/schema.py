"""The fields each kind of ledger entry may carry, and nothing more.

A signed entry is a channel: a field penumbra never writes ("clean_votes", a list of private
file names) would be signed and published with the rest. The ledger signs an unsigned trailing
entry on resume (a crash between an append and its checkpoint) only if it is one penumbra
could have written, and `verify` fails an entry with a field its kind does not have. Entry
kinds of the multi-holder protocol (`mpc_*`) are checked by `verify_mpc`; a kind unknown here
is refused.
"""

from __future__ import annotations

from typing import Any

COMMON = frozenset({"schema", "type", "index"})
FIELDS: dict[str, frozenset[str]] = {
    "run_start": frozenset({
        "penumbra_version", "config_sha256", "models", "n_private", "public_n", "neighbouring",
        "accountant", "k", "remote_private", "epsilon_target", "delta", "sigma", "iterations",
        "seed_commitment", "fixed_noise_seed", "final", "classes", "class_counts",
        "class_fractions", "composition",
    }),
    "class_counts": frozenset({
        "noisy_counts", "sigma", "k", "delta", "cumulative_epsilon", "fixed_noise_seed",
        "accountant",
    }),
    "release": frozenset({
        "label", "iteration", "candidate_hash", "k", "threshold", "sigma", "noisy_histogram",
        "selected_ids", "cumulative_epsilon", "delta", "fixed_noise_seed", "accountant",
        "noisy_votes",
    }),
    "outputs": frozenset({"files"}),
    "files": frozenset({"stage", "files", "removed"}),
    "run_end": frozenset({"epsilon_spent", "delta", "releases", "num_outputs"}),
    "policy": frozenset({
        "watermark", "pdq", "blocklist", "faces", "max_attempts", "withheld", "blurred",
        "unmarked",
    }),
}  # fmt: skip
# what the output policy records of each output (outputs rows and metadata.jsonl alike)
POLICY_ROW_FIELDS = ("pdq", "faces", "watermark", "attempt")
OUTPUT_ROW = frozenset(
    {"file", "sha256", "candidate_id", "iteration", "lineage", "label", *POLICY_ROW_FIELDS}
)
# a withheld render is named by its output slot, its attempt and the SHA-256 of its pixels
WITHHELD_ROW = frozenset({"output", "attempt", "reason", "sha256"})
FILES_ROW = frozenset({"file", "sha256", "size"})
MPC_PREFIX = "mpc_"


def entry_problem(entry: Any) -> str | None:
    """Why `entry` is not one penumbra writes (a field or row field its kind lacks, a kind it
    never writes), or None. `mpc_*` kinds pass here: their own checks read them."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    kind = entry.get("type")
    if isinstance(kind, str) and kind.startswith(MPC_PREFIX):
        return None
    allowed = FIELDS.get(kind) if isinstance(kind, str) else None
    if allowed is None:
        return f"an entry of kind {kind!r}, which penumbra never writes"
    extra = sorted(set(entry) - COMMON - allowed)
    if extra:
        return f"a {kind} entry with fields penumbra never writes: {', '.join(extra[:5])}"
    if kind == "release":
        label, iteration = entry.get("label"), entry.get("iteration")
        ids = entry.get("selected_ids")
        if isinstance(label, list | dict) or isinstance(iteration, list | dict):
            return "a release entry whose label or iteration is not a number"
        if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
            return "a release entry whose selected_ids are not a list of candidate ids"
    if kind in ("outputs", "files"):
        rows = entry.get("files")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return f"a {kind} entry whose files are not a list of objects"
        allowed_row = OUTPUT_ROW if kind == "outputs" else FILES_ROW
        for row in rows:
            extra = sorted(set(row) - allowed_row)
            if not isinstance(row.get("file"), str):
                return f"a {kind} row without a file path"
            if extra:
                return f"a {kind} row with fields penumbra never writes: {', '.join(extra[:5])}"
    if kind == "policy":
        withheld = entry.get("withheld")
        if not isinstance(withheld, list) or not all(isinstance(r, dict) for r in withheld):
            return "a policy entry whose withheld is not a list of objects"
        for row in withheld:
            extra = sorted(set(row) - WITHHELD_ROW)
            if extra:
                return f"a withheld row with fields penumbra never writes: {', '.join(extra[:5])}"
    if kind == "files":
        removed = entry.get("removed")
        if not isinstance(removed, list) or not all(isinstance(n, str) for n in removed):
            return "a files entry whose removed is not a list of paths"
    return None
