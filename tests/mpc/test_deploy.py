"""`penumbra mpc init`: a CA, per-party certificates and configs; config errors are one line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from penumbra.errors import ConfigError, DataError
from penumbra.mpc.deploy import init_deployment, load_party_config


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return init_deployment(tmp_path_factory.mktemp("d") / "dep", holders=3, counts=[5, 3, 2])


def test_every_party_gets_a_ca_signed_certificate_naming_its_role(
    deployment: dict[str, Path],
) -> None:
    assert sorted(deployment) == [
        "coordinator",
        "helper",
        "holder-1",
        "holder-2",
        "holder-3",
        "leader",
    ]
    root = deployment["leader"].parent.parent
    ca = x509.load_pem_x509_certificate((root / "ca.pem").read_bytes())
    roles = {"leader": "aggregator", "helper": "aggregator", "coordinator": "coordinator"}
    for name, path in deployment.items():
        cert = x509.load_pem_x509_certificate((path.parent / "cert.pem").read_bytes())
        public = ca.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        algorithm = cert.signature_hash_algorithm
        assert algorithm is not None
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        subject = cert.subject
        assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        role = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
        assert role == roles.get(name, "holder")
        assert stat.S_IMODE((path.parent / "key.pem").stat().st_mode) == 0o600
        config = load_party_config(path)
        assert config.name == name and config.role == roles.get(name, "holder")
    assert not list(root.rglob("ca.key")) and not list(root.rglob("*ca*key*"))


def test_secrets_only_where_they_belong(deployment: dict[str, Path]) -> None:
    leader = load_party_config(deployment["leader"])
    helper = load_party_config(deployment["helper"])
    assert leader.verify_key == helper.verify_key and leader.verify_key
    for name in ("coordinator", "holder-1"):
        config = json.loads(deployment[name].read_text())
        assert config.get("verify_key") is None and config.get("note_key") is None
    assert [h.declared_count for h in leader.holders] == [5, 3, 2]
    assert stat.S_IMODE((deployment["leader"].parent / "note.key").stat().st_mode) == 0o600


def test_init_refuses_a_used_folder_and_bad_counts(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    with pytest.raises(DataError, match="not empty"):
        init_deployment(tmp_path / "x", holders=1)
    with pytest.raises(ConfigError, match="--counts"):
        init_deployment(tmp_path / "y", holders=2, counts=[1])


def test_config_errors_name_the_file_and_field(deployment: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_party_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_party_config(bad)
    data = json.loads(deployment["leader"].read_text())
    data["bits"] = 99
    wrong = deployment["leader"].parent / "wrong.json"
    wrong.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="wrong.json: bits"):
        load_party_config(wrong)
    with pytest.raises(ConfigError, match="needs a holder config"):
        load_party_config(deployment["leader"], "holder")
