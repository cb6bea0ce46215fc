"""The bundle manifest (``manifest.json``): what a bundle contains and how to run it.

Preprocessing, thresholds, prompts and fusion live here, not in code, so that one SDK build runs any
bundle an exporter writes. The schema is versioned; readers refuse versions they do not know rather
than guessing.

Schema (version 1)::

    {
      "schema_version": 1,
      "requires": ["pixel-input"],           # features a reader must have (see FEATURES); absent when none
      "bundle_id": "ag-...",                 # stable: derived from the model files' hashes
      "name": "...", "description": "...", "placeholder": false,
      "branches": {
        "pixel": {
          "artifacts": {"int8": {"runtime": "onnxruntime", "precision": "int8",
                                 "files": {"model": {"path": "pixel/model.int8.onnx",
                                                     "sha256": "...", "bytes": 123}}}},
          "default_artifact": "int8",
          "input": {"height": 336, "width": 336, "crop": "center", "resize": "none", ...},
          "threshold": 0.5,
          "validation": {...}                # accuracy gate results, per artifact
        },
        "semantic": {
          "artifacts": {"q4_k_m": {"runtime": "llama.cpp", "precision": "Q4_K_M",
                                   "files": {"model": {...}, "mmproj": {...}}}},
          "prompt": {"text": "<chat header>{image}question<chat footer>"}, "labels": {"fake": ["fake"], "real": ["real"]},
          "threshold": 0.5, "n_ctx": 2048
        }
      },
      "fusion": {"rule": "or"},
      "device_profiles": {"<device key>": {"pixel/int8": {"p50_ms": 1.0, "p90_ms": 1.2, "n": 50}}},
      "provenance": {...}, "model_card": "MODEL_CARD.md"
    }
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from aligngemini_sdk.errors import BundleFormatError
from aligngemini_sdk.provenance import ProvenancePolicy

SCHEMA_VERSION = 1
#: the manifest's file name inside a bundle
MANIFEST_NAME = "manifest.json"
BRANCHES = ("pixel", "semantic")
#: runtime -> the file roles each of its artifacts must list (the runtime opens them by these names)
REQUIRED_FILES: dict[str, tuple[str, ...]] = {"onnxruntime": ("model",), "tensorrt": ("engine",),
                                              "llama.cpp": ("model", "mmproj")}
RUNTIMES = tuple(REQUIRED_FILES)
#: The largest file a manifest may list (1 TiB; a 7B VLM in FP16 is ~15 GB)
MAX_FILE_BYTES = 1 << 40
CROP_POLICIES = ("center", "none")
RESIZE_POLICIES = ("none", "shorter", "exact")
JPEG_DOWNSCALE = ("none", "dct")
FUSION_RULES = ("or", "and", "mean", "logistic", "pixel_only")

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Features a reader must implement to run a bundle correctly, by the name a manifest lists in ``requires``.
#: Why: schema 1 readers ignore keys they do not know, so a bundle whose artifact wants, say, raw pixels on a
#: bordered canvas would be fed normalised floats by an older SDK and give wrong verdicts without an error.
#: Writers list every feature their artifacts use (derived from the artifacts, see ``required_features``);
#: readers refuse a bundle that lists one they lack. Adding a feature never needs a new schema version.
FEATURES: dict[str, str] = {
    "uint8-input": "a static-INT8 artifact takes its input already quantized (options.input.values = quantized)",
    "pixel-input": "a static-INT8 artifact takes the crop's RGB bytes on a bordered canvas "
                   "(options.input.values = pixels)",
    "semantic-onnx": "the semantic branch is an ONNX image classifier (semantic.input), not a VLM",
    "operating-points": "the bundle's verdicts use a named operating point's thresholds "
                        "(fusion.default_operating_point), not the branch thresholds",
    "jpeg-dct-downscale": "a branch takes JPEGs decoded at a reduced DCT scale before its resize "
                          "(input.jpeg_downscale = dct)",
}


@dataclass(frozen=True)
class FileEntry:
    """One model file: its path relative to the bundle root, SHA-256 and size."""

    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Artifact:
    """One runnable form of a branch (e.g. the INT8 ONNX model, or a Q4_K_M GGUF + mmproj)."""

    runtime: str
    precision: str
    files: dict[str, FileEntry]
    options: dict[str, Any] = field(default_factory=dict)  # runtime specifics (e.g. TensorRT build key)


@dataclass(frozen=True)
class InputSpec:
    """How an RGB image becomes the pixel model's input tensor.

    ``crop="center"`` with ``resize="none"`` is the AlignGemini/DDA policy: pixel artifacts survive only
    if the image is not resampled. Images smaller than the crop are reflect-padded, never upscaled.
    ``height``/``width`` of 0 with ``crop="none"`` means the full image at its own size (fully
    convolutional models such as Tiny-LaDeDa); ``max_side`` then caps work on huge inputs by a
    centre crop.
    """

    height: int = 336
    width: int = 336
    crop: str = "center"
    resize: str = "none"
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    color_order: str = "RGB"
    layout: str = "NCHW"
    scale: float = 255.0
    max_side: int = 1024
    #: "dct": a JPEG is decoded at the largest 1/2, 1/4 or 1/8 scale (libjpeg's scaled inverse DCT) that keeps both
    #: sides at least the resize target, then resized as ``resize`` says; other formats, or "none", decode in full.
    #: Only with ``resize`` "exact" or "shorter" (a branch that resamples anyway).
    jpeg_downscale: str = "none"

    @property
    def fixed_size(self) -> bool:
        return self.height > 0 and self.width > 0 and (self.crop != "none" or self.resize == "exact")


@dataclass(frozen=True)
class PixelBranchSpec:
    artifacts: dict[str, Artifact]
    default_artifact: str
    input: InputSpec
    threshold: float = 0.5
    validation: dict[str, Any] = field(default_factory=dict)
    arch: str = ""


@dataclass(frozen=True)
class SemanticBranchSpec:
    """The branch that judges global content and style: a VLM on llama.cpp (``prompt``, ``labels``), or an ONNX
    image classifier with one fake-logit (``input``: its resize policy and mean/std, as a pixel branch's)."""

    artifacts: dict[str, Artifact]
    default_artifact: str
    prompt: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)
    threshold: float = 0.5
    n_ctx: int = 2048
    validation: dict[str, Any] = field(default_factory=dict)
    arch: str = ""
    #: semantics need no full resolution; larger images are downsized (area) before the projector
    image_max_side: int = 448
    #: the input of an ONNX image-classifier artifact (None for a VLM-only branch)
    input: InputSpec | None = None

    @property
    def is_vlm(self) -> bool:
        return any(a.runtime == "llama.cpp" for a in self.artifacts.values())


