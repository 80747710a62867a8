"""The `ledger:` section of a run config: the witnesses that cosign every checkpoint."""

from __future__ import annotations

import re
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, field_validator

KEY_SHAPE = re.compile(r"^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$")


class WitnessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    url: str = Field(description="the witness's submission prefix, e.g. http://127.0.0.1:7380")
    key: str = Field(description="its verifier key, NAME+KEYID+BASE64 (witness.vkey)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        # the shape only: the key itself (type 0x04, key id) is parsed by ledger.witness_client
        # when the run starts, which names this field too; config sits below ledger
        if not KEY_SHAPE.match(value.strip()):
            raise ValueError("must be a witness verifier key NAME+KEYID+BASE64 (witness.vkey)")
        return value.strip()


def _pkcs11_uri(value: str | None) -> str | None:
    # the shape only (ledger.hsm parses it when the run starts); the URI is published
    if value is not None and not value.startswith("pkcs11:"):
        raise ValueError("must be a PKCS#11 URI (RFC 7512), pkcs11:token=...;object=...?...")
    if value is not None and "pin-value" in unquote(value):
        raise ValueError(
            "holds pin-value: the PIN would be published with run.yaml; use "
            "pin-source=file:/path or the environment variable PENUMBRA_PKCS11_PIN"
        )
    return value


class LedgerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    witnesses: list[WitnessConfig] = Field(
        default_factory=list,
        description="every checkpoint is cosigned by each of these before the next release is "
        "drawn; a refusal or an unreachable witness stops the run (--resume tries again)",
    )
    signer: str | None = Field(
        None,
        description="sign checkpoints with a key on a PKCS#11 token: an RFC 7512 URI with "
        "module-path; the PIN from pin-source=file:... or PENUMBRA_PKCS11_PIN, never the URI",
    )
    witness_timeout_s: float = Field(10.0, gt=0, le=600, description="per witness request")

    @field_validator("signer")
    @classmethod
    def _signer(cls, value: str | None) -> str | None:
        return _pkcs11_uri(value)
