"""`penumbra mpc init`: a per-deployment CA, a key and certificate per party, and its config.

Layout under DIR (one folder per party; copy a party's folder, and ca.pem, to its machine):

    ca.pem                          the deployment CA certificate (public)
    leader/ helper/                 aggregators: cert.pem, key.pem (0600), note.key (Ed25519,
                                    0600, co-signs ledger checkpoints), config.json
    coordinator/                    cert.pem, key.pem, config.json
    holder-1/ ... holder-N/         cert.pem, key.pem, config.json

The CA's private key signs every certificate and is then discarded: nobody can add a party to
an existing deployment. Certificates name the party (CN) and its role (OU). Each holder's
declared sample count is fixed here; it bounds each entry of its votes, and × k their sum, in
every round, and it is public. The aggregators share a VDAF verification key, which only they
hold.

The deployment's privacy terms are fixed here too and written into every party's config: k
(votes per sample), the metric, the entry width (bits), the most candidates a round may have,
and — in each aggregator's config — `max_epsilon`, the budget of every release over these
holders, all runs together (converted at the deployment's δ = 1/(N ln N), N the sum of the
declared counts). Aggregators and holders refuse a round that announces anything else
(penumbra.mpc.policy, penumbra.mpc.holder).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from penumbra.durable import atomic_write_bytes
from penumbra.errors import ConfigError, DataError
from penumbra.ledger.note import Signer, generate_signer, load_private_key, save_private_key
from penumbra.mpc import DEFAULT_MAX_CANDIDATES, DEFAULT_MAX_EPSILON

Role = Literal["aggregator", "holder", "coordinator"]
AGGREGATORS = ("leader", "helper")


class HolderInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    declared_count: int = Field(ge=1)


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connect_s: float = Field(default=5.0, gt=0)
    read_s: float = Field(default=120.0, gt=0)


class PartyConfig(BaseModel):
    """One party's config.json. Paths are relative to the file's folder."""

    model_config = ConfigDict(extra="forbid")
    deployment: str
    role: Role
    name: str
    ca: str
    cert: str
    key: str
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    leader_url: str
    helper_url: str
    coordinator_url: str
    holders: list[HolderInfo]
    aggregator_vkeys: dict[str, str]
    bits: int = Field(default=16, ge=1, le=32)
    k: int = Field(default=1, ge=1, le=100)  # votes per private sample (sensitivity √k)
    metric: Literal["l2", "cosine"] = "l2"
    max_candidates: int = Field(default=DEFAULT_MAX_CANDIDATES, ge=1)
    round_deadline_s: float = Field(default=60.0, gt=0)
    poll_s: float = Field(default=0.3, gt=0)
    timeouts: Timeouts = Timeouts()
    state_dir: str = "state"
    verify_key: str | None = None  # aggregators only (hex)
    note_key: str | None = None  # aggregators only
    test_noiseless: bool = False  # aggregators only; tests of the plain sum, never a real run
    # aggregators: reports read and verified at once (memory bound); more get 503 "retry"
    max_reports_in_flight: int = Field(default=8, ge=1, le=1024)
    # aggregators (required): ε of all releases over these holders, every run together
    max_epsilon: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    folder: str = Field(default="", exclude=True)

    def path(self, name: str) -> Path:
        return Path(self.folder) / name

    def holder(self, name: str) -> HolderInfo | None:
        return next((h for h in self.holders if h.name == name), None)


def note_signer(config: PartyConfig) -> Signer:
    """An aggregator's co-signing key: its note.key, or a PKCS#11 URI in `note_key` (the key
    signs on its token; publish its key, `penumbra ledger pubkey URI --name
    penumbra-mpc-leader`, as the coordinator's aggregator_vkeys entry)."""
    name = f"penumbra-mpc-{config.name}"
    key = config.note_key or ""
    if key.startswith("pkcs11:"):
        from penumbra.ledger.hsm import open_pkcs11_key

        return Signer(name, open_pkcs11_key(key))
    return load_private_key(config.path(key), name)


