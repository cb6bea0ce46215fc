"""The manifest's fusion section and semantic branch: what a reader accepts, and what it refuses by name."""

import copy

import pytest

from aligngemini_sdk.errors import BundleFormatError
from aligngemini_sdk.manifest import Manifest, required_features

SHA = "0" * 64
BASE = {
    "schema_version": 1, "bundle_id": "ag-test", "name": "t",
    "branches": {
        "pixel": {"artifacts": {"fp32": {"runtime": "onnxruntime", "precision": "fp32",
                                         "files": {"model": {"path": "pixel/m.onnx", "sha256": SHA, "bytes": 1}}}},
                  "input": {"height": 224, "width": 224}, "threshold": 0.5},
        "semantic": {"artifacts": {"fp32": {"runtime": "onnxruntime", "precision": "fp32",
                                            "files": {"model": {"path": "semantic/m.onnx", "sha256": SHA,
                                                                "bytes": 1}}}},
                     "input": {"height": 224, "width": 224, "crop": "none", "resize": "exact"}, "threshold": 0.4},
    },
    "fusion": {"rule": "logistic", "weights": {"pixel": 1.5, "semantic": 0.7}, "bias": -0.2, "threshold": 0.5,
               "operating_points": {"fpr5": {"fusion": 0.62, "target_fpr": 0.05, "measured": {"fpr": 0.05}}},
               "default_operating_point": "fpr5"},
}


def parsed(mutate=None):
    d = copy.deepcopy(BASE)
    if mutate:
        mutate(d)
    return Manifest.from_dict(d)


def test_an_onnx_semantic_branch_and_a_logistic_fusion_with_operating_points_round_trip():
    m = parsed()
    assert m.semantic is not None and m.semantic.input is not None and m.semantic.input.resize == "exact"
    assert not m.semantic.is_vlm and m.fusion.bias == -0.2 and m.fusion.operating_points["fpr5"].fusion == 0.62
    assert Manifest.from_dict(m.to_dict()) == m
    # an older reader must refuse rather than misread: both new features are listed as required
    assert required_features(m) == ["operating-points", "semantic-onnx"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["fusion"].update(default_operating_point="fpr1"), "default_operating_point 'fpr1'"),
    (lambda d: d["fusion"]["operating_points"]["fpr5"].update(fusion=float("nan")), "fpr5.fusion"),
    (lambda d: d["fusion"]["operating_points"]["fpr5"].update(fusion=1.5), "fpr5.fusion"),
    (lambda d: d["fusion"].update(bias=float("inf")), "fusion.bias"),
    (lambda d: d["fusion"]["weights"].update(pixel="heavy"), "fusion.weights.pixel"),
    (lambda d: d["branches"]["semantic"].pop("input"), "needs semantic.input"),
    (lambda d: d["fusion"].update(rule="vote"), "fusion.rule"),
    (lambda d: d["fusion"].update(operating_points={f"p{i}": {"fusion": 0.5} for i in range(65)}),
     "at most 64 points"),
    (lambda d: d["fusion"].update(operating_points=[0.5]), "fusion.operating_points must be an object"),
])
def test_a_bad_fusion_section_or_semantic_branch_is_refused_by_name(mutate, message):
    with pytest.raises(BundleFormatError, match=message):
        parsed(mutate)


def test_a_vlm_semantic_branch_still_needs_its_prompt_and_labels():
    def vlm(d):
        d["branches"]["semantic"] = {"artifacts": {"q4": {"runtime": "llama.cpp", "precision": "Q4_K_M", "files": {
            "model": {"path": "s/m.gguf", "sha256": SHA, "bytes": 1},
            "mmproj": {"path": "s/p.gguf", "sha256": SHA, "bytes": 1}}}}}
    with pytest.raises(BundleFormatError, match=r"semantic\.labels"):
        parsed(vlm)


@pytest.mark.parametrize(("runtime", "files", "missing"), [
    ("onnxruntime", {"weights": "m.onnx"}, "model"),
    ("tensorrt", {"model": "m.onnx"}, "engine"),
    ("llama.cpp", {"model": "m.gguf"}, "mmproj"),
])
def test_an_artifact_without_the_file_its_runtime_opens_is_refused_by_name(runtime, files, missing):
    def mutate(d):
        d["branches"]["semantic"]["artifacts"]["fp32"] = {"runtime": runtime, "precision": "fp32", "files": {
            role: {"path": f"semantic/{path}", "sha256": SHA, "bytes": 1} for role, path in files.items()}}
    with pytest.raises(BundleFormatError, match=rf"semantic/fp32: a {runtime} artifact .* missing \['{missing}'\]"):
        parsed(mutate)


def _vlm_semantic(d, **fields):
    d["branches"]["semantic"] = {"artifacts": {"q4": {"runtime": "llama.cpp", "precision": "Q4_K_M", "files": {
        "model": {"path": "s/m.gguf", "sha256": SHA, "bytes": 1},
        "mmproj": {"path": "s/p.gguf", "sha256": SHA, "bytes": 1}}}},
        "prompt": {"text": "{image} real or fake?"}, "labels": {"fake": ["fake"], "real": ["real"]}, **fields}


@pytest.mark.parametrize("value", [float("inf"), 1.5, True, 2**70, -1, "336"])
@pytest.mark.parametrize(("field", "mutate"), [
    ("input.height", lambda d, v: d["branches"]["pixel"]["input"].update(height=v)),
    ("input.width", lambda d, v: d["branches"]["pixel"]["input"].update(width=v)),
    ("input.max_side", lambda d, v: d["branches"]["pixel"]["input"].update(max_side=v)),
    ("semantic.n_ctx", lambda d, v: _vlm_semantic(d, n_ctx=v)),
    ("semantic.image_max_side", lambda d, v: _vlm_semantic(d, image_max_side=v)),
])
def test_a_pixel_or_token_count_must_be_a_whole_number_in_range(field, mutate, value):
    # found by fuzzing the shipped manifest: Infinity was an OverflowError, 1.5 and true were silently truncated,
    # and n_ctx 2**70 would have reached llama.cpp's allocator
    with pytest.raises(BundleFormatError, match=field):
        parsed(lambda d: mutate(d, value))


def test_an_overflowing_number_anywhere_is_a_format_error_not_an_overflow():
    profile = {"x86_64-test": {"pixel/fp32": {"p50_ms": 1.0, "p90_ms": 2.0, "n": float("inf")}}}
    with pytest.raises(BundleFormatError, match="OverflowError"):
        parsed(lambda d: d.update(device_profiles=profile))
