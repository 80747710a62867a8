"""C2PA content credentials that label an image as made by a trained model.

`label_synthetic` embeds a signed C2PA manifest whose only action is `c2pa.created` with the
IPTC digital source type `trainedAlgorithmicMedia`. It never embeds a thumbnail (c2pa-rs makes
one by default; we switch that off and check the read-back manifest) and never adds an
ingredient, so nothing derived from private data travels inside the credential.

What c2pa-rs 0.91 accepts as a signing certificate (measured with c2pa-python 0.38.1, see
`make_test_signer`): an end-entity certificate issued by a CA (a self-signed leaf is refused),
with KeyUsage digitalSignature, an Authority Key Identifier, BasicConstraints CA=false and an
Extended Key Usage containing id-kp-emailProtection (1.3.6.1.5.5.7.3.4). No EKU, anyEKU or
serverAuth are refused with "the certificate is invalid"; documentSigning and the C2PA
claimSigning OID pass the signer but fail its own post-signing validation ("missing required
EKU") unless they are in the trust settings' allowed EKU list.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

from penumbra.durable import atomic_write_bytes
from penumbra.errors import ConfigError, DataError
from penumbra.version import __version__

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".gif": "image/gif",
    ".avif": "image/avif",
    ".heic": "image/heic",
}

# c2pa-rs adds a JPEG thumbnail of the asset unless told not to; a thumbnail of a synthetic
# image is harmless, but one of a mislabelled private image would leak it, so it is always off.
NO_THUMBNAIL_SETTINGS: dict[str, Any] = {"builder": {"thumbnail": {"enabled": False}}}


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError:
        raise ConfigError(
            "C2PA labelling needs c2pa-python: pip install 'penumbra[c2pa]'"
        ) from None
    return c2pa


def mime_type(path: Path) -> str:
    """The MIME type c2pa needs, from the file extension; DataError if C2PA cannot embed it."""
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise DataError(
            f"{path}: cannot embed C2PA credentials in '{path.suffix}' files "
            f"(supported: {', '.join(sorted(set(_MIME)))})"
        )
    return mime


RUN_ASSERTION = "org.penumbra.run"  # names the run (its watermark id) that made the image


def manifest_definition(claim_generator: str, run_mark: str | None = None) -> dict[str, Any]:
    """The manifest we sign: one created action (and, for a penumbra run's outputs, the run's
    identifier), no ingredients, no thumbnail, no title."""
    name, _, version = claim_generator.partition("/")
    info: dict[str, str] = {"name": name or "penumbra"}
    if version:
        info["version"] = version
    assertions: list[dict[str, Any]] = [
        {
            "label": "c2pa.actions",
            "data": {
                "actions": [
                    {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}
                ]
            },
        }
    ]
    if run_mark is not None:
        assertions.append({"label": RUN_ASSERTION, "data": {"mark": run_mark}})
    return {"claim_generator_info": [info], "assertions": assertions}


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read {what} ({e.strerror})") from None


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:300]


def label_synthetic(
    image: Path,
    out: Path,
    *,
    signer_cert: Path,
    signer_key: Path,
    tsa_url: str | None = None,
    claim_generator: str = f"penumbra/{__version__}",
    run_mark: str | None = None,
) -> None:
    """Write `out`: `image` with a signed C2PA manifest saying a trained model created it
    (and, given `run_mark`, which run: its watermark identifier).

    `signer_cert` is a PEM chain (leaf first, then intermediates; the root may be left out) and
    `signer_key` the leaf's PKCS#8 PEM EC P-256 key (ES256). Without `tsa_url` the signature
    carries no trusted timestamp and stops validating once the certificate expires. The output
    is read back and checked (valid signature, our action, no thumbnail, no ingredient) before
    it is written atomically; on any failure no output file is left.
    """
    c2pa = _c2pa()
    mime = mime_type(image)
    mime_type(out)
    if out.suffix.lower() != image.suffix.lower():
        raise ConfigError(f"{out}: output must keep the input's extension '{image.suffix}'")
    source = _read_file(image, "image")
    cert = _read_file(signer_cert, "signer certificate")
    key = _read_file(signer_key, "signer key")
    context = c2pa.Context.from_dict(NO_THUMBNAIL_SETTINGS)
    try:
        info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, cert, key, tsa_url)
        signer = c2pa.Signer.from_info(info)
    except c2pa.C2paError as e:
        raise ConfigError(
            f"{signer_cert}: c2pa refused the signer ({_one_line(e)}); it needs an ES256 leaf "
            "issued by a CA with digitalSignature and the emailProtection EKU"
        ) from None
    signed = io.BytesIO()
    try:
        with c2pa.Builder(manifest_definition(claim_generator, run_mark), context) as builder:
            builder.sign(signer, mime, io.BytesIO(source), signed)
    except c2pa.C2paError as e:
        message = _one_line(e)
        if "certificate" in message.lower() or "signingCredential" in message:
            raise ConfigError(
                f"{signer_cert}: c2pa refused the certificate ({message}); it needs an ES256 "
                "leaf issued by a CA with digitalSignature and the emailProtection EKU"
            ) from None
        if tsa_url is not None and ("time" in message.lower() or "http" in message.lower()):
            raise ConfigError(f"timestamp authority {tsa_url}: {message}") from None
        raise DataError(f"{image}: c2pa could not sign this file ({message})") from None
    finally:
        signer.close()
    data = signed.getvalue()
    check_label(data, mime, origin=image)
    if run_mark is not None and manifest_run_mark(read_manifest(data, mime)) != run_mark:
        raise DataError(f"{image}: signed output does not name run {run_mark}")
    atomic_write_bytes(out, data)


def read_manifest(data: bytes, mime: str, *, trust_anchors: str | None = None) -> dict[str, Any]:
    """The active manifest store as JSON, plus `validation_state` (Valid/Trusted/Invalid).

    With `trust_anchors` (PEM roots) a correctly signed file reads as Trusted; without, as Valid.
    """
    c2pa = _c2pa()
    settings: dict[str, Any] = {}
    if trust_anchors is not None:
        settings = {"trust": {"trust_anchors": trust_anchors}, "verify": {"verify_trust": True}}
    context = c2pa.Context.from_dict(settings)
    with c2pa.Reader(mime, io.BytesIO(data), context=context) as reader:
        store: dict[str, Any] = json.loads(reader.json())
        store["validation_state"] = reader.get_validation_state()
    return store


def check_label(data: bytes, mime: str, *, origin: Path) -> None:
    """Raise unless `data` carries exactly our claim: created by a model, nothing embedded."""
    c2pa = _c2pa()
    try:
        store = read_manifest(data, mime)
    except c2pa.C2paError as e:
        raise DataError(f"{origin}: signed output does not read back ({_one_line(e)})") from None
    manifest = store["manifests"][store["active_manifest"]]
    problems = []
    if store["validation_state"] not in ("Valid", "Trusted"):
        problems.append(f"validation state {store['validation_state']}")
    if "thumbnail" in manifest or any(
        a["label"].startswith("c2pa.thumbnail") for a in manifest.get("assertions", [])
    ):
        problems.append("a thumbnail was embedded")
    if manifest.get("ingredients"):
        problems.append("an ingredient was embedded")
    if digital_source_types(manifest) != [TRAINED_ALGORITHMIC_MEDIA]:
        problems.append("the created action is missing")
    if problems:
        raise DataError(f"{origin}: signed output rejected: {'; '.join(problems)}")


def manifest_run_mark(store: dict[str, Any]) -> str | None:
    """The run identifier the active manifest names (RUN_ASSERTION), or None."""
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    for assertion in manifest.get("assertions", []):
        if assertion.get("label") == RUN_ASSERTION and isinstance(assertion.get("data"), dict):
            mark = assertion["data"].get("mark")
            return mark if isinstance(mark, str) else None
    return None


def digital_source_types(manifest: dict[str, Any]) -> list[str]:
    """Every action's digitalSourceType in a manifest (actions v1 and v2 assertions)."""
    found = []
    for assertion in manifest.get("assertions", []):
        if assertion["label"] in ("c2pa.actions", "c2pa.actions.v2"):
            for action in assertion["data"].get("actions", []):
                if "digitalSourceType" in action:
                    found.append(action["digitalSourceType"])
    return found


def make_test_signer(directory: Path, *, days: int = 30) -> tuple[Path, Path]:
    """Create a throw-away CA and an ES256 leaf c2pa signs with; return (chain PEM, key PEM).

    Also writes `ca.pem` (the root, to pass as a trust anchor when reading). For tests and
    demos only: anyone holding the key can sign, and nobody's trust list contains the CA.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip

    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=days)
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "penumbra test")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "penumbra test CA"), org])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "penumbra signer"), org]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    cert_path, key_path = directory / "signer.pem", directory / "signer.key"
    atomic_write_bytes(directory / "ca.pem", ca_cert.public_bytes(pem))
    atomic_write_bytes(cert_path, leaf.public_bytes(pem) + ca_cert.public_bytes(pem))
    atomic_write_bytes(
        key_path,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    key_path.chmod(0o600)
    return cert_path, key_path