def load_party_config(path: Path | str, role: Role | None = None) -> PartyConfig:
    """Parse and check a party's config; ConfigError naming the file and field otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; create one with `penumbra mpc init`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    try:
        config = PartyConfig.model_validate(data)
    except ValidationError as e:
        lines = [
            f"{path}: {'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in e.errors()
        ]
        raise ConfigError(*lines) from None
    config.folder = str(path.parent.resolve())
    if role is not None and config.role != role:
        raise ConfigError(f"{path}: role is {config.role!r}, this command needs a {role} config")
    for field in ("ca", "cert", "key"):
        if not config.path(getattr(config, field)).is_file():
            raise ConfigError(f"{path}: {field}: {config.path(getattr(config, field))} not found")
    if config.role == "aggregator":
        if config.name not in AGGREGATORS:
            raise ConfigError(f"{path}: name: an aggregator is 'leader' or 'helper'")
        if not config.verify_key or not config.note_key:
            raise ConfigError(f"{path}: verify_key and note_key are required for an aggregator")
        if config.max_epsilon is None:
            raise ConfigError(
                f"{path}: max_epsilon: required for an aggregator (the deployment's privacy "
                "budget over all runs; `penumbra mpc init --max-epsilon`)"
            )
    names = [h.name for h in config.holders]
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"{path}: holders: names must be unique and at least one is needed")
    if sum(h.declared_count for h in config.holders) < 3:
        raise ConfigError(f"{path}: holders: the declared counts must add up to at least 3")
    return config


def _name(common: str, role: str, deployment: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"penumbra {deployment}"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    common: str,
    role: str,
    deployment: str,
    hosts: list[str],
    days: int,
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common, role, deployment))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def init_deployment(
    out: Path | str,
    *,
    holders: int,
    counts: list[int] | None = None,
    host: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    bits: int = 16,
    round_deadline_s: float = 60.0,
    days: int = 30,
    max_epsilon: float = DEFAULT_MAX_EPSILON,
    k: int = 1,
    metric: str = "l2",
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write a complete deployment under `out`; returns {party name: its config.json}.

    `counts` are the holders' declared sample counts (default 1000 each); `ports` maps
    leader/helper/coordinator to their ports (default 8441-8443). `max_epsilon` is written
    into each aggregator's config: the ε, at the deployment's δ, of every release it makes
    over these holders, all runs together (zCDP: ρ adds across rounds and runs). `k`,
    `metric`, `bits` and `max_candidates` go into every party's config: the only terms the
    aggregators and holders accept from a coordinator."""
    out = Path(out)
    if holders < 1:
        raise ConfigError(f"--holders must be >= 1, got {holders}")
    counts = counts or [1000] * holders
    if len(counts) != holders or any(c < 1 for c in counts):
        raise ConfigError(f"--counts: give {holders} positive declared sample counts")
    if sum(counts) < 3:
        raise ConfigError("--counts: the declared counts must add up to at least 3 (δ < 1/N)")
    if not (isinstance(max_epsilon, (int, float)) and 0 < max_epsilon < float("inf")):
        raise ConfigError(f"--max-epsilon must be a finite number > 0, got {max_epsilon!r}")
    if not 1 <= k <= 100:
        raise ConfigError(f"--k must be in [1, 100], got {k}")
    if metric not in ("l2", "cosine"):
        raise ConfigError(f"--metric must be l2 or cosine, got {metric!r}")
    if max_candidates < 1:
        raise ConfigError(f"--max-candidates must be >= 1, got {max_candidates}")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: not empty; choose a new folder for the deployment")
    ports = ports or {"leader": 8441, "helper": 8442, "coordinator": 8443}
    deployment = secrets.token_hex(6)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"penumbra-mpc-ca-{deployment}", "ca", deployment)
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    holder_infos = [{"name": f"holder-{i + 1}", "declared_count": c} for i, c in enumerate(counts)]
    vkeys: dict[str, str] = {}
    for name in AGGREGATORS:
        signer = generate_signer(f"penumbra-mpc-{name}")
        save_private_key(signer, out / name / "note.key")
        vkeys[name] = signer.vkey
    verify_key = secrets.token_bytes(32).hex()
    common: dict[str, Any] = {
        "deployment": deployment,
        "ca": "../ca.pem",
        "cert": "cert.pem",
        "key": "key.pem",
        "leader_url": f"https://{host}:{ports['leader']}",
        "helper_url": f"https://{host}:{ports['helper']}",
        "coordinator_url": f"https://{host}:{ports['coordinator']}",
        "holders": holder_infos,
        "aggregator_vkeys": vkeys,
        "bits": bits,
        "k": k,
        "metric": metric,
        "max_candidates": max_candidates,
        "round_deadline_s": round_deadline_s,
        **(extra or {}),
    }
    parties: list[tuple[str, str]] = [
        ("leader", "aggregator"),
        ("helper", "aggregator"),
        ("coordinator", "coordinator"),
    ]
    parties += [(str(h["name"]), "holder") for h in holder_infos]
    written: dict[str, Path] = {}
    for name, role in parties:
        cert, key = _issue(ca_key, ca_name, name, role, deployment, [host], days)
        folder = out / name
        atomic_write_bytes(folder / "cert.pem", cert)
        _write_secret(folder / "key.pem", key)
        config: dict[str, Any] = {
            **common,
            "role": role,
            "name": name,
            "host": host,
            "port": ports.get(name, 0),
        }
        if role == "aggregator":
            config.update(
                {"verify_key": verify_key, "note_key": "note.key", "max_epsilon": max_epsilon}
            )
        path = folder / "config.json"
        atomic_write_bytes(path, (json.dumps(config, indent=2) + "\n").encode("utf-8"))
        written[name] = path
    del ca_key  # never written: the deployment's membership is fixed now
    return written
