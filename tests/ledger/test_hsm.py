"""Signing keys on a PKCS#11 token (issue 27, item 3), with SoftHSM2: a real PKCS#11 module
(Debian's softhsm2, installed by .ci/run), started and initialised here in a temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from penumbra.errors import ConfigError, PenumbraError
from penumbra.ledger.cosignature import parse_cosigner_key
from penumbra.ledger.hsm import PIN_ENV, HsmError, parse_pkcs11_uri
from penumbra.ledger.log import Ledger
from penumbra.ledger.note import parse_vkey, verify_signed_note
from penumbra.ledger.witness import Witness, add_log, init_state
from penumbra.ledger.witness_client import request_body

MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
MODULE = next((m for m in MODULES if Path(m).is_file()), None)


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SoftHSM2 token holding one Ed25519 key pair labelled run-key; its URI. One per
    module: a process initialises a PKCS#11 module once, reading SOFTHSM2_CONF then."""
    if MODULE is None or shutil.which("softhsm2-util") is None:
        pytest.skip("softhsm2 is not installed (apt-get install softhsm2; .ci/run does)")
    pkcs11 = pytest.importorskip("pkcs11", reason="python-pkcs11 missing: make install")
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    folder = tmp_path_factory.mktemp("softhsm")
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n")
    saved = {k: os.environ.get(k) for k in ("SOFTHSM2_CONF", PIN_ENV)}
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "penumbra", "--pin", "1234",
         "--so-pin", "5678"], check=True, capture_output=True,
    )  # fmt: skip
    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label="penumbra").open(user_pin="1234", rw=True) as session:
        session.generate_keypair(
            KeyType.EC_EDWARDS, mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")},
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            label="run-key", store=True,
        )  # fmt: skip
    os.environ[PIN_ENV] = "1234"
    yield f"pkcs11:token=penumbra;object=run-key?module-path={MODULE}"
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _public_key(uri: str) -> bytes:
    """The key's public half as the token gives it, read independently of penumbra."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass

    with pkcs11.lib(MODULE).get_token(token_label="penumbra").open() as session:  # logged in
        key = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC_EDWARDS, label="run-key")
        return bytes(key[Attribute.EC_POINT])[-32:]


def test_checkpoints_signed_on_the_token_verify_with_its_public_key(
    tmp_path: Path, token: str
) -> None:
    run = tmp_path / "run"
    ledger = Ledger.open(run, signing_key=token)
    ledger.append("files", {"stage": "a", "files": [], "removed": []})
    assert not (run / "private" / "ledger.key").exists()  # no key file anywhere
    vkey = parse_vkey((run / "ledger" / "pubkey").read_text())
    from cryptography.hazmat.primitives import serialization

    raw = vkey.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == _public_key(token)
    for path in sorted((run / "ledger" / "checkpoints").iterdir()):
        assert verify_signed_note(path.read_text(), vkey).size == int(path.name)
    # resumed with the same token key: the same run; with a key file: refused by name
    Ledger.open(run, signing_key=token).append("files", {"stage": "b", "files": [], "removed": []})
    from penumbra.ledger.note import generate_signer, save_private_key

    save_private_key(generate_signer("penumbra-run"), tmp_path / "other.pem")
    with pytest.raises(PenumbraError, match="another key"):
        Ledger.open(run, signing_key=tmp_path / "other.pem")


def test_a_witness_cosigns_with_a_token_key(tmp_path: Path, token: str) -> None:
    run = tmp_path / "run"
    Ledger.open(run).append("files", {"stage": "a", "files": [], "removed": []})
    key = parse_cosigner_key(init_state(tmp_path / "w", "witness.test/hsm", token).vkey)
    assert not (tmp_path / "w" / "witness.key").exists()
    witness = Witness(tmp_path / "w")  # loads the key from the token again, as `serve` does
    origin = (run / "ledger" / "origin").read_text().strip()
    add_log(witness.folder, (run / "ledger" / "pubkey").read_text(), origin)
    note = (run / "ledger" / "checkpoints" / "00000001").read_text()
    reply = witness.add_checkpoint(request_body(0, [], note))
    assert reply.status == 200
    assert key.verify(note + reply.body)[0].size == 1


def test_bad_pins_and_uris_are_one_line(tmp_path: Path, token: str) -> None:
    import sys

    # a wrong PIN, in a fresh process (this one is logged in to the token already)
    code = (
        "import sys; from penumbra.ledger.log import Ledger; from penumbra.errors import "
        "PenumbraError\ntry:\n    Ledger.open(sys.argv[1], signing_key=sys.argv[2])\n"
        "except PenumbraError as e:\n    print(*e.problems, sep='\\n'); sys.exit(2)"
    )
    env = {**os.environ, PIN_ENV: "9999"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run"), token],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "PIN" in lines[0].upper(), done
    with pytest.raises(HsmError, match="NoSuchKey|not found"):
        Ledger.open(tmp_path / "run2", signing_key=token.replace("run-key", "absent"))
    with pytest.raises(HsmError, match="pin-value"):
        parse_pkcs11_uri(token + "&pin-value=1234")
    with pytest.raises(HsmError, match="module-path"):
        parse_pkcs11_uri("pkcs11:object=run-key")


def test_a_pin_in_the_config_is_refused() -> None:
    from penumbra.config import load_config

    with pytest.raises(ConfigError, match="ledger.signer.*published"):
        load_config(None, ["ledger.signer=pkcs11:object=k?module-path=/m.so&pin-value=1"])


def test_an_aggregator_cosigns_with_a_token_key(tmp_path: Path, token: str) -> None:
    """`note_key: pkcs11:...` in an aggregator's config: its co-signatures come from the token,
    and `penumbra ledger pubkey` prints the key to publish as its aggregator_vkeys entry."""
    import json

    from typer.testing import CliRunner

    from penumbra.cli import app
    from penumbra.ledger.note import Checkpoint
    from penumbra.mpc.deploy import init_deployment, load_party_config, note_signer

    parties = init_deployment(tmp_path / "dep", holders=3, counts=[5, 3, 2])
    config_file = parties["leader"]
    data = json.loads(config_file.read_text())
    data["note_key"] = token
    config_file.write_text(json.dumps(data))
    signer = note_signer(load_party_config(config_file, "aggregator"))
    printed = CliRunner().invoke(app, ["ledger", "pubkey", token, "--name", "penumbra-mpc-leader"])
    assert printed.exit_code == 0 and printed.stdout.strip() == signer.vkey
    body = Checkpoint("penumbra.run/x", 1, b"\x00" * 32).body()
    note = body + "\n" + signer.sign(body)
    assert verify_signed_note(note, parse_vkey(signer.vkey)).size == 1


def test_a_pin_never_shows_in_an_error() -> None:
    uri = "pkcs11:object=k;slot=1?module-path=/x.so&pin-value=S3CRET"
    for text in (uri, uri.replace("pin-value", "pin%2Dvalue"), uri.replace(";slot=1", "")):
        with pytest.raises(HsmError) as info:
            parse_pkcs11_uri(text)
        assert "S3CRET" not in str(info.value) and "pin-value" in str(info.value)
    with pytest.raises(HsmError) as info:
        parse_pkcs11_uri("pkcs11:object=k;slot=1?module-path=/x.so&pin-source=file:/S3CRET")
    assert "S3CRET" not in str(info.value)