@dataclass(frozen=True)
class OperatingPoint:
    """Thresholds chosen for a target real-photo false-positive rate (``fpr5``: 5 %), on data named in ``measured``.
    A None threshold keeps the branch's (or fusion's) own."""

    pixel: float | None = None
    semantic: float | None = None
    fusion: float | None = None
    target_fpr: float | None = None
    #: what was measured when it was chosen: fpr, tpr, n_real, n_fake, data
    measured: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FusionSpec:
    """``or``/``and`` of the branch verdicts, a weighted ``mean`` of probabilities, or ``logistic``:
    sigmoid(sum of weight x branch logit + bias) against ``threshold`` (weights learned on grouped validation)."""

    rule: str = "or"
    weights: dict[str, float] = field(default_factory=lambda: {"pixel": 0.5, "semantic": 0.5})
    threshold: float = 0.5  # for "mean" and "logistic"
    bias: float = 0.0  # for "logistic"
    operating_points: dict[str, OperatingPoint] = field(default_factory=dict)
    #: the operating point a Detector uses when its options name none (None: the thresholds above)
    default_operating_point: str | None = None
    #: how file provenance (C2PA, generator metadata) changes the verdict: :class:`~.provenance.ProvenancePolicy`
    provenance: dict[str, Any] = field(default_factory=lambda: ProvenancePolicy().to_dict())


