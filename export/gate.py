"""The export gate as typed records: what each artifact was judged on and whether it may ship.

``GateReport.to_dict()`` is the JSON a bundle's ``manifest.json`` keeps under ``pixel.validation`` (the same
layout since the first exporter); ``GateReport.from_dict`` reads it back, so old bundles load.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aligngemini_sdk.metrics import binary_metrics, fmt, markdown_table


@dataclass
class GateThresholds:
    """Accuracy gate: INT8 (and FP16) must agree with the PyTorch reference on the validation set."""

    min_agreement: float = 0.98  # decision agreement with the reference
    max_bacc_drop: float = 0.01  # balanced-accuracy drop vs the reference (fraction, 0.01 = 1 point)
    fp32_max_delta: float = 1e-3  # max |Δprobability| FP32 ONNX vs PyTorch


@dataclass
class GateMetrics:
    """An artifact's numbers against the reference on the validation images (probabilities)."""

    max_abs_delta: float
    agreement: float
    balanced_accuracy: float | None
    auc: float | None
    acc_real: float | None
    acc_fake: float | None

    @classmethod
    def measure(cls, ref: np.ndarray, probs: np.ndarray, labels: np.ndarray, threshold: float) -> GateMetrics:
        m = binary_metrics(labels, probs, threshold)
        return cls(max_abs_delta=float(np.max(np.abs(probs - ref))) if len(ref) else 0.0,
                   agreement=float(np.mean((probs > threshold) == (ref > threshold))) if len(ref) else 1.0,
                   balanced_accuracy=m["balanced_accuracy"], auc=m["auc"], acc_real=m["acc_real"],
                   acc_fake=m["acc_fake"])


@dataclass
class FallbackRound:
    """One INT8 quantization tried: nodes kept in float, weight format, and how it did."""

    excluded: list[str]
    weights: str | None  # None in bundles exported before weight formats were recorded (they were s8)
    output_bias_correction: float | None
    agreement: float | None
    balanced_accuracy: float | None
    passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not (k == "weights" and v is None)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FallbackRound:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@dataclass
class Int8Search:
    """How the INT8 artifact that ships was found (fallback search, weight formats, input form)."""

    scheme: str
    kept_in_float: list[str]
    output_bias_correction: float | None
    fallback_history: list[FallbackRound]
    weights_tried: list[FallbackRound] | None  # None in bundles exported before formats were tried in turn


#: GateEntry keys that exist only for some artifacts, in the order the JSON has always listed them
_OPTIONAL = ("quantized_input_agreement", "float_input_agreement", "search_mean_abs_dp", "pixel_input")


@dataclass
class GateEntry:
    """One artifact's verdict. ``passed`` is None when there was no validation data to judge it."""

    size_mb: float
    passed: bool | None = None
    reasons: list[str] = field(default_factory=list)
    metrics: GateMetrics | None = None
    latency_ms_p50: float | None = None
    int8_safety: dict[str, Any] | None = None  # saturation.SaturationProof.to_dict()
    kernels_vs_reference: dict[str, Any] | None = None
    quantized_input_agreement: float | None = None
    float_input_agreement: float | None = None
    search_mean_abs_dp: dict[str, float] | None = None
    pixel_input: dict[str, Any] | None = None  # why a pixel-input candidate was rejected
    int8: Int8Search | None = None

    @property
    def agreement(self) -> float | None:
        return self.metrics.agreement if self.metrics else None

    @property
    def balanced_accuracy(self) -> float | None:
        return self.metrics.balanced_accuracy if self.metrics else None

    @property
    def max_abs_delta(self) -> float | None:
        return self.metrics.max_abs_delta if self.metrics else None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"size_mb": self.size_mb}
        if self.int8_safety is not None:
            d["int8_safety"] = self.int8_safety
        if self.kernels_vs_reference is not None:
            d["kernels_vs_reference"] = self.kernels_vs_reference
        if self.metrics is not None:
            d.update(asdict(self.metrics), latency_ms_p50=self.latency_ms_p50)
        d.update(passed=self.passed, reasons=self.reasons)
        d.update({k: getattr(self, k) for k in _OPTIONAL if getattr(self, k) is not None})
        if self.int8 is not None:
            d.update(kept_in_float=self.int8.kept_in_float, scheme=self.int8.scheme,
                     output_bias_correction=self.int8.output_bias_correction,
                     fallback_history=[r.to_dict() for r in self.int8.fallback_history])
            if self.int8.weights_tried is not None:
                d["weights_tried"] = [r.to_dict() for r in self.int8.weights_tried]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateEntry:
        metrics = (GateMetrics(**{k: d.get(k) for k in GateMetrics.__dataclass_fields__})  # type: ignore[arg-type]
                   if "agreement" in d else None)
        int8 = None
        if "scheme" in d:
            tried = d.get("weights_tried")
            int8 = Int8Search(scheme=d["scheme"], kept_in_float=list(d.get("kept_in_float") or []),
                              output_bias_correction=d.get("output_bias_correction"),
                              fallback_history=[FallbackRound.from_dict(r) for r in d.get("fallback_history") or []],
                              weights_tried=None if tried is None else [FallbackRound.from_dict(r) for r in tried])
        return cls(size_mb=float(d.get("size_mb", 0.0)), passed=d.get("passed"), reasons=list(d.get("reasons") or []),
                   metrics=metrics, latency_ms_p50=d.get("latency_ms_p50"), int8_safety=d.get("int8_safety"),
                   kernels_vs_reference=d.get("kernels_vs_reference"),
                   **{k: d.get(k) for k in _OPTIONAL}, int8=int8)


