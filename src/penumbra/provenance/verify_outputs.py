"""What `penumbra verify` adds for the outputs: every value the ledger's `policy` entry and
outputs rows record (PDQ hash, face count, watermark) is recomputed from the published file,
each output must pass the policy the run stated, and C2PA credentials, where the run made
them, are read back with the official reader and must bind the file and name the run.

These checks sit above the ledger (they need the face detector, PDQ and the watermark), so
`ledger.verify.verify_run` takes them as a callable; `penumbra verify` passes them in."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from penumbra.anonymize.detect import centerface_model_path
from penumbra.errors import PenumbraError
from penumbra.ledger.schema import POLICY_ROW_FIELDS
from penumbra.ledger.tree import run_config_section
from penumbra.ledger.verify_report import VerifyReport, entry_label
from penumbra.models.fingerprint import file_sha256
from penumbra.provenance import pdq
from penumbra.provenance.mark import run_mark
from penumbra.provenance.policy import carried_mark, count_faces

Entries = list[dict[str, Any] | None]
OutputCheck = Callable[[Path, Entries, VerifyReport], None]
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def output_checks(blocklist: Path | None = None) -> OutputCheck:
    """The check `verify_run` runs after its own; `blocklist`: the PDQ list the auditor holds
    (the run names its list by digest only: such lists are shared under agreement)."""
    listed = pdq.load_blocklist(blocklist, field="--blocklist") if blocklist else None

    def check(run: Path, entries: Entries, report: VerifyReport) -> None:
        check_policy(run, entries, report, blocklist=listed)
        check_credentials(run, entries, report)

    return check


_OUTPUT_PATH = re.compile(r"synthetic/[^/\\]+")


def _image_rows(entries: Entries) -> list[dict[str, Any]]:
    """The outputs rows of synthetic images (a text run's texts.jsonl has no candidate)."""
    return [
        row for entry in entries if entry and entry.get("type") == "outputs"
        for row in entry.get("files") or [] if isinstance(row, dict) and "candidate_id" in row
        and not str(row.get("file", "")).endswith(".jsonl")
    ]  # fmt: skip


def _open(run: Path, name: str) -> Image.Image | str:
    """The output's single frame as RGB, or why it cannot be re-checked."""
    if not _OUTPUT_PATH.fullmatch(name) or ".." in name:
        return "not a file directly under synthetic/"
    if not name.lower().endswith(_IMAGE_SUFFIXES):
        return "not an image format penumbra writes (png, jpg, webp)"
    try:
        with Image.open(run / name) as image:
            if getattr(image, "n_frames", 1) != 1:
                return "more than one frame: only a still image can be re-checked"
            return image.convert("RGB")
    except Exception as e:  # PIL raises many kinds (OSError, bombs, SyntaxError, ValueError)
        return f"cannot be decoded as an image ({e.__class__.__name__})"


def _settings_problem(policy: dict[str, Any]) -> str | None:
    """Why a policy entry's settings are not ones penumbra writes (wrong types or ranges:
    a face threshold of 5 would pass every face), or None."""
    mark, faces, listed = policy.get("watermark"), policy.get("faces"), policy.get("blocklist")
    if mark is not None and not (isinstance(mark, dict) and isinstance(mark.get("mark"), str)):
        return "watermark is neither off (null) nor settings naming a mark"
    if faces is not None:
        threshold = faces.get("threshold") if isinstance(faces, dict) else None
        if not (
            isinstance(faces, dict)
            and faces.get("action") in ("withhold", "blur", "allow")
            and isinstance(threshold, int | float)
            and not isinstance(threshold, bool)
            and 0 < threshold < 1
            and isinstance(faces.get("weights_sha256"), str)
        ):
            return "faces settings are not an action, a threshold in (0, 1) and weights"
    if listed is not None:
        limit = listed.get("threshold") if isinstance(listed, dict) else None
        if not (
            isinstance(listed, dict)
            and isinstance(listed.get("sha256"), str)
            and isinstance(limit, int)
            and not isinstance(limit, bool)
            and 0 <= limit <= 128
        ):
            return "blocklist settings are not a digest and a threshold in [0, 128]"
    withheld = policy.get("withheld")
    if not isinstance(withheld, list) or not all(
        isinstance(w, dict)
        and isinstance(w.get("output"), int)
        and isinstance(w.get("attempt"), int)
        for w in withheld
    ):
        return "withheld is not a list of (output, attempt) rows"
    if not isinstance(policy.get("unmarked"), int):
        return "unmarked is not a count"
    return None  # fmt: skip


def check_policy(
    run: Path, entries: Entries, report: VerifyReport, *, blocklist: pdq.Blocklist | None
) -> None:
    """The policy entry and every output against it, recomputed from the files."""
    found = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "policy"]
    rows = _image_rows(entries)
    if not found:
        stray = [r["file"] for r in rows if set(POLICY_ROW_FIELDS) & set(r)]
        if stray:
            report.fail(stray[0], "carries policy results, but the ledger holds no policy entry")
        elif rows and run_config_section(run, "policy"):  # run.yaml of a penumbra with policies
            report.fail("ledger", "no policy entry, though run.yaml has a policy: section")
        report.receipt["policy"] = "none recorded (a run made before output policies)"
        return
    index, policy = found[0]
    where = entry_label(index, policy)
    if len(found) > 1:
        report.fail(entry_label(*found[1]), "a second policy entry")
    first_outputs = next((i for i, e in enumerate(entries) if e and e.get("type") == "outputs"),
                         None)  # fmt: skip
    if first_outputs is not None and first_outputs < index:
        report.fail(where, "recorded after the outputs it is about")
    problem = _settings_problem(policy)
    if problem is not None:
        report.fail(where, problem)
        return
    mark = _expected_mark(policy, report, where)
    faces = policy.get("faces")
    if faces is not None and faces["weights_sha256"] != file_sha256(centerface_model_path()):
        report.fail(where, "the face detector installed here is not the one the run used "
                           "(weights differ): faces cannot be re-counted")  # fmt: skip
        faces = None
    listed = policy.get("blocklist")
    if blocklist is not None and (listed is None or listed["sha256"] != blocklist.sha256):
        report.fail("--blocklist", "is not the blocklist the run's policy names (digest differs)")
        blocklist = None
    checked = 0
    for row in rows:
        image = _open(run, str(row.get("file")))
        if isinstance(image, str):
            report.fail(str(row.get("file")), f"cannot re-check the policy: {image}")
            continue
        _check_output(row, image, mark, faces, listed, blocklist, report)
        checked += 1
    _check_counts(policy, rows, report, where)
    report.receipt["policy"] = {
        "watermark": mark or "off", "faces": faces["action"] if faces else "not checked",
        "blocklist": listed["sha256"] if listed else "none",
        "blocklist_rechecked": blocklist is not None,
        "withheld": len(policy["withheld"]), "outputs_rechecked": checked,
    }  # fmt: skip


