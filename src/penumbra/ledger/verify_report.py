"""What `penumbra verify` reports, and what every one of its checks shares.

The checks (penumbra.ledger.verify and the verify_* modules beside it) each add their failures
to one `VerifyReport`, name ledger entries the same way (`entry_label`), and refuse any release
drawn from a fixed noise seed (`check_noise_seed`); so those live here, below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
