"""The VLM export's parity gate as typed records: each GGUF text model's P(fake) against the transformers fp32
reference on the same tokens and pixels. ``ParityReport.to_dict()`` is what a manifest keeps under
``semantic.validation.parity``; ``from_dict`` reads it back (old bundles load)."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from aligngemini_sdk.metrics import fmt, markdown_table


@dataclass
class ParityEntry:
    """One quantization type: its worst |Δp| to the reference, and the gate's verdict (None: reported only)."""

    max_abs_delta: float
    probabilities: list[float]
    tolerance: float | None
    passed: bool | None
    size_mb: float


@dataclass
class ParityReport:
    n_images: int
    tolerances: dict[str, float]
    types: dict[str, ParityEntry] = field(default_factory=dict)
    transformers: list[float] | None = None  # the reference's P(fake) per image
    passed: bool | None = None
    bundle_id: str | None = None

    @property
    def failures(self) -> list[str]:
        return [f"{q}: max|Δp| {r.max_abs_delta:.2e} > {r.tolerance:.0e}"
                for q, r in self.types.items() if r.passed is False]

    def entry(self, artifact: str) -> ParityEntry | None:
        """The gate entry of a bundle artifact (artifacts are named by their type in lower case)."""
        return self.types.get(artifact.upper())

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"n_images": self.n_images, "tolerances": self.tolerances,
                             "types": {q: asdict(e) for q, e in self.types.items()}}
        if self.transformers is not None:
            d["transformers"] = self.transformers
        if self.passed is not None:
            d["passed"] = self.passed
        if self.bundle_id is not None:
            d["bundle_id"] = self.bundle_id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParityReport:
        return cls(n_images=int(d.get("n_images", 0)), tolerances=dict(d.get("tolerances", {})),
                   types={q: ParityEntry(**e) for q, e in (d.get("types") or {}).items()},
                   transformers=d.get("transformers"), passed=d.get("passed"), bundle_id=d.get("bundle_id"))


def print_parity_table(report: ParityReport) -> None:
    rows = []
    for q, r in report.types.items():
        status = {True: "✅ pass", False: "❎ fail", None: "reported"}[r.passed]
        rows.append([q, f"{r.size_mb:.2f}", fmt(r.max_abs_delta), "–" if r.tolerance is None
                     else f"{r.tolerance:.0e}", status])
    sys.stderr.write(f"\nParity gate on {report.n_images} images, P(fake) GGUF vs transformers fp32:\n")
    sys.stderr.write(markdown_table(["text model", "MB", "max|Δp|", "tolerance", "gate"], rows) + "\n")
