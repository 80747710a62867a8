"""`penumbra verify`: check a run's ledger without any private data.

Checks, in order: every line is an untorn canonical JSON entry; every checkpoint is signed by
the expected key; each checkpoint's root is the Merkle root of the entries it covers and is
consistent with the previous checkpoint (RFC 9162 consistency proof); the newest checkpoint
covers every entry and each entry's inclusion proof verifies; ε recomputed from the logged σ,
iterations and δ with penumbra.privacy matches every claim; no release used a fixed noise seed;
multi-holder runs: every checkpoint is co-signed by each aggregator and the secure aggregation
rounds reconcile with the releases (penumbra.ledger.verify_mpc); every output file's hash is in
the log, no unlisted file sits in synthetic/, every output is a candidate the last release
selected and their number is run_end's. Labelled (class-conditional) runs, whose run_start
names `classes`, are accounted per class with parallel composition and the DP class-count
release, and each output must come from the last release of its own class, in the numbers the
class counts allocate (penumbra.ledger.verify_classes); a run that names no classes must carry
no class counts and no class labels.

Who signed (DESIGN.md invariant 10): a signature proves who signed only if the key came from
somewhere else than the run. Without `pubkey` (the key the data holder published) the run's own
`ledger/pubkey` is used: that proves integrity, not the signer, and the report says so
(`signer_authenticated` False); likewise for the aggregators' co-signatures without
`cosigners`. `penumbra verify` then exits 3 rather than 0.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from penumbra.errors import PenumbraError
from penumbra.ledger.log import (
    LedgerError,
    canonical,
    is_checkpoint_name,
    ledger_dir,
    read_entry_lines,
)
from penumbra.ledger.merkle import (
    consistency_proof_from_hashes,
    inclusion_proof_from_hashes,
    leaf_hash,
    root_from_hashes,
    verify_consistency,
    verify_inclusion,
)
from penumbra.ledger.note import Checkpoint, NoteError, parse_vkey, verify_signed_note
from penumbra.ledger.schema import entry_problem
from penumbra.ledger.tree import scan_tree
from penumbra.ledger.verify_classes import (
    check_class_accounting,
    check_class_outputs,
    check_unlabelled,
    is_labelled,
)
from penumbra.ledger.verify_mpc import check_cosigners, check_rounds, spent_aborts
from penumbra.ledger.verify_tree import (
    check_final_lineage,
    check_output_rows,
    check_release_files,
    check_release_votes,
    check_tree,
    final_population,
    outputs_as_parents,
    read_text,
)
from penumbra.models.fingerprint import file_sha256
from penumbra.privacy import discrete_gaussian_epsilon, gaussian_epsilon
from penumbra.privacy.discrete import ACCOUNTANT as DISCRETE_ACCOUNTANT

REL_TOL = 1e-9
_LINEAGE = ("label", "candidate_id", "iteration", "lineage")
_PUBKEY_FIX = "the key the data holder published (--pubkey)"
_COSIGNER_FIX = "the aggregators' published keys (--cosigner)"


@dataclass
class Failure:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class VerifyReport:
    run_dir: str
    failures: list[Failure] = field(default_factory=list)
    receipt: dict[str, Any] = field(default_factory=dict)
    signer_authenticated: bool = False
    cosigners_authenticated: bool | None = None  # None: a single-holder run, no co-signers

    @property
    def ok(self) -> bool:
        """Integrity: every check holds. Says nothing about who signed; see `authenticated`."""
        return not self.failures

    @property
    def unauthenticated(self) -> list[str]:
        """The parties whose signature was checked only against a key the run itself holds."""
        parties = [] if self.signer_authenticated else ["signer"]
        return parties + (["co-signers"] if self.cosigners_authenticated is False else [])

    @property
    def authenticated(self) -> bool:
        return not self.unauthenticated

    @property
    def status(self) -> str:
        if not self.ok:
            return "failed"
        return "verified" if self.authenticated else "unauthenticated"

    def authentication_note(self) -> str:
        """One line: whose signature is not authenticated, and which key would fix it."""
        if self.authenticated:
            cos = " and co-signers by --cosigner" if self.cosigners_authenticated else ""
            return f"signer authenticated by the key given (--pubkey){cos}"
        fixes = {"signer": _PUBKEY_FIX, "co-signers": _COSIGNER_FIX}
        missing = self.unauthenticated
        return f"{' and '.join(missing)} not authenticated: pass " + " and ".join(
            fixes[p] for p in missing
        )

    def fail(self, location: str, message: str) -> None:
        self.failures.append(Failure(location, message))

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "ok": self.ok,
            "status": self.status,
            "signer_authenticated": self.signer_authenticated,
            "cosigners_authenticated": self.cosigners_authenticated,
            "authentication": self.authentication_note(),
            "failures": [{"location": f.location, "message": f.message} for f in self.failures],
            "receipt": self.receipt,
        }


def entry_label(index: int, entry: dict[str, Any] | None) -> str:
    if entry is None:
        return f"entry {index}"
    kind = entry.get("type", "?")
    if kind == "release" and "label" in entry:
        return (
            f"entry {index} (release, class {entry['label']!r}, iteration {entry.get('iteration')})"
        )
    if kind == "release":
        return f"entry {index} (release, iteration {entry.get('iteration')})"
    return f"entry {index} ({kind})"


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def _load_entries(
    path: Path, report: VerifyReport
) -> tuple[list[bytes], list[dict[str, Any] | None]]:
    try:
        lines = read_entry_lines(path)
    except LedgerError as e:
        report.fail("ledger/entries.jsonl", e.problems[0].split(": ", 1)[1])
        data = path.read_bytes()
        lines = data.split(b"\n")[:-1]  # everything before the torn line
    entries: list[dict[str, Any] | None] = []
    for i, line in enumerate(lines):
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            report.fail(f"entry {i}", "not valid JSON (modified or corrupted)")
            entries.append(None)
            continue
        if not isinstance(entry, dict):
            report.fail(f"entry {i}", "not a JSON object")
            entries.append(None)
            continue
        problem = entry_problem(entry)
        if problem is not None:  # a channel for data penumbra never logs, or a crafted shape
            report.fail(f"entry {i}", problem)
            entries.append(None)
            continue
        if canonical(entry) != line:
            report.fail(f"entry {i}", "not in canonical JSON form (edited by hand?)")
        if entry.get("index") != i:
            report.fail(f"entry {i}", f"says it is entry {entry.get('index')} (reordered?)")
        entries.append(entry)
    return lines, entries


def _check_checkpoints(
    folder: Path, vkey_text: str, hashes: list[bytes], report: VerifyReport
) -> Checkpoint | None:
    try:
        verifier = parse_vkey(vkey_text)
    except NoteError as e:
        report.fail("public key", str(e))
        return None
    files = sorted(p for p in (folder / "checkpoints").glob("*") if is_checkpoint_name(p))
    if not files:
        report.fail("ledger/checkpoints", "no signed checkpoint")
        return None
    previous: Checkpoint | None = None
    latest: Checkpoint | None = None
    broken = False
    for path in files:
        where = f"checkpoint {path.name}"
        try:
            cp = verify_signed_note(path.read_text(encoding="utf-8"), verifier)
        except (NoteError, UnicodeDecodeError) as e:
            report.fail(where, f"signature invalid: {e}")
            continue
        if cp.size != int(path.name):
            report.fail(where, f"file name says size {int(path.name)}, note says {cp.size}")
            continue
        if cp.size > len(hashes):
            report.fail(
                where,
                f"signed a log of {cp.size} entries but the log has {len(hashes)}: "
                f"entries {len(hashes)}..{cp.size - 1} were removed (log truncated)",
            )
            continue
        if root_from_hashes(hashes[: cp.size]) != cp.root:
            if broken:
                continue  # later checkpoints fail because of the same change
            broken = True
            first_bad = previous.size if previous else 0
            span = (
                f"entry {cp.size - 1}"
                if cp.size - 1 == first_bad
                else f"one of entries {first_bad}..{cp.size - 1}"
            )
            report.fail(where, f"root does not match the log: {span} differs from what was signed")
            continue
        if previous is not None:
            proof = consistency_proof_from_hashes(hashes[: cp.size], previous.size)
            if not verify_consistency(previous.size, cp.size, previous.root, cp.root, proof):
                report.fail(where, f"not consistent with checkpoint {previous.size:08d}")
        if latest is not None and cp.origin != latest.origin:
            report.fail(where, f"origin {cp.origin!r} differs from {latest.origin!r}")
        previous = latest = cp
    if latest is not None and latest.size < len(hashes) and not broken:
        report.fail(
            f"entries {latest.size}..{len(hashes) - 1}",
            "not covered by any valid signed checkpoint (appended after signing?)",
        )
    if latest is not None:
        for i in range(latest.size):
            proof = inclusion_proof_from_hashes(hashes[: latest.size], i)
            if not verify_inclusion(hashes[i], i, latest.size, proof, latest.root):
                report.fail(f"entry {i}", "inclusion proof against the newest checkpoint fails")
    return latest


def _accountant(
    entries: list[dict[str, Any] | None],
) -> tuple[Callable[[float, int, float], float], str]:
    """The ε accountant of the run, as ε(σ in histogram units, releases, δ): for multi-holder
    runs whose aggregators add discrete Gaussian noise (an `mpc_setup` entry says so) zCDP; for
    runs that release integer votes with exact discrete Gaussian noise (run_start says
    `discrete-gaussian-pld`) that noise's exact privacy loss distribution with the logged k;
    for runs logged before either existed, the continuous Gaussian's GDP curve."""
    for e in entries:
        if e and e.get("type") == "mpc_setup" and e.get("accountant") == "discrete-gaussian-zcdp":
            from penumbra.privacy.zcdp import dgauss_epsilon

            return dgauss_epsilon, "discrete-gaussian-zcdp"
    start = next((e for e in entries if e and e.get("type") == "run_start"), None) or {}
    if start.get("accountant") == DISCRETE_ACCOUNTANT:
        k = start.get("k", 1)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            k = 1  # reported as a failure by _check_accounting

        def discrete(sigma: float, steps: int, delta: float) -> float:
            return discrete_gaussian_epsilon(sigma, steps, delta, k)

        return discrete, DISCRETE_ACCOUNTANT
    return gaussian_epsilon, "gaussian-gdp"