def _check_counts(
    policy: dict[str, Any], rows: list[dict[str, Any]], report: VerifyReport, where: str
) -> None:
    """`withheld` must be exactly the renders before each output's `attempt`, and `unmarked`
    the outputs that carry no mark: the entry may not hide a withheld render or a missing
    mark."""
    expected = set()
    for row in rows:
        stem = Path(str(row.get("file"))).stem
        attempt = row.get("attempt", 0)
        if stem.isdigit() and isinstance(attempt, int):
            expected |= {(int(stem), a) for a in range(attempt)}
    stated = {(w["output"], w["attempt"]) for w in policy["withheld"]}
    if stated != expected or len(stated) != len(policy["withheld"]):
        report.fail(where, "withheld does not list exactly the renders before each output's "
                           "attempt")  # fmt: skip
    unmarked = sum(1 for row in rows if row.get("watermark") is None)
    if policy["unmarked"] != unmarked:
        report.fail(where, f"unmarked is {policy['unmarked']}, but {unmarked} outputs carry no "
                           "mark")  # fmt: skip


def _expected_mark(policy: dict[str, Any], report: VerifyReport, where: str) -> str | None:
    settings = policy.get("watermark")
    if settings is None:
        return None
    vkey = str(report.receipt.get("public_key", ""))
    mark = run_mark(vkey)
    if settings.get("mark") != mark:
        report.fail(where, f"its watermark identifier is not the run key's ({mark})")
    return mark


