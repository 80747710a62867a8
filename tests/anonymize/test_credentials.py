"""C2PA labelling: signed offline with a throw-away CA, read back, tampering detected."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

from penumbra.anonymize import credentials
from penumbra.anonymize.credentials import (
    TRAINED_ALGORITHMIC_MEDIA,
    digital_source_types,
    label_synthetic,
    make_test_signer,
    read_manifest,
)
from penumbra.errors import ConfigError, DataError

pytest.importorskip("c2pa")


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    folder = tmp_path_factory.mktemp("signer")
    cert, key = make_test_signer(folder)
    return cert, key, (folder / "ca.pem").read_text()


def _image(path: Path) -> Path:
    rng_pixels = bytes((i * 37) % 256 for i in range(24 * 16 * 3))
    Image.frombytes("RGB", (24, 16), rng_pixels).save(path)
    return path


@pytest.mark.parametrize("suffix,mime", [(".png", "image/png"), (".jpg", "image/jpeg")])
def test_label_reads_back_trusted_without_thumbnail_or_ingredient(
    tmp_path: Path, signer: tuple[Path, Path, str], suffix: str, mime: str
) -> None:
    cert, key, ca = signer
    src = _image(tmp_path / f"in{suffix}")
    out = tmp_path / f"out{suffix}"
    label_synthetic(src, out, signer_cert=cert, signer_key=key)
    data = out.read_bytes()
    store = read_manifest(data, mime, trust_anchors=ca)
    assert store["validation_state"] == "Trusted"
    manifest = store["manifests"][store["active_manifest"]]
    assert digital_source_types(manifest) == [TRAINED_ALGORITHMIC_MEDIA]
    assert "thumbnail" not in manifest
    assert not manifest.get("ingredients")
    assert not any("thumbnail" in a["label"] for a in manifest["assertions"])
    assert manifest["claim_generator_info"][0]["name"] == "penumbra"
    # the pixels are untouched by labelling
    with Image.open(io.BytesIO(data)) as a, Image.open(src) as b:
        assert a.tobytes() == b.tobytes()


def test_tampered_pixels_fail_validation(tmp_path: Path, signer: tuple[Path, Path, str]) -> None:
    cert, key, ca = signer
    out = tmp_path / "out.png"
    label_synthetic(_image(tmp_path / "in.png"), out, signer_cert=cert, signer_key=key)
    data = bytearray(out.read_bytes())
    idat = data.find(b"IDAT")
    data[idat + 12] ^= 0x01
    store = read_manifest(bytes(data), "image/png", trust_anchors=ca)
    assert store["validation_state"] == "Invalid"
    codes = {s["code"] for s in store.get("validation_status", [])}
    assert "assertion.dataHash.mismatch" in codes


def test_untrusted_root_is_valid_but_not_trusted(
    tmp_path: Path, signer: tuple[Path, Path, str]
) -> None:
    cert, key, _ = signer
    out = tmp_path / "out.png"
    label_synthetic(_image(tmp_path / "in.png"), out, signer_cert=cert, signer_key=key)
    assert read_manifest(out.read_bytes(), "image/png")["validation_state"] == "Valid"


def test_certificate_c2pa_refuses_is_a_config_error_with_no_output(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    _, key = make_test_signer(tmp_path)
    ca_only = tmp_path / "ca.pem"  # a CA certificate (and not the key's) cannot sign claims
    out = tmp_path / "out.png"
    with pytest.raises(ConfigError, match="ca.pem"):
        label_synthetic(_image(tmp_path / "in.png"), out, signer_cert=ca_only, signer_key=key)
    assert not out.exists()
    assert serialization.load_pem_private_key(key.read_bytes(), None) is not None


def test_unsupported_format_and_missing_files(tmp_path: Path) -> None:
    cert, key = make_test_signer(tmp_path)
    with pytest.raises(DataError, match="'.bmp'"):
        label_synthetic(tmp_path / "a.bmp", tmp_path / "b.bmp", signer_cert=cert, signer_key=key)
    with pytest.raises(DataError, match="image not found"):
        label_synthetic(tmp_path / "a.png", tmp_path / "b.png", signer_cert=cert, signer_key=key)
    with pytest.raises(DataError, match="signer key not found"):
        label_synthetic(
            _image(tmp_path / "a.png"), tmp_path / "b.png",
            signer_cert=cert, signer_key=tmp_path / "nokey",
        )  # fmt: skip


def test_missing_c2pa_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "c2pa", None)
    with pytest.raises(ConfigError, match=r"pip install 'penumbra\[c2pa\]'"):
        credentials.label_synthetic(
            tmp_path / "a.png", tmp_path / "b.png",
            signer_cert=tmp_path / "c", signer_key=tmp_path / "k",
        )  # fmt: skip