def _check_accounting(entries: list[dict[str, Any] | None], report: VerifyReport) -> None:
    starts = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "run_start"]
    if not starts:
        report.fail("log", "no run_start entry")
        return
    if starts[0][0] != 0 or len(starts) > 1:
        report.fail(entry_label(starts[0][0], starts[0][1]), "run_start must be entry 0, once")
    start = starts[0][1]
    epsilon_of, accountant = _accountant(entries)
    if start.get("accountant") not in (None, DISCRETE_ACCOUNTANT, "discrete-gaussian-zcdp"):
        report.fail(entry_label(0, start), f"unknown accountant {start.get('accountant')!r}")
    elif start.get("accountant") == "discrete-gaussian-zcdp" and accountant != start["accountant"]:
        report.fail(entry_label(0, start), "claims the zCDP accountant without an mpc_setup")
    k = start.get("k", 1)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        report.fail(entry_label(0, start), f"k={k!r} is not an integer >= 1")
    sigma, delta, iterations = start["sigma"], start["delta"], start["iterations"]
    n_private, target = start["n_private"], start["epsilon_target"]
    n_bound = n_private if n_private is not None else start.get("public_n")  # ≥ N when public
    if not isinstance(n_bound, int) or n_bound < 1:
        report.fail(entry_label(0, start), "neither n_private nor public_n is a count")
    elif delta >= 1.0 / n_bound:
        report.fail(entry_label(0, start), f"δ={delta:g} is not below 1/N = {1 / n_bound:g}")
    check_noise_seed(0, start, report)
    if is_labelled(start):
        per_iteration, spent, count = check_class_accounting(entries, start, report)
    else:
        check_unlabelled(entries, report)
        per_iteration, spent, count = _check_releases(entries, start, epsilon_of, report)
    _check_run_end(entries, count, spent, report)
    report.receipt.update(
        {
            "penumbra_version": start.get("penumbra_version"),
            "config_sha256": start.get("config_sha256"),
            "models": start.get("models"),
            "n_private": n_private,
            "public_n": start.get("public_n"),
            "epsilon_target": target,
            "delta": delta,
            "sigma": sigma,
            "iterations": iterations,
            "fixed_noise_seed": start.get("fixed_noise_seed"),
            "accountant": accountant,
            "epsilon_per_iteration": per_iteration,
            "epsilon_spent": spent if is_labelled(start) else (per_iteration or [0.0])[-1],
        }
    )


