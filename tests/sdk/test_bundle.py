"""Bundles: manifests are validated, checksums verified before loading, escapes refused, tars equivalent."""

import json
import shutil
import tarfile

import pytest

from aligngemini_sdk import Bundle, Detector
from aligngemini_sdk.bundle import MANIFEST_NAME, write_device_profile
from aligngemini_sdk.errors import BundleFormatError, BundleIntegrityError
from aligngemini_sdk.export.bundle_writer import compute_bundle_id, pack_tar
from aligngemini_sdk.manifest import SCHEMA_VERSION, LatencyStat, Manifest
from tests.conftest import real_images

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def manifest_json(root):
    return json.loads((root / MANIFEST_NAME).read_text())


def write_json(root, data):
    (root / MANIFEST_NAME).write_text(json.dumps(data))


def test_manifest_round_trips(ladeda_bundle):
    m = Bundle.open(ladeda_bundle).manifest
    again = Manifest.from_json(m.to_json())
    assert again == m
    assert m.schema_version == SCHEMA_VERSION
    assert m.pixel is not None and m.pixel.input.crop == "none"  # LaDeDa: full image
    assert m.provenance["pixel"]["arch"] == "ladeda"
    assert m.provenance["pixel"]["source_sha256"]


def test_bundle_id_is_stable_and_content_derived(ladeda_bundle, tmp_path):
    b = Bundle.open(ladeda_bundle)
    assert b.manifest.bundle_id == compute_bundle_id(b.manifest)
    moved = tmp_path / "elsewhere"
    shutil.copytree(ladeda_bundle, moved)
    assert Bundle.open(moved).manifest.bundle_id == b.manifest.bundle_id


def test_verify_all_files(ladeda_bundle):
    assert set(Bundle.open(ladeda_bundle).verify().values()) == {"ok"}


def test_tampered_model_file_is_refused_before_loading(bundle_copy):
    model = bundle_copy / "pixel" / "model.fp32.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    model.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="checksum mismatch"):
        Detector(bundle_copy)


def test_truncated_model_file(bundle_copy):
    model = bundle_copy / "pixel" / "model.fp32.onnx"
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(BundleIntegrityError, match="bytes"):
        Bundle.open(bundle_copy).verify()


def test_missing_model_file(bundle_copy):
    (bundle_copy / "pixel" / "model.fp32.onnx").unlink()
    with pytest.raises(BundleIntegrityError, match="missing"):
        Detector(bundle_copy)


@pytest.mark.parametrize("evil", ["../outside.onnx", "/etc/passwd", "pixel/../../outside.onnx"])
def test_paths_escaping_the_bundle_are_refused(bundle_copy, evil):
    outside = bundle_copy.parent / "outside.onnx"
    shutil.copy(bundle_copy / "pixel" / "model.fp32.onnx", outside)
    data = manifest_json(bundle_copy)
    data["branches"]["pixel"]["artifacts"]["fp32"]["files"]["model"]["path"] = evil
    write_json(bundle_copy, data)
    with pytest.raises(BundleIntegrityError, match=r"escapes|absolute"):
        Detector(bundle_copy)


def _point_model_at(bundle_copy, path, nbytes=None):
    data = manifest_json(bundle_copy)
    entry = data["branches"]["pixel"]["artifacts"]["fp32"]["files"]["model"]
    entry["path"] = path
    if nbytes is not None:
        entry["bytes"] = nbytes
    write_json(bundle_copy, data)


def test_a_model_path_that_names_a_directory_is_refused_by_name(bundle_copy):
    _point_model_at(bundle_copy, "pixel")
    with pytest.raises(BundleIntegrityError, match="pixel is a directory"):
        Detector(bundle_copy)


@pytest.mark.parametrize(("path", "match"), [("x" * 5000, "File name too long"), ("pixel/a\0b.onnx", "NUL byte")])
def test_a_model_path_the_os_cannot_name_is_an_integrity_error(bundle_copy, path, match):
    _point_model_at(bundle_copy, path)
    with pytest.raises(BundleIntegrityError, match=match):
        Detector(bundle_copy)


