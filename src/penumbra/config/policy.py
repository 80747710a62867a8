"""The `policy:` section of a run config: what every synthetic image carries and must pass
before it is published (an invisible watermark, a PDQ blocklist, a face check).

Every check here reads only the outputs and public inputs, so withholding an output is
post-processing of the DP release (DESIGN.md invariant 12). A check that would read private
data has no place in this section."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FaceAction = Literal["withhold", "blur", "allow"]

# A run whose public `domain` names people is making faces on purpose; anywhere else a face in
# an output is off-domain (and may be a likeness the model memorised), so it is withheld.
_FACE_DOMAIN = re.compile(
    r"\b(faces?|portraits?|people|persons?|humans?|celebrit(y|ies)|headshots?|selfies?)\b",
    re.IGNORECASE,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BlocklistConfig(_Section):
    file: Path = Field(
        description="PDQ hashes, one per line (64 hex digits, ThreatExchange's format; "
        "'#' starts a comment, text after the hash on a line is ignored)"
    )
    threshold: int = Field(
        31, ge=0, le=128, description="withhold an output within this Hamming distance (of 256)"
    )


class FacesConfig(_Section):
    action: FaceAction | None = Field(
        None,
        description="withhold, blur or allow (count only); default: allow when the domain "
        "names people (faces, portraits, people, ...), withhold otherwise",
    )
    threshold: float = Field(
        0.5, gt=0, lt=1, description="CenterFace score above which a face is counted"
    )


class PolicyConfig(_Section):
    watermark: bool = Field(
        True, description="an invisible watermark naming the run in every image large enough"
    )
    blocklist: BlocklistConfig | None = None
    faces: FacesConfig | None = Field(default_factory=FacesConfig)
    max_attempts: int = Field(
        8, ge=1, le=100,
        description="renders of one output (each with its own seed) before the run stops",
    )  # fmt: skip


def default_face_action(domain: str) -> FaceAction:
    """The face action a run gets when its config names none (README "What each output
    carries" states the rule)."""
    return "allow" if _FACE_DOMAIN.search(domain) else "withhold"