def _check_releases(
    entries: list[dict[str, Any] | None],
    start: dict[str, Any],
    epsilon_of: Callable[[float, int, float], float],
    report: VerifyReport,
) -> tuple[list[float], float, int]:
    """An unlabelled run's releases: iterations 0..T-1, each claim recomputed. Returns ε after
    each release, ε spent (aborted multi-holder rounds included) and the releases logged."""
    sigma, delta, iterations = start["sigma"], start["delta"], start["iterations"]
    target = start["epsilon_target"]
    planned = epsilon_of(sigma, iterations, delta)
    if planned > target * (1 + REL_TOL):
        report.fail(
            entry_label(0, start),
            f"σ={sigma:g} over {iterations} iterations gives ε={planned:.6g} > target {target:g}",
        )
    per_iteration = []
    releases = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "release"]
    integer = _accountant(entries)[1] == DISCRETE_ACCOUNTANT
    for t, (i, e) in enumerate(releases):
        label = entry_label(i, e)
        if e["iteration"] != t:
            report.fail(label, f"expected iteration {t}")
        if not (_close(e["sigma"], sigma) and _close(e["delta"], delta)):
            report.fail(label, "σ or δ differs from run_start")
        check_noise_seed(i, e, report)
        check_release_votes(i, e, start.get("k", 1), report, integer=integer)
        steps = t + 1 + spent_aborts(entries, before=i)  # aborts after shares were out
        recomputed = epsilon_of(sigma, steps, delta)
        if not _close(e["cumulative_epsilon"], recomputed):
            report.fail(
                label,
                f"claims cumulative ε={e['cumulative_epsilon']:.6g}, recomputed "
                f"ε={recomputed:.6g} from σ={sigma:g}, {steps} releases, δ={delta:g}",
            )
        if recomputed > target * (1 + REL_TOL):
            report.fail(label, f"spends ε={recomputed:.6g} > target {target:g}")
        per_iteration.append(recomputed)
    if len(releases) > iterations:
        report.fail("log", f"{len(releases)} releases logged, run_start planned {iterations}")
    steps = len(releases) + spent_aborts(entries)
    return per_iteration, epsilon_of(sigma, steps, delta) if steps else 0.0, len(releases)


