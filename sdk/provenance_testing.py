"""A throwaway PKI for trying the provenance branch: a root CA and a leaf signing certificate made on the spot,
a c2pa-python signer for them, and a helper that signs an image declaring its digital source type.

For tests, benchmarks and local experiments only: the keys live in memory and the root is trusted by nobody
unless passed as ``trust_anchors``. Needs the ``[c2pa]`` extra and ``cryptography``.
"""

from __future__ import annotations

import datetime
import io
import json
from dataclasses import dataclass
from typing import Any

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


@dataclass(frozen=True)
class TestPki:
    signer: Any  # c2pa.Signer
    root_pem: bytes


def make_test_pki(device: str = "Test Device") -> TestPki:
    """A root CA and a leaf (ES256, P-256) that C2PA accepts, and a c2pa signer holding the leaf's chain."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from aligngemini_sdk.extras import require

    c2pa = require("c2pa")

    def name(cn: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                                                           "aligngemini test PKI")])

    def cert(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> Any:
        now = datetime.datetime.now(datetime.timezone.utc)
        usage = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False, data_encipherment=False,
                     key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(**usage), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        if not ca:
            b = (b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                 .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                critical=False))
        return b.sign(issuer_key, hashes.SHA256())

    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = cert("aligngemini test root", root_key, "aligngemini test root", root_key, ca=True)
    leaf = cert(device, leaf_key, "aligngemini test root", root_key, ca=False)
    pem = [c.public_bytes(serialization.Encoding.PEM) for c in (leaf, root)]
    key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg=b"es256", sign_cert=pem[0] + pem[1], private_key=key,
                                                       ta_url=None))
    return TestPki(signer, pem[1])


def sign_image(pki: TestPki, data: bytes, source_type: str, generator: str, mime: str = "image/jpeg") -> bytes:
    """``data`` with a C2PA manifest whose ``c2pa.created`` action declares ``source_type`` (an IPTC code such as
    ``trainedAlgorithmicMedia`` or ``digitalCapture``), signed by ``pki``."""
    from aligngemini_sdk.extras import require

    c2pa = require("c2pa")
    manifest = {"claim_generator_info": [{"name": generator, "version": "1.0"}], "format": mime,
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": IPTC + source_type}]}}]}
    out = io.BytesIO()
    c2pa.Builder(json.dumps(manifest)).sign(pki.signer, mime, io.BytesIO(data), out)
    return out.getvalue()
