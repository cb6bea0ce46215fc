"""Result dataclasses (MediaPipe-style): what one detection returns, per branch and fused."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from aligngemini_sdk.provenance import Provenance

SkipReason = Literal["budget", "power", "decided", "unavailable"]


@dataclass
class BranchResult:
    """One branch's outcome. ``probability`` is P(fake) in [0, 1], or None when the branch did not run."""

    name: str
    ran: bool
    probability: float | None = None
    ms: float = 0.0
    skip_reason: SkipReason | None = None
    detail: str = ""
    artifact: str = ""


@dataclass
class DetectionResult:
    """The fused verdict for one image.

    ``score`` is the fused P(fake)-like score (for the OR rule: the largest branch probability).
    ``over_budget`` is True when ``total_ms`` exceeded ``budget_ms``; the planner never *chooses* to run a
    branch that it predicts will overrun, so an overrun means the device is slower than profiled (or the
    pixel branch alone is over budget), and is reported here rather than hidden.
    """

    is_fake: bool
    score: float
    label: str
    pixel: BranchResult
    semantic: BranchResult
    total_ms: float
    budget_ms: float | None
    bundle_id: str
    source: str = ""
    over_budget: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: what the file's own metadata says (None: not read, e.g. an array input or provenance switched off)
    provenance: Provenance | None = None
    #: the detectors' own verdict and score, before provenance (metadata can be stripped: keep both visible)
    detector_is_fake: bool | None = None
    detector_score: float | None = None
    #: why provenance decided the verdict; None when the detectors decided it
    decided_by_provenance: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["branches"] = {"pixel": d.pop("pixel"), "semantic": d.pop("semantic")}
        return d