def _check_output(
    row: dict[str, Any],
    image: Image.Image,
    mark: str | None,
    faces: dict[str, Any] | None,
    listed: dict[str, Any] | None,
    blocklist: pdq.Blocklist | None,
    report: VerifyReport,
) -> None:
    name = row["file"]
    hashed = pdq.pdq_hash(image)[0]
    if row.get("pdq") != hashed:
        report.fail(name, "pdq: the file's PDQ hash is not the one the ledger records")
    if faces is not None:
        counted = count_faces(image, float(faces["threshold"]))
        if row.get("faces") != counted:
            report.fail(name, f"faces: {counted} found, the ledger records {row.get('faces')}")
        if counted and faces["action"] != "allow":
            report.fail(name, f"faces: {counted} face(s) in an output the policy says must "
                              f"have none ({faces['action']})")  # fmt: skip
    if blocklist is not None and listed is not None:
        distance, line = blocklist.nearest(hashed)
        if distance <= int(listed["threshold"]):
            report.fail(name, f"blocklist: within {distance} of hash {line + 1} of the list")
    read = carried_mark(image)
    if read is not None and read != mark:
        report.fail(name, f"watermark: carries mark {read}, not this run's ({mark or 'off'})")
    elif row.get("watermark") != read:
        report.fail(name, f"watermark: reads {read or 'none'}, the ledger records "
                          f"{row.get('watermark') or 'none'}")  # fmt: skip


def check_credentials(run: Path, entries: Entries, report: VerifyReport) -> None:
    """Where run.yaml asks for content credentials, each image's manifest must validate,
    bind this file (its data hash matches) and name the run's mark."""
    if not run_config_section(run, "output").get("content_credentials"):
        return
    from penumbra.anonymize.credentials import manifest_run_mark, mime_type, read_manifest

    mark = run_mark(str(report.receipt.get("public_key", "")))
    try:
        import c2pa
    except ImportError:
        report.fail("content credentials", "not read back: install penumbra[c2pa]")
        return
    read = 0
    for row in _image_rows(entries):
        name = str(row.get("file"))
        if not _OUTPUT_PATH.fullmatch(name) or ".." in name:
            report.fail(name, "content credentials: not a file directly under synthetic/")
            continue
        try:
            data = (run / name).read_bytes()
            store = read_manifest(data, mime_type(run / name))
        except (OSError, PenumbraError):
            continue  # missing file or unknown type: named by the other checks
        except c2pa.C2paError as e:
            report.fail(name, f"content credentials: none that read back ({str(e)[:120]})")
            continue
        codes = {s.get("code") for s in
                 ((store.get("validation_results") or {}).get("activeManifest") or {})
                 .get("success", [])}  # fmt: skip
        if store.get("validation_state") not in ("Valid", "Trusted"):
            report.fail(name, f"content credentials: {store.get('validation_state')}")
        elif "assertion.dataHash.match" not in codes:
            report.fail(name, "content credentials: the manifest does not bind this file")
        elif manifest_run_mark(store) != mark:
            report.fail(name, f"content credentials: do not name this run ({mark})")
        else:
            read += 1
    report.receipt["content_credentials"] = f"{read} read back, bound and naming run {mark}"
