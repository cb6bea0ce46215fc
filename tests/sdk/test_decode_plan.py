"""Decoding only what the branches read changes nothing they see.

Specification: for every branch, ``fit_to_spec`` of what :func:`decode_for_branches` hands it equals ``fit_to_spec``
of the full decode, byte for byte; a JPEG is region-decoded exactly when every loaded branch reads a centre crop
of the unresized image, and the Detector reports which decode ran; hostile inputs are refused before any pixel is
decoded, as on the full path.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from aligngemini_sdk import Detector, jpeg
from aligngemini_sdk.decode_plan import DecodePlan, crop_rect, decode_for_branches
from aligngemini_sdk.errors import ImageDecodeError, ImageTooLargeError
from aligngemini_sdk.manifest import InputSpec
from aligngemini_sdk.preprocess import fit_to_spec
from tests.conftest import SHARED
from tests.sdk.test_jpeg import encode, photo, with_orientation

needs_turbo = pytest.mark.skipif(
    not jpeg.status().available and os.environ.get("ALIGNGEMINI_REQUIRE_NATIVE_JPEG") != "1",
    reason=f"JPEG fast path unavailable here: {jpeg.status().detail}")

CROP224 = InputSpec(height=224, width=224, crop="center", resize="none")
CROP336 = InputSpec(height=336, width=336, crop="center", resize="none")
FULLCONV = InputSpec(height=0, width=0, crop="none", resize="none", max_side=512)
WHOLE = InputSpec(height=224, width=224, crop="none", resize="exact")


def full_decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)


def test_crop_rect_follows_fit_to_spec() -> None:
    assert crop_rect(CROP224, 1000, 600) == jpeg.Rect(188, 388, 224, 224)
    assert crop_rect(CROP224, 223, 600) is None           # padded, not cropped: decode it all
    assert crop_rect(FULLCONV, 1000, 300) == jpeg.Rect(0, 244, 300, 512)
    assert crop_rect(WHOLE, 4000, 3000) is None            # a resize reads every pixel
    assert DecodePlan({"pixel": CROP224, "semantic": None}).rects(4000, 3000) is None  # a VLM reads it all


@needs_turbo
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_each_branch_sees_what_a_full_decode_gives(orientation: int) -> None:
    data = with_orientation(photo((1401, 1003), seed=orientation), orientation, quality=87)
    plan = DecodePlan({"pixel": CROP224, "semantic": CROP336})
    got = decode_for_branches(data, plan, name="x.jpg")
    assert got.decode == "region"
    full = full_decode(data)
    assert got.size == (full.shape[1], full.shape[0])
    for key, spec in plan.specs.items():
        assert spec is not None
        np.testing.assert_array_equal(fit_to_spec(got.for_branch(key), spec), fit_to_spec(full, spec))


@needs_turbo
def test_a_branch_reading_the_whole_image_gets_a_full_decode() -> None:
    data = encode(photo((900, 700)))
    got = decode_for_branches(data, DecodePlan({"pixel": CROP224, "semantic": WHOLE}))
    assert got.decode == "full"
    np.testing.assert_array_equal(got.for_branch("semantic"), full_decode(data))
    small = decode_for_branches(encode(photo((200, 150))), DecodePlan({"pixel": CROP224}))
    assert small.decode == "full"  # smaller than the crop: padded from the whole image


def test_hostile_inputs_are_refused_before_decoding() -> None:
    data = encode(photo((640, 480)))
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_for_branches(data[: len(data) // 2], DecodePlan({"pixel": CROP224}), name="cut.jpg")
    with pytest.raises(ImageTooLargeError):
        decode_for_branches(data, DecodePlan({"pixel": CROP224}), max_pixels=640 * 480 - 1)
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_for_branches(b"", DecodePlan({"pixel": CROP224}))


@needs_turbo
@pytest.mark.shared_data
def test_detector_region_decode_gives_the_full_decode_verdicts() -> None:
    """The shipped default's pixel branch alone reads a 224 crop: region-decoded files score exactly as arrays."""
    photos = sorted((SHARED / "wild" / "images" / "real").rglob("*.jpg"))[:25]
    with Detector(load_semantic=False) as det:
        served = 0
        for p in photos:
            data = p.read_bytes()
            if data[:2] != b"\xff\xd8":
                continue
            by_file = det.detect(p)
            by_array = det.detect(full_decode(data), color_order="RGB")
            assert by_file.pixel.probability == by_array.pixel.probability, p
            served += by_file.extra["decode"] == "region"
        assert served >= 15
    camera = SHARED / "wild" / "images" / "real" / "drewnoakes__metadata-extractor-images" / "jpg__Canon EOS REBEL T3i.jpg"
    with Detector() as both:  # the whole-image branch declares the DCT reduction; the crop comes from the same pass
        assert both.bundle.manifest.semantic.input.jpeg_downscale == "dct"
        assert both.detect(camera).extra["decode"].startswith("dct 1/")


DCT = InputSpec(height=224, width=224, crop="none", resize="exact", jpeg_downscale="dct")