@dataclass(frozen=True)
class LatencyStat:
    p50_ms: float
    p90_ms: float
    n: int = 0


@dataclass
class Manifest:
    bundle_id: str
    name: str
    pixel: PixelBranchSpec | None
    semantic: SemanticBranchSpec | None
    fusion: FusionSpec = field(default_factory=FusionSpec)
    device_profiles: dict[str, dict[str, LatencyStat]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    placeholder: bool = False
    model_card: str | None = None
    schema_version: int = SCHEMA_VERSION

    # -- (de)serialisation -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        try:
            return _parse_manifest(data)
        except BundleFormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise BundleFormatError(f"malformed manifest: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleFormatError(f"manifest.json is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        branches: dict[str, Any] = {}
        if self.pixel is not None:
            branches["pixel"] = asdict(self.pixel)
        if self.semantic is not None:
            branches["semantic"] = asdict(self.semantic)
        for b in branches.values():  # a default that older readers would not know stays out of the file
            if isinstance(b.get("input"), dict) and b["input"].get("jpeg_downscale") == "none":
                del b["input"]["jpeg_downscale"]
        requires = required_features(self)
        return {
            "schema_version": self.schema_version,
            **({"requires": requires} if requires else {}),
            "bundle_id": self.bundle_id,
            "name": self.name,
            "description": self.description,
            "placeholder": self.placeholder,
            "branches": branches,
            "fusion": asdict(self.fusion),
            "device_profiles": {
                dev: {key: asdict(stat) for key, stat in stats.items()}
                for dev, stats in self.device_profiles.items()
            },
            "provenance": self.provenance,
            "model_card": self.model_card,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    # -- queries -----------------------------------------------------------------------------------
    def branch(self, name: str) -> PixelBranchSpec | SemanticBranchSpec | None:
        return {"pixel": self.pixel, "semantic": self.semantic}[name]

    def all_files(self) -> dict[str, FileEntry]:
        """Every file the manifest references, keyed by '<branch>/<artifact>/<role>'."""
        out: dict[str, FileEntry] = {}
        for bname in BRANCHES:
            spec = self.branch(bname)
            if spec is None:
                continue
            for aname, art in spec.artifacts.items():
                for role, entry in art.files.items():
                    out[f"{bname}/{aname}/{role}"] = entry
        return out

    def operating_point(self, name: str | None) -> OperatingPoint | None:
        """The named operating point (``None``: the bundle's default one, if any); unknown names raise."""
        name = self.fusion.default_operating_point if name is None else name
        if name is None:
            return None
        if name not in self.fusion.operating_points:
            known = ", ".join(self.fusion.operating_points) or "none"
            raise ValueError(f"bundle {self.bundle_id} has no operating point {name!r} (has: {known})")
        return self.fusion.operating_points[name]


def required_features(manifest: Manifest) -> list[str]:
    """The ``FEATURES`` a reader needs for this manifest's artifacts, sorted."""
    used = set()
    for name in BRANCHES:
        spec = manifest.branch(name)
        for art in (spec.artifacts.values() if spec is not None else ()):
            inp = art.options.get("input")
            if isinstance(inp, dict):
                used.add("pixel-input" if inp.get("values") == "pixels" else "uint8-input")
    if manifest.semantic is not None and manifest.semantic.input is not None:
        used.add("semantic-onnx")
    if manifest.fusion.default_operating_point is not None:
        used.add("operating-points")
    if any(inp.jpeg_downscale != "none" for inp in _inputs(manifest)):
        used.add("jpeg-dct-downscale")
    return sorted(used)


def _inputs(manifest: Manifest) -> list[InputSpec]:
    return [spec.input for spec in (manifest.pixel, manifest.semantic) if spec is not None and spec.input is not None]


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise BundleFormatError(message)


#: Largest side a fixed-size model input may declare; above any detector's crop, far below a memory bomb.
MAX_INPUT_SIDE = 8192
#: Most operating points a manifest may list (a handful in practice; each is printed and bounded by ``info``)
MAX_OPERATING_POINTS = 64
#: Largest VLM context a manifest may ask llama.cpp to allocate (Qwen2.5-VL's own limit is 128k tokens)
MAX_N_CTX = 1 << 18


def _whole(value: Any, field_name: str, lo: int, hi: int) -> int:
    """A count of pixels, tokens or bytes: a JSON integer (not a float, not ``true``) in [lo, hi]."""
    _require(type(value) is int and lo <= value <= hi,
             f"{field_name} must be a whole number from {lo} to {hi}, got {value!r}")
    return value


def _probability(value: Any, field_name: str) -> float:
    """A threshold: a finite number in [0, 1] (NaN or infinity would give constant verdicts)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise BundleFormatError(f"{field_name} must be a number in [0, 1], got {value!r}") from None
    _require(math.isfinite(v) and 0.0 <= v <= 1.0, f"{field_name} must be a finite number in [0, 1], got {value!r}")
    return v


def _parse_artifacts(raw: dict[str, Any], branch: str) -> dict[str, Artifact]:
    _require(isinstance(raw, dict) and len(raw) > 0, f"branch '{branch}' has no artifacts")
    arts: dict[str, Artifact] = {}
    for name, a in raw.items():
        runtime = a["runtime"]
        _require(runtime in RUNTIMES, f"{branch}/{name}: unknown runtime {runtime!r} (known: {RUNTIMES})")
        files = {}
        for role, f in a["files"].items():
            sha = str(f["sha256"]).lower()
            _require(len(sha) == 64 and all(c in "0123456789abcdef" for c in sha),
                     f"{branch}/{name}/{role}: sha256 is not a hex digest")
            nbytes = f["bytes"]
            _require(type(nbytes) is int and 0 <= nbytes <= MAX_FILE_BYTES,
                     f"{branch}/{name}/{role}: bytes must be a whole number from 0 to {MAX_FILE_BYTES}, got {nbytes!r}")
            files[role] = FileEntry(path=str(f["path"]), sha256=sha, bytes=nbytes)
        _require(len(files) > 0, f"{branch}/{name}: artifact lists no files")
        missing = [role for role in REQUIRED_FILES[runtime] if role not in files]
        _require(not missing, f"{branch}/{name}: a {runtime} artifact must list the file roles "
                              f"{list(REQUIRED_FILES[runtime])}; missing {missing}")
        arts[name] = Artifact(runtime=runtime, precision=str(a["precision"]), files=files,
                              options=dict(a.get("options", {})))
    return arts


def _parse_branch_artifacts(b: dict[str, Any], branch: str) -> tuple[dict[str, Artifact], str]:
    arts = _parse_artifacts(b["artifacts"], branch)
    default = b.get("default_artifact") or next(iter(arts))
    _require(default in arts, f"{branch}.default_artifact {default!r} is not an artifact")
    return arts, default


def _provenance_policy(raw: Any) -> ProvenancePolicy:
    _require(raw is None or isinstance(raw, dict), "fusion.provenance must be an object")
    try:
        policy = ProvenancePolicy.from_dict(raw)
    except (TypeError, ValueError):
        raise BundleFormatError(f"fusion.provenance has values of the wrong type: {raw!r}") from None
    _probability(policy.capture_pixel_override, "fusion.provenance.capture_pixel_override")
    return policy


def _parse_input(raw: dict[str, Any]) -> InputSpec:
    spec = InputSpec(
        height=_whole(raw.get("height", 336), "input.height", 0, MAX_INPUT_SIDE),
        width=_whole(raw.get("width", 336), "input.width", 0, MAX_INPUT_SIDE),
        crop=str(raw.get("crop", "center")),
        resize=str(raw.get("resize", "none")),
        mean=tuple(float(v) for v in raw.get("mean", CLIP_MEAN)),  # type: ignore[arg-type]
        std=tuple(float(v) for v in raw.get("std", CLIP_STD)),  # type: ignore[arg-type]
        color_order=str(raw.get("color_order", "RGB")).upper(),
        layout=str(raw.get("layout", "NCHW")).upper(),
        scale=float(raw.get("scale", 255.0)),
        max_side=_whole(raw.get("max_side", 1024), "input.max_side", 1, 65536),
        jpeg_downscale=str(raw.get("jpeg_downscale", "none")),
    )
    _require(spec.crop in CROP_POLICIES, f"input.crop must be one of {CROP_POLICIES}")
    _require(spec.resize in RESIZE_POLICIES, f"input.resize must be one of {RESIZE_POLICIES}")
    _require(spec.jpeg_downscale in JPEG_DOWNSCALE, f"input.jpeg_downscale must be one of {JPEG_DOWNSCALE}")
    _require(spec.jpeg_downscale == "none" or (spec.resize != "none" and spec.fixed_size),
             "input.jpeg_downscale 'dct' needs a resize policy ('exact' or 'shorter') and a fixed input size")
    _require(spec.color_order in ("RGB", "BGR"), "input.color_order must be RGB or BGR")
    _require(spec.layout in ("NCHW", "NHWC"), "input.layout must be NCHW or NHWC")
    _require(len(spec.mean) == 3 and len(spec.std) == 3 and all(s > 0 for s in spec.std),
             "input.mean/std must be three numbers, std > 0")
    _require((spec.height == 0) == (spec.width == 0), "input.height and input.width must both be 0 (full image) or "
                                                     "both > 0")
    _require(all(math.isfinite(v) for v in (*spec.mean, *spec.std, spec.scale)) and spec.scale > 0,
             "input.mean/std/scale must be finite, scale > 0")
    return spec


def _parse_semantic(b: dict[str, Any]) -> SemanticBranchSpec:
    arts, default = _parse_branch_artifacts(b, "semantic")
    runtimes = {a.runtime for a in arts.values()}
    labels = {k: [str(w) for w in v] for k, v in (b.get("labels") or {}).items()}
    if "llama.cpp" in runtimes:
        _require(bool(labels.get("fake")) and bool(labels.get("real")),
                 "semantic.labels needs non-empty 'fake' and 'real' word lists")
        _require(isinstance(b.get("prompt"), dict) and "{image}" in str(b["prompt"].get("text", "")),
                 "semantic.prompt.text missing or without an {image} placeholder")
    if "onnxruntime" in runtimes:
        _require(isinstance(b.get("input"), dict), "an ONNX semantic artifact needs semantic.input")
    _require(runtimes <= {"llama.cpp", "onnxruntime"}, f"semantic artifacts cannot run on {sorted(runtimes)}")
    return SemanticBranchSpec(artifacts=arts, default_artifact=default, prompt=dict(b.get("prompt") or {}),
                              labels=labels, threshold=_probability(b.get("threshold", 0.5), "semantic.threshold"),
                              n_ctx=_whole(b.get("n_ctx", 2048), "semantic.n_ctx", 1, MAX_N_CTX),
                              validation=dict(b.get("validation", {})), arch=str(b.get("arch", "")),
                              image_max_side=_whole(b.get("image_max_side", 448), "semantic.image_max_side", 1,
                                                    MAX_INPUT_SIDE),
                              input=_parse_input(b["input"]) if isinstance(b.get("input"), dict) else None)


def _finite(value: Any, field_name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise BundleFormatError(f"{field_name} must be a number, got {value!r}") from None
    _require(math.isfinite(v), f"{field_name} must be finite, got {value!r}")
    return v


def _parse_operating_point(name: str, raw: Any) -> OperatingPoint:
    _require(isinstance(raw, dict), f"fusion.operating_points.{name} must be an object")
    t = {k: None if raw.get(k) is None else _probability(raw[k], f"fusion.operating_points.{name}.{k}")
         for k in ("pixel", "semantic", "fusion", "target_fpr")}
    return OperatingPoint(**t, measured=dict(raw.get("measured") or {}))


def _parse_fusion(f: dict[str, Any]) -> FusionSpec:
    raw_points = f.get("operating_points") or {}
    _require(isinstance(raw_points, dict) and len(raw_points) <= MAX_OPERATING_POINTS,
             f"fusion.operating_points must be an object of at most {MAX_OPERATING_POINTS} points")
    points = {str(k): _parse_operating_point(str(k), v) for k, v in (f.get("operating_points") or {}).items()}
    default = f.get("default_operating_point")
    _require(default is None or default in points,
             f"fusion.default_operating_point {default!r} is not one of the operating points {sorted(points)}")
    fusion = FusionSpec(rule=str(f.get("rule", "or")),
                        weights={k: _finite(v, f"fusion.weights.{k}")
                                 for k, v in f.get("weights", {"pixel": 0.5, "semantic": 0.5}).items()},
                        threshold=_probability(f.get("threshold", 0.5), "fusion.threshold"),
                        bias=_finite(f.get("bias", 0.0), "fusion.bias"),
                        provenance=_provenance_policy(f.get("provenance")).to_dict(),
                        operating_points=points, default_operating_point=default)
    _require(fusion.rule in FUSION_RULES, f"fusion.rule must be one of {FUSION_RULES}")
    return fusion


def _parse_manifest(data: Any) -> Manifest:
    _require(isinstance(data, dict), "manifest must be a JSON object")
    version = data.get("schema_version")
    _require(version == SCHEMA_VERSION,
             f"unsupported manifest schema_version {version!r}; this SDK reads version {SCHEMA_VERSION}")
    requires = data.get("requires", [])
    _require(isinstance(requires, list) and all(isinstance(f, str) for f in requires),
             "requires must be a list of feature names")
    missing = sorted(set(requires) - set(FEATURES))
    _require(not missing, f"this bundle needs features this SDK does not have: {missing} (known: {sorted(FEATURES)}); "
                          "upgrade aligngemini-sdk")
    _require(isinstance(data.get("bundle_id"), str) and data["bundle_id"], "bundle_id missing")
    branches = data.get("branches", {})
    _require(isinstance(branches, dict), "branches must be an object")
    unknown = set(branches) - set(BRANCHES)
    _require(not unknown, f"unknown branches {sorted(unknown)}")

    pixel = None
    if "pixel" in branches:
        b = branches["pixel"]
        arts, default = _parse_branch_artifacts(b, "pixel")
        pixel = PixelBranchSpec(artifacts=arts, default_artifact=default, input=_parse_input(b["input"]),
                                threshold=_probability(b.get("threshold", 0.5), "pixel.threshold"),
                                validation=dict(b.get("validation", {})), arch=str(b.get("arch", "")))
    semantic = _parse_semantic(branches["semantic"]) if "semantic" in branches else None
    _require(pixel is not None or semantic is not None, "bundle has no branches")
    fusion = _parse_fusion(data.get("fusion", {}) or {})

    profiles = {
        str(dev): {str(k): LatencyStat(p50_ms=float(s["p50_ms"]), p90_ms=float(s["p90_ms"]), n=int(s.get("n", 0)))
                   for k, s in stats.items()}
        for dev, stats in (data.get("device_profiles") or {}).items()
    }
    return Manifest(
        bundle_id=data["bundle_id"], name=str(data.get("name", data["bundle_id"])), pixel=pixel,
        semantic=semantic, fusion=fusion, device_profiles=profiles,
        provenance=dict(data.get("provenance") or {}), description=str(data.get("description", "")),
        placeholder=bool(data.get("placeholder", False)), model_card=data.get("model_card"),
        schema_version=version,
    )
