"""Signing keys that never leave a PKCS#11 token (an HSM, a smart card, SoftHSM2).

A key is named by an RFC 7512 URI, e.g.
    pkcs11:token=penumbra;object=run-key?module-path=/usr/lib/softhsm/libsofthsm2.so
(`token` and `object` are the token's and the key's labels; `id` may name the key instead).
The PIN is never part of the URI: the URI is written into run.yaml, which is published. It
comes from `pin-source=file:/path` (a file only its owner can read) or the environment variable
PENUMBRA_PKCS11_PIN. The key must be an Ed25519 key pair (CKK_EC_EDWARDS) on the token; the
token signs with CKM_EDDSA, and the public half is read from the token.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from penumbra.errors import PenumbraError

PIN_ENV = "PENUMBRA_PKCS11_PIN"
_PATH_ATTRS = {
    "token", "object", "id", "manufacturer", "serial", "model", "type", "library-manufacturer",
    "library-description", "library-version", "slot-description", "slot-manufacturer", "slot-id",
}  # fmt: skip
_QUERY_ATTRS = {"module-path", "module-name", "pin-source", "pin-value"}


class HsmError(PenumbraError):
    """A PKCS#11 URI, module, token, PIN or key that cannot be used."""


@dataclass(frozen=True)
class Pkcs11Uri:
    module_path: str
    token: str | None
    object: str | None
    id: bytes | None
    pin_source: str | None
    text: str


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """The parts of an RFC 7512 URI penumbra uses; HsmError naming what is wrong. Errors show
    the path part only: the query may hold a PIN someone put there."""
    if not text.startswith("pkcs11:"):
        raise HsmError(f"{text.split('?')[0][:40]!r}: a PKCS#11 key URI starts with pkcs11:")
    path, _, query = text[len("pkcs11:") :].partition("?")
    shown = f"pkcs11:{path}"
    if "pin-value" in unquote(query) or "pin-value" in unquote(path):
        raise HsmError(
            f"{shown}?…: pin-value puts the PIN in the URI, which run.yaml publishes; use "
            f"pin-source=file:/path or the environment variable {PIN_ENV}"
        )
    attrs: dict[str, str] = {}
    for part, allowed, where in ((path, _PATH_ATTRS, "path"), (query, _QUERY_ATTRS, "query")):
        for item in filter(None, part.split(";" if where == "path" else "&")):
            name, sep, value = item.partition("=")
            if not sep or name not in allowed:
                raise HsmError(f"{shown}: unknown {where} attribute {name[:40]!r} (RFC 7512)")
            attrs[name] = unquote(value)
    module = attrs.get("module-path")
    if not module:
        raise HsmError(f"{shown}: needs module-path=/path/to/the/pkcs11/module.so")
    if not ("object" in attrs or "id" in attrs):
        raise HsmError(f"{shown}: name the key with object=LABEL or id=%XX%XX")
    raw_id = attrs.get("id")
    key_id = unquote(raw_id, encoding="latin-1").encode("latin-1") if raw_id else None
    return Pkcs11Uri(module, attrs.get("token"), attrs.get("object"), key_id,
                     attrs.get("pin-source"), text)  # fmt: skip


def _pin(uri: Pkcs11Uri) -> str:
    if uri.pin_source is not None:
        path = Path(uri.pin_source.removeprefix("file:"))
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise HsmError(f"pin-source {path}: cannot read it ({type(e).__name__})") from None
    pin = os.environ.get(PIN_ENV)
    if not pin:
        raise HsmError(
            f"{uri.text.split('?')[0]}: no PIN: set {PIN_ENV} or add pin-source=file:/path"
        )
    return pin


def _open_session(token: Any, pin: str) -> Any:
    """A session logged in as the user. PKCS#11 logs in per token and process: while another
    session of this process is logged in, a new one is too (UserAlreadyLoggedIn)."""
    from pkcs11.exceptions import UserAlreadyLoggedIn

    try:
        return token.open(user_pin=pin)
    except UserAlreadyLoggedIn:
        return token.open()


class Pkcs11Ed25519Key:
    """An Ed25519 private key on a token, with the two methods the ledger uses of one
    (`sign`, `public_key`); one logged-in session per process, signing under a lock."""

    def __init__(self, uri: Pkcs11Uri) -> None:
        try:
            import pkcs11
            from pkcs11 import Attribute, KeyType, ObjectClass
        except ImportError:
            raise HsmError("PKCS#11 keys need python-pkcs11: pip install 'penumbra[hsm]'") from None
        self.uri = uri
        self._lock = threading.Lock()
        try:
            lib = pkcs11.lib(uri.module_path)
            token = lib.get_token(token_label=uri.token) if uri.token else lib.get_token()
            self._session: Any = _open_session(token, _pin(uri))
            select: dict[Any, Any] = {"key_type": KeyType.EC_EDWARDS}
            if uri.object is not None:
                select["label"] = uri.object
            if uri.id is not None:
                select["id"] = uri.id
            self._private = self._session.get_key(object_class=ObjectClass.PRIVATE_KEY, **select)
            public = self._session.get_key(object_class=ObjectClass.PUBLIC_KEY, **select)
            point = bytes(public[Attribute.EC_POINT])
        except HsmError:
            raise
        except Exception as e:  # the module's own errors: no token, bad PIN, no such key
            raise HsmError(f"{uri.text.split('?')[0]}: {type(e).__name__} {e}".strip()) from None
        # CKA_EC_POINT of an Edwards key: the 32 key bytes, raw or as a DER OCTET STRING
        raw = point[2:] if len(point) == 34 and point[:2] == b"\x04\x20" else point
        if len(raw) != 32:
            raise HsmError(f"{uri.text.split('?')[0]}: not an Ed25519 key")
        self._public = Ed25519PublicKey.from_public_bytes(raw)

    def sign(self, data: bytes) -> bytes:
        from pkcs11 import Mechanism

        with self._lock:
            signature: bytes = self._private.sign(data, mechanism=Mechanism.EDDSA)
        return signature

    def public_key(self) -> Ed25519PublicKey:
        return self._public


_opened: dict[str, Pkcs11Ed25519Key] = {}
_opening = threading.Lock()


def open_pkcs11_key(text: str) -> Pkcs11Ed25519Key:
    """The key a URI names, one logged-in session per URI and process."""
    with _opening:
        if text not in _opened:
            _opened[text] = Pkcs11Ed25519Key(parse_pkcs11_uri(text))
        return _opened[text]