def _check_run_end(
    entries: list[dict[str, Any] | None], releases: int, spent: float, report: VerifyReport
) -> None:
    ends = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "run_end"]
    if not ends:
        report.fail("log", "no run_end entry: the run did not finish (or the log was truncated)")
        return
    i, end = ends[-1]
    if end["releases"] != releases:
        report.fail(
            entry_label(i, end),
            f"claims {end['releases']} releases, the log has {releases}",
        )
    if not _close(end["epsilon_spent"], spent):
        report.fail(
            entry_label(i, end),
            f"claims ε spent = {end['epsilon_spent']:.6g}, recomputed {spent:.6g}",
        )
    after = [e.get("type") if e else None for e in entries[i + 1 :]]
    if any(kind != "files" for kind in after):
        report.fail(entry_label(i, end), "run_end is followed by entries other than files")


def check_noise_seed(index: int, entry: dict[str, Any], report: VerifyReport) -> None:
    """A fixed noise seed (a test setting) lets anyone regenerate and subtract the noise."""
    value = entry.get("fixed_noise_seed")
    if value is not False:
        report.fail(
            entry_label(index, entry),
            "noise drawn from a fixed seed: it can be regenerated and subtracted, so this "
            "release is not differentially private"
            if value is True
            else f"fixed_noise_seed is {value!r}, not false: the noise may be reproducible",
        )


