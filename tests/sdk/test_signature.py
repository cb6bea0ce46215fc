"""Signed bundles: a device that trusts a vendor's key runs only manifests that key signed, byte for byte."""

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from aligngemini_sdk import Bundle, Detector, DetectorOptions
from aligngemini_sdk.bundle import MANIFEST_NAME, write_device_profile
from aligngemini_sdk.errors import BundleIntegrityError, BundleSignatureError
from aligngemini_sdk.export.bundle_writer import pack_tar
from aligngemini_sdk.manifest import LatencyStat
from aligngemini_sdk.signature import SIGNATURE_NAME, key_id, sign_manifest
from tests.conftest import real_images
from tests.sdk.test_cli import cli

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def keypair(tmp_path, name):
    """A fresh Ed25519 key written as PEM: (private key file, public key file, key id)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private, public = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public, key_id(key.public_key())


@pytest.fixture
def vendor(tmp_path):
    return keypair(tmp_path, "vendor")


def test_a_signed_bundle_opens_for_the_key_that_signed_it(bundle_copy, vendor):
    private, public, kid = vendor
    assert sign_manifest(bundle_copy, private) == kid
    b = Bundle.open(bundle_copy, trusted_keys=[public])
    assert b.signed_by == kid and b.signature_key_id == kid
    det = Detector(bundle_copy, DetectorOptions(trusted_keys=(str(public),)))
    assert det.detect(real_images(1)[0]).pixel.ran


def test_a_threshold_changed_after_signing_is_refused(bundle_copy, vendor):
    private, public, _ = vendor
    sign_manifest(bundle_copy, private)
    m = json.loads((bundle_copy / MANIFEST_NAME).read_text())
    m["branches"]["pixel"]["threshold"] = 0.99  # every checksum still matches: only the signature can tell
    (bundle_copy / MANIFEST_NAME).write_text(json.dumps(m))
    Bundle.open(bundle_copy).verify()
    with pytest.raises(BundleSignatureError, match="changed after key"):
        Bundle.open(bundle_copy, trusted_keys=[public])
    with pytest.raises(BundleSignatureError):
        Detector(bundle_copy, trusted_keys=(str(public),))


def test_unsigned_or_foreign_signed_bundles_are_refused_only_when_keys_are_trusted(bundle_copy, vendor, tmp_path):
    _, public, _ = vendor
    with pytest.raises(BundleSignatureError, match="unsigned"):
        Bundle.open(bundle_copy, trusted_keys=[public])
    other_private, _, other_id = keypair(tmp_path, "other")
    sign_manifest(bundle_copy, other_private)
    with pytest.raises(BundleSignatureError, match=f"signed by key {other_id}, which is not among"):
        Bundle.open(bundle_copy, trusted_keys=[public])
    assert Bundle.open(bundle_copy).signed_by is None  # no trusted keys: nothing is checked, as before


def test_a_tar_carries_its_signature(bundle_copy, vendor, tmp_path):
    private, public, kid = vendor
    sign_manifest(bundle_copy, private)
    tar = pack_tar(bundle_copy, tmp_path / "signed.tar")
    assert Bundle.open(tar, cache_dir=tmp_path / "cache", trusted_keys=[public]).signed_by == kid


@pytest.mark.parametrize("body", [b"not json", b'{"alg": "rsa", "key_id": "x", "signature": ""}',
                                  b'{"alg": "ed25519", "key_id": "x", "signature": "***"}', b"\xff\xfe"])
def test_a_malformed_signature_file_is_refused_by_name(bundle_copy, vendor, body):
    _, public, _ = vendor
    (bundle_copy / SIGNATURE_NAME).write_bytes(body)
    with pytest.raises(BundleSignatureError, match=r"manifest\.sig is malformed"):
        Bundle.open(bundle_copy, trusted_keys=[public])


def test_a_signature_has_one_spelling(bundle_copy, vendor):
    """Found by benchmarks/fuzz_bundles.py: the base64 character before '==' carries 4 unused bits, so 'A' -> 'B'
    there decodes to the same signature. Only the canonical encoding is accepted."""
    private, public, _ = vendor
    sign_manifest(bundle_copy, private)
    body = json.loads((bundle_copy / SIGNATURE_NAME).read_text())
    canonical = body["signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert canonical.endswith("==") and alphabet.index(canonical[-3]) % 16 == 0  # 64 bytes: the low 4 bits unused
    body["signature"] = canonical[:-3] + alphabet[alphabet.index(canonical[-3]) + 1] + "=="
    assert base64.b64decode(body["signature"]) == base64.b64decode(canonical)  # the same signature, spelled otherwise
    (bundle_copy / SIGNATURE_NAME).write_text(json.dumps(body))
    with pytest.raises(BundleSignatureError, match="not canonical base64"):
        Bundle.open(bundle_copy, trusted_keys=[public])


def test_only_ed25519_keys_are_trusted(bundle_copy, tmp_path):
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(BundleSignatureError, match="Ed25519"):
        Bundle.open(bundle_copy, trusted_keys=[pem])


def test_rewriting_the_manifest_removes_the_signature_it_would_break(bundle_copy, vendor):
    private, public, _ = vendor
    sign_manifest(bundle_copy, private)
    write_device_profile(bundle_copy, "x86_64-test-2t-cpu", {"pixel/fp32": LatencyStat(1.0, 2.0, 10)})
    assert not (bundle_copy / SIGNATURE_NAME).exists()
    with pytest.raises(BundleSignatureError, match="unsigned"):
        Bundle.open(bundle_copy, trusted_keys=[public])


def test_the_cli_signs_and_detect_checks(bundle_copy, vendor):
    private, public, kid = vendor
    assert json.loads(cli("export", "sign", bundle_copy, "--key", private).stdout)["key_id"] == kid
    info = json.loads(cli("info", bundle_copy, "--json", "--trusted-key", public).stdout)
    assert info["signature"] == {"key_id": kid, "checked": True}
    image = real_images(1)[0]
    assert cli("detect", image, "--bundle", bundle_copy, "--trusted-key", public, "--json").returncode == 0
    (bundle_copy / MANIFEST_NAME).write_text((bundle_copy / MANIFEST_NAME).read_text().replace('"threshold": 0.',
                                                                                               '"threshold": 0.0', 1))
    r = cli("detect", image, "--bundle", bundle_copy, "--trusted-key", public, check=False)
    assert r.returncode == 1 and "BundleSignatureError" in r.stderr


@pytest.mark.parametrize("keys", [[], (), "vendor.pub.pem"])
def test_an_empty_or_bare_trusted_key_list_is_an_error_not_a_silent_pass(bundle_copy, vendor, keys):
    sign_manifest(bundle_copy, vendor[0])
    with pytest.raises(BundleSignatureError, match="non-empty list"):
        Bundle.open(bundle_copy, trusted_keys=keys)


def test_a_signature_linked_from_outside_the_bundle_is_refused(bundle_copy, vendor, tmp_path):
    sign_manifest(bundle_copy, vendor[0])
    outside = tmp_path / "elsewhere.sig"
    (bundle_copy / SIGNATURE_NAME).rename(outside)
    (bundle_copy / SIGNATURE_NAME).symlink_to(outside)
    with pytest.raises(BundleIntegrityError, match="link out of the bundle"):
        Bundle.open(bundle_copy, trusted_keys=[vendor[1]])