def test_a_fifo_in_place_of_a_model_is_refused_before_it_is_opened(bundle_copy):
    import os

    os.mkfifo(bundle_copy / "pixel" / "pipe.onnx")  # opening it for reading would block until a writer came
    _point_model_at(bundle_copy, "pixel/pipe.onnx", nbytes=0)
    with pytest.raises(BundleIntegrityError, match=r"pipe\.onnx is a device, pipe or socket"):
        Detector(bundle_copy)
    with pytest.raises(BundleIntegrityError, match=r"pipe\.onnx is a device, pipe or socket"):
        Bundle.open(bundle_copy).verify()


def test_an_overstated_size_is_refused_before_anything_is_read(bundle_copy):
    # 1 TiB claimed for a small file: the reader must compare sizes, not try to read (allocate) that much
    _point_model_at(bundle_copy, "pixel/model.fp32.onnx", nbytes=1 << 40)
    with pytest.raises(BundleIntegrityError, match=r"manifest says 1099511627776"):
        Detector(bundle_copy)


@pytest.mark.parametrize("nbytes", [2 ** 70, -1, 1.5, "12", True])
def test_a_size_that_is_not_a_plausible_whole_number_is_a_format_error(bundle_copy, nbytes):
    _point_model_at(bundle_copy, "pixel/model.fp32.onnx", nbytes=nbytes)
    with pytest.raises(BundleFormatError, match="bytes must be a whole number"):
        Detector(bundle_copy)


def test_a_manifest_or_model_card_that_is_not_utf8_text_is_a_format_error(bundle_copy):
    card = "CARD.md"
    data = manifest_json(bundle_copy)
    data["model_card"] = card
    write_json(bundle_copy, data)
    (bundle_copy / card).write_bytes(b"\xff\xfe not text")
    with pytest.raises(BundleFormatError, match=r"CARD\.md is not UTF-8 text"):
        Bundle.open(bundle_copy).model_card()
    (bundle_copy / MANIFEST_NAME).write_bytes(b"{\xff}")
    with pytest.raises(BundleFormatError, match=r"manifest\.json is not UTF-8 text"):
        Bundle.open(bundle_copy)


def test_symlink_escaping_the_bundle_is_refused(bundle_copy):
    outside = bundle_copy.parent / "real.onnx"
    model = bundle_copy / "pixel" / "model.fp32.onnx"
    shutil.move(model, outside)
    model.symlink_to(outside)
    with pytest.raises(BundleIntegrityError, match="escapes"):
        Detector(bundle_copy)


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda d: d.update(schema_version=99), "schema_version"),
    (lambda d: d.pop("bundle_id"), "bundle_id"),
    (lambda d: d["branches"]["pixel"]["artifacts"]["fp32"].update(runtime="magic"), "unknown runtime"),
    (lambda d: d["branches"]["pixel"]["artifacts"]["fp32"]["files"]["model"].update(sha256="xyz"), "hex digest"),
    (lambda d: d["branches"]["pixel"]["input"].update(crop="zoom"), "crop"),
    (lambda d: d.update(fusion={"rule": "xor"}), "fusion.rule"),
    (lambda d: d.update(branches={}), "no branches"),
    (lambda d: d.update(requires=["hologram-input"]), "needs features this SDK does not have"),
    (lambda d: d.update(requires="pixel-input"), "list of feature names"),
])
def test_malformed_manifests_raise_format_errors(bundle_copy, mutate, match):
    data = manifest_json(bundle_copy)
    mutate(data)
    write_json(bundle_copy, data)
    with pytest.raises(BundleFormatError, match=match):
        Bundle.open(bundle_copy)


def test_not_json_and_not_a_bundle(tmp_path, bundle_copy):
    (bundle_copy / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleFormatError, match="JSON"):
        Bundle.open(bundle_copy)
    with pytest.raises(BundleFormatError, match="not found"):
        Bundle.open(tmp_path / "nothing")
    (tmp_path / "file.bin").write_bytes(b"abc")
    with pytest.raises(BundleFormatError):
        Bundle.open(tmp_path / "file.bin")


def test_tar_bundle_gives_identical_results(ladeda_bundle, tmp_path):
    tar = pack_tar(ladeda_bundle, tmp_path / "b.tar")
    cache = tmp_path / "cache"
    d_dir = Detector(ladeda_bundle)
    d_tar = Detector(Bundle.open(tar, cache_dir=cache))
    for img in real_images(2):
        assert d_tar.detect(img).score == d_dir.detect(img).score
    assert d_tar.bundle.manifest.bundle_id == d_dir.bundle.manifest.bundle_id
    # a second open reuses the unpacked copy
    assert Bundle.open(tar, cache_dir=cache).root == d_tar.bundle.root


