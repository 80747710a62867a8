"""The output policy, applied to each final render before it is written: blur or count faces,
mark, then hash and check what will be published.

Every check reads only the render and public inputs (the blocklist, the detector), so a
withheld render and the fresh render that replaces it are post-processing of the DP release
(DESIGN.md invariant 12): the replacement is the same DP caption rendered with the next seed.
What is checked is the image as it will be stored (after the mark and, for JPEG or WebP, after
encoding), so `verify` can recompute every recorded value from the published file."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from penumbra.anonymize.detect import centerface_model_path, detect_faces
from penumbra.anonymize.faces import mask_faces
from penumbra.config.policy import FaceAction, PolicyConfig, default_face_action
from penumbra.models.fingerprint import file_sha256
from penumbra.provenance import pdq, watermark
from penumbra.provenance.mark import decode_mark

FACE_BACKEND: Literal["opencv"] = "opencv"  # recorded; `verify` counts with the same one
PAYLOAD_CODE = "golay24x3-whitened-v1"
_SAVE = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


@dataclass(frozen=True)
class OutputPolicy:
    """A run's policy with everything resolved: the mark, the blocklist read, the face
    action chosen."""

    mark: str | None  # None: watermark off
    blocklist: pdq.Blocklist | None
    blocklist_threshold: int
    face_action: FaceAction | None  # None: faces not checked
    face_threshold: float
    max_attempts: int


def resolve_policy(config: PolicyConfig, *, domain: str, mark: str) -> OutputPolicy:
    """The run's policy; ConfigError (one line) on a bad blocklist file."""
    blocklist = pdq.load_blocklist(config.blocklist.file) if config.blocklist else None
    faces = config.faces
    return OutputPolicy(
        mark=mark if config.watermark else None,
        blocklist=blocklist,
        blocklist_threshold=config.blocklist.threshold if config.blocklist else 0,
        face_action=(faces.action or default_face_action(domain)) if faces else None,
        face_threshold=faces.threshold if faces else 0.5,
        max_attempts=config.max_attempts,
    )


def stored(image: Image.Image, image_format: str) -> Image.Image:
    """The pixels a reader of the file will get (PNG keeps them; JPEG and WebP do not)."""
    if image_format == "png":
        return image.convert("RGB")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=_SAVE[image_format])
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def count_faces(image: Image.Image, threshold: float) -> int:
    return len(detect_faces(np.asarray(image.convert("RGB")), threshold, backend=FACE_BACKEND))


def carried_mark(image: Image.Image) -> str | None:
    """The mark `image` reads back as it is (no resizing): what a mark claim rests on."""
    if not watermark.can_carry(*image.size):
        return None
    return decode_mark(watermark.read_bits(image)).mark


@dataclass
class Checked:
    image: Image.Image  # what to store
    fields: dict[str, Any]  # pdq, faces, watermark: the ledger row's and metadata's fields
    reason: str | None = None  # why it is withheld, or None
    blurred: int = 0

    def withheld_row(self, output: int, attempt: int) -> dict[str, Any]:
        """How the ledger names a withheld render: its slot, attempt, reason and the SHA-256
        of its pixels. Never its PDQ hash: one within the threshold of a listed hash would
        publish a near-copy of the list, which is shared under agreement."""
        pixels = hashlib.sha256(self.image.convert("RGB").tobytes()).hexdigest()
        return {"output": output, "attempt": attempt, "reason": self.reason, "sha256": pixels}


def check_render(image: Image.Image, policy: OutputPolicy, image_format: str) -> Checked:
    """One render through the policy: what to store and what the ledger records of it."""
    blurred = 0
    rgb = image.convert("RGB")
    if policy.face_action == "blur":
        boxes = detect_faces(np.asarray(rgb), policy.face_threshold, backend=FACE_BACKEND)
        if boxes:
            rgb = Image.fromarray(mask_faces(np.asarray(rgb), boxes, "blur"))
            blurred = len(boxes)
    if policy.mark is not None and watermark.can_carry(*rgb.size):
        rgb = watermark.embed_mark(rgb, policy.mark)
    final = stored(rgb, image_format)
    mark = carried_mark(final) if policy.mark is not None else None
    fields: dict[str, Any] = {"pdq": pdq.pdq_hash(final)[0], "watermark": mark}
    reasons = []
    if policy.face_action is not None:
        fields["faces"] = count_faces(final, policy.face_threshold)
        if fields["faces"] and policy.face_action != "allow":
            after = " after blurring" if policy.face_action == "blur" else ""
            reasons.append(f"faces: {fields['faces']}{after}")
    if policy.blocklist is not None:
        dist, _ = policy.blocklist.nearest(fields["pdq"])
        if dist <= policy.blocklist_threshold:  # which hash, and how near, stay unpublished
            reasons.append("blocklist")
    return Checked(rgb, fields, "; ".join(reasons) or None, blurred)


@dataclass
class PolicyLog:
    """What the policy did over the whole final set, for the ledger's `policy` entry."""

    withheld: list[dict[str, Any]] = field(default_factory=list)
    blurred: int = 0
    unmarked: int = 0


def policy_entry(policy: OutputPolicy, log: PolicyLog) -> dict[str, Any]:
    """The ledger's `policy` entry: the settings, and what was withheld (slot, attempt,
    reason, SHA-256 of the pixels)."""
    return {**policy_settings(policy), "withheld": log.withheld, "blurred": log.blurred,
            "unmarked": log.unmarked}  # fmt: skip


def policy_settings(policy: OutputPolicy) -> dict[str, Any]:
    """Each check with its version or weights fingerprint and thresholds, the blocklist by
    digest (never its hashes): what a kept render must have been checked with."""
    return {
        "watermark": None if policy.mark is None else {
            "library": "invisible-watermark", "version": watermark.library_version(),
            "method": watermark.METHOD, "scale": watermark.SCALE, "payload": PAYLOAD_CODE,
            "mark": policy.mark, "min_pixels": watermark.MIN_PIXELS,
        },
        "pdq": {"library": "pdqhash", "version": pdq.library_version()},
        "blocklist": None if policy.blocklist is None else {
            "sha256": policy.blocklist.sha256, "hashes": len(policy.blocklist.rows),
            "threshold": policy.blocklist_threshold,
        },
        "faces": None if policy.face_action is None else {
            "detector": "centerface", "weights_sha256": file_sha256(centerface_model_path()),
            "backend": FACE_BACKEND, "threshold": policy.face_threshold,
            "action": policy.face_action,
        },
        "max_attempts": policy.max_attempts,
    }  # fmt: skip
