"""What an aggregator holds per round: each holder's report and its verification state, and
the report ids and nonces it has ever accepted (kept on disk: replay protection across rounds
and restarts). penumbra.mpc.aggregator works on these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from penumbra.mpc.protocol import Rejection, RoundOutcome, RoundParams


@dataclass
class Report:
    holder: str
    nonce: bytes
    public_share: bytes
    input_share: bytes
    # verify_init's result, computed as the report arrives (in the upload's worker thread, so
    # reports are verified in parallel while others upload); None until then, or an error
    prepared: tuple[Any, Any, Any] | ValueError | None = None


@dataclass
class Round:
    params: RoundParams  # its sigma: the noise this aggregator adds (0 when test_noiseless)
    run: str
    accounted_sigma: float  # the σ its release is booked at (never below our own)
    state: str = "open"  # open → verified → committed → released
    reports: dict[str, Report] = field(default_factory=dict)
    refused: list[Rejection] = field(default_factory=list)  # at upload: replay, late, malformed
    out_shares: dict[str, list[int]] = field(default_factory=dict)
    outcome: RoundOutcome | None = None


class SeenStore:
    """Report ids and nonces ever accepted for upload, appended durably (replay protection)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: set[str] = set()
        self.nonces: set[str] = set()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rid, nonce = line.split(" ", 1)
                    self.ids.add(rid)
                    self.nonces.add(nonce)

    def seen(self, report_id: str, nonce: str) -> bool:
        return report_id in self.ids or nonce in self.nonces

    def add(self, report_id: str, nonce: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{report_id} {nonce}\n")
            f.flush()
            import os

            os.fsync(f.fileno())
        self.ids.add(report_id)
        self.nonces.add(nonce)