def test_reduction_keeps_both_sides_at_least_the_target() -> None:
    from aligngemini_sdk.decode_plan import reduction

    assert reduction(DCT, 4000, 3000) == 8      # 500 x 375
    assert reduction(DCT, 1800, 1000) == 4      # 450 x 250 (1/8: 225 x 125 is too small)
    assert reduction(DCT, 768, 512) == 2        # 384 x 256
    assert reduction(DCT, 300, 300) == 1
    assert reduction(WHOLE, 4000, 3000) == 1    # not declared: full decode
    shorter = InputSpec(height=224, width=224, crop="center", resize="shorter", jpeg_downscale="dct")
    assert reduction(shorter, 4000, 1800) == 8  # the shorter side must stay >= 224: 1800 / 8 = 225
    assert reduction(shorter, 4000, 1780) == 4  # ceil(1780 / 8) = 223


@needs_turbo
@pytest.mark.parametrize("orientation", [1, 6])
def test_a_dct_branch_gets_the_reduced_decode_and_crop_branches_their_region(orientation: int) -> None:
    data = with_orientation(photo((2000, 1500), seed=3), orientation, quality=90)
    got = decode_for_branches(data, DecodePlan({"pixel": CROP224, "semantic": DCT}))
    assert got.decode == "dct 1/4+region"
    reduced = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)[:, :, ::-1]
    np.testing.assert_array_equal(got.for_branch("semantic"), reduced)  # what OpenCV's reduced decode gives
    np.testing.assert_array_equal(fit_to_spec(got.for_branch("pixel"), CROP224), fit_to_spec(full_decode(data), CROP224))
    png = cv2.imencode(".png", photo((900, 700)))[1].tobytes()
    assert decode_for_branches(png, DecodePlan({"semantic": DCT})).decode == "full"  # only JPEGs are reduced


@needs_turbo
@pytest.mark.parametrize("progressive", [False, True])
def test_the_reduced_and_the_region_decode_run_side_by_side_with_the_same_pixels(monkeypatch, progressive: bool):
    """On two or more cores the DCT-reduced decode and the crop's region decode of one JPEG run in two threads; the
    arrays are those of one after the other, byte for byte."""
    import aligngemini_sdk.decode_plan as dp

    img = photo((2400, 1800), seed=5)
    flags = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    data = cv2.imencode(".jpg", img[:, :, ::-1], flags)[1].tobytes()
    plan = DecodePlan({"pixel": CROP224, "semantic": DCT})
    together = decode_for_branches(data, plan)
    monkeypatch.setattr(dp, "_decode_workers", lambda: 1)
    alone = decode_for_branches(data, plan)
    assert together.decode == alone.decode == "dct 1/8+region"
    for key in ("pixel", "semantic"):
        np.testing.assert_array_equal(together.for_branch(key), alone.for_branch(key))


@needs_turbo
def test_a_forked_child_decodes_and_detects_after_its_parent_did() -> None:
    """The decode workers and the detector's semantic workers are threads: a child forked after the parent used them
    inherits the executors but not their threads, and must not wait on them forever."""
    import multiprocessing

    data = cv2.imencode(".jpg", photo((2400, 1800), seed=7)[:, :, ::-1])[1].tobytes()
    plan = DecodePlan({"pixel": CROP224, "semantic": DCT})
    det = Detector(threads=1)  # ONNX Runtime's own intra-op threads are not fork-safe: one thread, no workers
    assert det.info()["branches_together"] or os.cpu_count() == 1
    expected = (decode_for_branches(data, plan).decode, det.detect(data).score)

    def child(out) -> None:  # type: ignore[no-untyped-def]
        out.put((decode_for_branches(data, plan).decode, det.detect(data).score))

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=child, args=(out,))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
    assert p.exitcode == 0, "the child hung or died"
    assert out.get(timeout=5) == expected
    det.close()


def test_manifest_declares_and_checks_the_dct_policy() -> None:
    from aligngemini_sdk.errors import BundleFormatError
    from aligngemini_sdk.manifest import Manifest, _parse_input

    assert _parse_input({"height": 224, "width": 224, "crop": "none", "resize": "exact",
                         "jpeg_downscale": "dct"}).jpeg_downscale == "dct"
    with pytest.raises(BundleFormatError, match="jpeg_downscale"):
        _parse_input({"height": 224, "width": 224, "crop": "center", "resize": "none", "jpeg_downscale": "dct"})
    with pytest.raises(BundleFormatError, match="jpeg_downscale"):
        _parse_input({"height": 224, "width": 224, "resize": "exact", "jpeg_downscale": "lanczos"})
    from aligngemini_sdk.detector import default_bundle_path

    m = Manifest.from_json((default_bundle_path() / "manifest.json").read_text())
    assert m.semantic is not None and m.semantic.input is not None
    assert m.semantic.input.jpeg_downscale == "dct" and "jpeg-dct-downscale" in m.to_dict()["requires"]
    import dataclasses

    none = dataclasses.replace(m, semantic=dataclasses.replace(
        m.semantic, input=dataclasses.replace(m.semantic.input, jpeg_downscale="none")))
    assert "jpeg_downscale" not in none.to_json()  # "none" is not written: older readers see no change
    assert "jpeg-dct-downscale" not in none.to_dict()["requires"]
    assert Manifest.from_json(m.to_json()).semantic.input.jpeg_downscale == "dct"  # type: ignore[union-attr]