@dataclass
class GateReport:
    """The whole gate: the reference's own accuracy and one entry per artifact tried."""

    n_val: int
    n_calib: int
    threshold: float
    gate: GateThresholds
    artifacts: dict[str, GateEntry] = field(default_factory=dict)
    reference: GateMetrics | None = None
    bundle_id: str | None = None
    bundle: str | None = None

    @property
    def failures(self) -> list[str]:
        return [f"{n}: {'; '.join(e.reasons)}" for n, e in self.artifacts.items() if e.passed is False]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"n_val": self.n_val, "n_calib": self.n_calib, "threshold": self.threshold,
                             "gate": asdict(self.gate), "artifacts": {n: e.to_dict() for n, e in self.artifacts.items()}}
        if self.reference is not None:
            d["reference"] = {k: getattr(self.reference, k) for k in ("balanced_accuracy", "auc", "acc_real", "acc_fake")}
        if self.bundle_id is not None:
            d.update(bundle_id=self.bundle_id, bundle=self.bundle)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateReport:
        ref = d.get("reference")
        return cls(n_val=int(d.get("n_val", 0)), n_calib=int(d.get("n_calib", 0)), threshold=float(d.get("threshold", 0.5)),
                   gate=GateThresholds(**d.get("gate", {})),
                   artifacts={n: GateEntry.from_dict(e) for n, e in (d.get("artifacts") or {}).items()},
                   reference=GateMetrics(max_abs_delta=0.0, agreement=1.0, **ref) if ref else None,
                   bundle_id=d.get("bundle_id"), bundle=d.get("bundle"))


def gate_markdown(report: GateReport) -> str:
    rows = []
    ref = report.reference
    if ref:
        rows.append(["pytorch (reference)", "–", "–", "–", fmt(ref.balanced_accuracy, True), fmt(ref.auc), "–", "–"])
    for name, e in report.artifacts.items():
        status = {True: "✅ pass", False: "❎ fail", None: "– not gated"}[e.passed]
        m = e.metrics
        rows.append([name, f"{e.size_mb:.2f}", fmt(m.max_abs_delta if m else None), fmt(m.agreement if m else None, True),
                     fmt(m.balanced_accuracy if m else None, True), fmt(m.auc if m else None),
                     fmt(e.latency_ms_p50), status + (f" ({'; '.join(e.reasons)})" if e.reasons and
                                                      e.passed is False else "")])
    return markdown_table(["artifact", "MB", "max|Δp|", "agreement", "bal. acc", "AUC", "ms p50 (b=1)", "gate"], rows)


def print_gate_table(report: GateReport) -> None:
    sys.stderr.write(f"\nValidation gate on {report.n_val} images (calibration: {report.n_calib}):\n")
    sys.stderr.write(gate_markdown(report) + "\n")