def test_tar_with_escaping_member_is_refused(tmp_path, ladeda_bundle):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        tf.add(ladeda_bundle / MANIFEST_NAME, arcname=MANIFEST_NAME)
        tf.add(ladeda_bundle / MANIFEST_NAME, arcname="../../escape.json")
    with pytest.raises(BundleIntegrityError, match="escapes"):
        Bundle.open(evil, cache_dir=tmp_path / "c")
    assert not (tmp_path / "escape.json").exists()


def test_tar_with_symlink_member_is_refused(tmp_path, ladeda_bundle):
    evil = tmp_path / "link.tar"
    with tarfile.open(evil, "w") as tf:
        tf.add(ladeda_bundle / MANIFEST_NAME, arcname=MANIFEST_NAME)
        info = tarfile.TarInfo("pixel/model.fp32.onnx")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(BundleIntegrityError, match="not a regular file"):
        Bundle.open(evil, cache_dir=tmp_path / "c")


def test_a_tampered_tar_is_refused_while_unpacking_and_leaves_nothing_in_the_cache(tmp_path, bundle_copy):
    model = bundle_copy / "pixel" / "model.fp32.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte: only the digest can tell
    model.write_bytes(bytes(data))
    tar, cache = pack_tar(bundle_copy, tmp_path / "tampered.tar"), tmp_path / "cache"
    with pytest.raises(BundleIntegrityError, match=r"checksum mismatch for pixel/model\.fp32\.onnx"):
        Bundle.open(tar, cache_dir=cache)
    assert list(cache.iterdir()) == []  # neither an unpacked copy nor a half-written temp folder


def test_a_tar_whose_manifest_is_not_utf8_is_a_format_error(tmp_path, bundle_copy):
    (bundle_copy / MANIFEST_NAME).write_bytes((bundle_copy / MANIFEST_NAME).read_bytes().replace(b'"', b'\xff"', 1))
    tar, cache = pack_tar(bundle_copy, tmp_path / "latin.tar"), tmp_path / "cache"
    with pytest.raises(BundleFormatError, match="not UTF-8"):
        Bundle.open(tar, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_device_profile_is_written_atomically_and_read_back(bundle_copy):
    write_device_profile(bundle_copy, "x86_64-test-2t-cpu", {"pixel/fp32": LatencyStat(1.0, 2.0, 10)})
    m = Bundle.open(bundle_copy).manifest
    assert m.device_profiles["x86_64-test-2t-cpu"]["pixel/fp32"].p90_ms == 2.0
    assert not list(bundle_copy.glob(".manifest-*"))  # no temp files left behind


def test_a_bundle_lists_the_features_its_artifacts_need(bundle_copy):
    """An SDK that ignored an artifact's raw-pixel input would feed it normalised floats and give wrong verdicts
    silently; so the manifest names every feature its artifacts use, derived from the artifacts, and a reader
    refuses features it lacks (tested above). The default's semantic branch is an ONNX classifier reading
    DCT-reduced JPEGs and it decides at a named operating point; a float LaDeDa needs nothing; an INT8 artifact on
    the crop's bytes needs pixel-input."""
    from aligngemini_sdk import default_bundle_path

    default = Bundle.open(default_bundle_path()).manifest
    needs = ["jpeg-dct-downscale", "operating-points", "semantic-onnx"]
    assert default.to_dict()["requires"] == needs
    assert manifest_json(default_bundle_path())["requires"] == needs  # on disk
    assert "requires" not in Bundle.open(bundle_copy).manifest.to_dict()  # LaDeDa FP32 takes floats
    data = manifest_json(bundle_copy)
    data["branches"]["pixel"]["artifacts"]["fp32"]["options"] = {"input": {"scale": 0.02, "zero_point": 120}}
    assert Manifest.from_dict(data).to_dict()["requires"] == ["uint8-input"]
    data["branches"]["pixel"]["artifacts"]["fp32"]["options"] = {"input": {"scale": 1.0, "zero_point": 128,
                                                                           "values": "pixels"}}
    assert Manifest.from_dict(data).to_dict()["requires"] == ["pixel-input"]