def _output_ids(
    run_dir: Path, listed: dict[str, tuple[int, dict[str, Any]]], report: VerifyReport
) -> list[tuple[str, Any, Any]] | None:
    """(where, candidate id, class label or None) of every output: the image rows of `outputs`
    entries, or for a text run (which lists only synthetic/texts.jsonl) the lines of that file
    once its hash holds. None (with a receipt note) when they cannot be read."""
    rows = [
        (name, r["candidate_id"], r.get("label"))
        for name, (_, r) in listed.items()
        if "candidate_id" in r
    ]
    if rows or "synthetic/texts.jsonl" not in listed:
        return rows
    path = run_dir / "synthetic/texts.jsonl"
    if not path.is_file() or file_sha256(path) != listed["synthetic/texts.jsonl"][1]["sha256"]:
        report.receipt["outputs_note"] = "texts.jsonl missing or modified: outputs not counted"
        return None
    ids = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ids.append((f"synthetic/texts.jsonl line {n}", row["candidate_id"], row.get("label")))
        except (ValueError, TypeError, KeyError, AttributeError):
            report.fail(f"synthetic/texts.jsonl line {n}", "not a JSON row with a candidate_id")
    return ids


def _check_outputs(
    run_dir: Path,
    entries: list[dict[str, Any] | None],
    listed: dict[str, tuple[int, dict[str, Any]]],
    report: VerifyReport,
    final: dict[str, tuple[str, str]] | None,
) -> None:
    """Every output is a candidate the last release (of its class) selected, or one variation
    of such a candidate in the final population (`final`); as many as run_end says."""
    outputs = _output_ids(run_dir, listed, report)
    if outputs is None:
        return
    chosen = outputs_as_parents(outputs, final, report)  # what the last release selected
    releases = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "release"]
    start = entries[0] if entries and entries[0] and entries[0].get("type") == "run_start" else {}
    if is_labelled(start):
        check_class_outputs(entries, start, chosen, report)
    elif releases:
        i, last = releases[-1]
        selected = set(last.get("selected_ids") or [])
        for where, cid, _ in chosen:
            if cid not in selected:
                report.fail(
                    where,
                    f"candidate {cid!r} is not among those the last release "
                    f"({entry_label(i, last)}) selected: not a DP output",
                )
    elif outputs:
        report.fail("log", f"{len(outputs)} outputs but no release selected any")
    ends = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "run_end"]
    if ends:
        i, end = ends[-1]
        if end.get("num_outputs") != len(outputs):
            report.fail(
                entry_label(i, end),
                f"claims {end.get('num_outputs')!r} outputs, the outputs entries list "
                f"{len(outputs)}",
            )


