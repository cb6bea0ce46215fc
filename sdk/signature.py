"""Signed bundles: an Ed25519 signature over the exact bytes of ``manifest.json``.

The manifest lists every model file's SHA-256 and size, and holds everything else that decides an answer
(thresholds, fusion weights, operating points, input policy). Checksums alone stop a changed model file, not a
changed threshold: anyone who can edit a bundle can edit its manifest. A vendor signs the manifest once
(``aligngemini export sign BUNDLE --key vendor.pem``, written to ``manifest.sig``); a device given the vendor's
public key (``DetectorOptions(trusted_keys=...)``, ``--trusted-key``) refuses a bundle that is unsigned, signed by
another key, or whose manifest changed after signing, with :class:`BundleSignatureError`. Without trusted keys
nothing is checked (the signature, if any, is reported by ``aligngemini info``).

``manifest.sig`` is JSON: ``{"alg": "ed25519", "key_id": <first 16 hex of SHA-256 of the raw public key>,
"signature": <base64>}``. Rewriting the manifest (``bench --write-profile``) removes a signature it would break.
Needs the ``sign`` extra (``cryptography``)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from aligngemini_sdk.errors import BundleSignatureError
from aligngemini_sdk.extras import require
from aligngemini_sdk.manifest import MANIFEST_NAME

SIGNATURE_NAME = "manifest.sig"
ALGORITHM = "ed25519"
#: a signature file is a few hundred bytes; anything larger is refused unread
MAX_SIGNATURE_BYTES = 4096


def key_id(public_key: Any) -> str:
    """The first 16 hex digits of the SHA-256 of the raw 32-byte Ed25519 public key."""
    ser = require("cryptography.hazmat.primitives.serialization", "Signing and checking bundles")
    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem: str | os.PathLike[str] | bytes) -> Any:
    """An Ed25519 public key from PEM bytes or a PEM file (a private key's PEM gives its public half)."""
    ser = require("cryptography.hazmat.primitives.serialization", "Signing and checking bundles")
    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519")
    data = pem if isinstance(pem, bytes) else Path(pem).read_bytes()
    try:
        key = ser.load_pem_public_key(data)
    except ValueError:
        try:
            key = ser.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise BundleSignatureError(f"not a PEM Ed25519 key: {exc}") from None
    if not isinstance(key, ed.Ed25519PublicKey):
        raise BundleSignatureError(f"trusted keys must be Ed25519; got {type(key).__name__}")
    return key


def sign_manifest(root: str | os.PathLike[str], private_key_pem: str | os.PathLike[str] | bytes) -> str:
    """Sign ``root``'s manifest.json with an Ed25519 private key (PEM, unencrypted); writes manifest.sig atomically
    and returns the key id."""
    ser = require("cryptography.hazmat.primitives.serialization", "Signing and checking bundles")
    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519")
    data = private_key_pem if isinstance(private_key_pem, bytes) else Path(private_key_pem).read_bytes()
    key = ser.load_pem_private_key(data, password=None)
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise BundleSignatureError(f"bundles are signed with Ed25519 keys; got {type(key).__name__}")
    root = Path(root)
    kid = key_id(key.public_key())
    body = {"alg": ALGORITHM, "key_id": kid,
            "signature": base64.b64encode(key.sign((root / MANIFEST_NAME).read_bytes())).decode()}
    tmp = root / (SIGNATURE_NAME + ".tmp")
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(tmp, root / SIGNATURE_NAME)
    return kid


def read_signature(raw: bytes) -> tuple[str, bytes]:
    """(key id, signature bytes) from a manifest.sig's contents; refused by name when malformed."""
    try:
        body = json.loads(raw.decode("utf-8"))
        if not isinstance(body, dict) or body.get("alg") != ALGORITHM:
            raise ValueError(f"alg must be {ALGORITHM!r}")
        text = str(body["signature"])
        sig = base64.b64decode(text, validate=True)
        if base64.b64encode(sig).decode() != text:  # base64's unused low bits: one signature, many spellings
            raise ValueError("signature is not canonical base64")
        return str(body["key_id"]), sig
    except (ValueError, KeyError, UnicodeDecodeError, binascii.Error) as exc:
        raise BundleSignatureError(f"{SIGNATURE_NAME} is malformed: {exc}") from None


def check(manifest_bytes: bytes, signature_raw: bytes | None, trusted: list[Any]) -> str:
    """The key id of the trusted key that signed ``manifest_bytes``; :class:`BundleSignatureError` otherwise."""
    exceptions = require("cryptography.exceptions")
    if signature_raw is None:
        raise BundleSignatureError(f"the bundle is unsigned (no {SIGNATURE_NAME}) and trusted keys are required")
    kid, sig = read_signature(signature_raw)
    by_id = {key_id(k): k for k in trusted}
    if kid not in by_id:
        raise BundleSignatureError(f"the bundle is signed by key {kid}, which is not among the trusted keys "
                                   f"({', '.join(sorted(by_id))})")
    try:
        by_id[kid].verify(sig, manifest_bytes)
    except exceptions.InvalidSignature:
        raise BundleSignatureError(f"the manifest was changed after key {kid} signed it (signature does not "
                                   "match)") from None
    return kid