def _check_files(
    run_dir: Path,
    entries: list[dict[str, Any] | None],
    report: VerifyReport,
    final: dict[str, tuple[str, str]] | None,
) -> dict[str, tuple[int, dict[str, Any]]]:
    """The outputs entries' files (name → (entry index, row)) against the disk, and the DP
    origin of every output."""
    listed: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, e in enumerate(entries):
        if e and e.get("type") == "outputs":
            for row in e["files"]:
                listed[row["file"]] = (i, row)
    for name, (i, row) in listed.items():
        path = run_dir / name
        if not path.is_file():
            report.fail(name, f"listed in entry {i} but missing")
        elif file_sha256(path) != row["sha256"]:
            report.fail(name, f"SHA-256 differs from the log (entry {i}): the file was modified")
    synthetic = run_dir / "synthetic"
    if synthetic.is_dir():
        for path in sorted(synthetic.rglob("*")):
            name = path.relative_to(run_dir).as_posix()
            if path.is_file() and name not in listed:
                report.fail(name, "in synthetic/ but not in the log (added after the run)")
    _check_outputs(run_dir, entries, listed, report, final)
    samples = [
        {"file": name, **{k: row[k] for k in _LINEAGE if k in row}}
        for name, (_, row) in list(listed.items())
        if "lineage" in row
    ][:3]
    report.receipt.update({"output_files": len(listed), "sample_lineage": samples})
    return listed


def verify_run(
    run_dir: Path | str,
    *,
    pubkey: str | None = None,
    cosigners: Sequence[str] | None = None,
) -> VerifyReport:
    """Verify a run directory. PenumbraError if it is not a run directory at all.

    `pubkey`: the run signer's verifier key as the data holder published it; `cosigners`: the
    aggregators' keys, likewise. Whatever is not given is checked against the run's own keys
    and reported as not authenticated (`report.unauthenticated`)."""
    run = Path(run_dir)
    if not run.exists():
        raise PenumbraError(f"{run}: no such run directory")
    folder = ledger_dir(run)
    entries_path = folder / "entries.jsonl"
    if not entries_path.is_file():
        raise PenumbraError(f"{run}: not a penumbra run directory (no ledger/entries.jsonl)")
    report = VerifyReport(str(run), signer_authenticated=pubkey is not None)
    key_file = folder / "pubkey"
    own_key = read_text(key_file).strip() if key_file.is_file() else ""
    vkey = pubkey.strip() if pubkey is not None else own_key
    if own_key != vkey:  # the folder's copy must be the key (one line), not a message
        report.fail("ledger/pubkey", "is not the key given with --pubkey (a replaced key?)")
    report.receipt["public_key"] = vkey
    report.receipt["public_key_source"] = (
        "given (--pubkey)"
        if pubkey is not None
        else "the run's own ledger/pubkey: proves integrity, not who signed; pass --pubkey"
    )
    lines, entries = _load_entries(entries_path, report)
    hashes = [leaf_hash(line) for line in lines]
    latest = _check_checkpoints(folder, vkey, hashes, report)
    origin = folder / "origin"
    if latest is not None and origin.is_file() and read_text(origin).strip() != latest.origin:
        report.fail("ledger/origin", "differs from the origin the checkpoints sign")
    if latest is not None:
        report.receipt["checkpoint"] = {
            "origin": latest.origin,
            "size": latest.size,
            "root": base64.b64encode(latest.root).decode(),
        }
    report.receipt["entries"] = len(lines)
    _check_accounting(entries, report)
    check_cosigners(folder, entries, report, cosigners)
    check_rounds(entries, report, _accountant(entries)[0])
    scan = scan_tree(run)  # the folder, walked once for the checks below
    final = final_population(run, entries, report, scan=scan)
    listed = _check_files(run, entries, report, final)
    # the outputs entries' files and everything in synthetic/ were checked above
    outputs = {*listed, *(n for n in scan.files if n.startswith("synthetic/"))}
    check_tree(run, entries, report, checked=outputs, scan=scan)
    payloads = check_release_files(run, entries, report, scan=scan)
    payloads.update({cid: caption for cid, (_, caption) in (final or {}).items()})
    check_final_lineage(listed, final, report)
    start = entries[0] if entries and entries[0] and entries[0].get("type") == "run_start" else {}
    classes = start.get("classes") if is_labelled(start) else None
    check_output_rows(run, entries, listed, payloads, classes, report)
    return report
