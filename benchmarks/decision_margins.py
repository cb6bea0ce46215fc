"""How far from its threshold is each of the default's decisions? Label-free, every shared image.

    .venv/bin/python benchmarks/decision_margins.py [--out benchmarks/reports/decision_margins]

Decoding and resizing give the same bytes on every CPU (integers), but ONNX Runtime's float kernels do not: the
default's fused score has differed by up to 1.0e-6 between this x86 CPU and an emulated ARM one
(``benchmarks/reports/emulated_cpu/``). A decision can only differ between CPUs if its score lies within that of the
threshold. This measures the margin |fused score - threshold| of every image of ``../shared/data`` (``images.csv`` and
``wild/images.csv``; labels are not read) at each of the default's operating points, and counts the decisions within
1e-6, 1e-5, 1e-4 and 1e-3 of it. Output: ``<cpu>-<kind>.json``, ``.md`` and ``.png`` (the margins' distribution per
operating point) under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aligngemini_sdk.detector import Detector
from aligngemini_sdk.device import cpu_label, report_stem
from aligngemini_sdk.errors import ImageError
from aligngemini_sdk.fusion import Fusion
from aligngemini_sdk.plot import figure
from aligngemini_sdk.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resize_agreement import DATA, paths  # the same image list

ROOT = Path(__file__).resolve().parents[1]
BANDS = (1e-6, 1e-5, 1e-4, 1e-3)
#: the largest cross-CPU difference of the default's fused score measured so far (emulated Neoverse-N1 vs x86)
MEASURED_CROSS_CPU = 1.0e-6


@dataclass(frozen=True)
class PointMargins:
    """One operating point: its threshold, the smallest margin and how many decisions lie within each band."""

    point: str
    threshold: float
    smallest: float
    smallest_image: str
    within: dict[str, int]
    called_fake: int


def scores(det: Detector) -> tuple[list[str], np.ndarray]:
    """(image, fused score) of every readable shared image, with progress."""
    todo, names, out = paths(), [], []
    bar = Progress(len(todo), "decision margins")
    for p in todo:
        with contextlib.suppress(ImageError):  # an unreadable file is refused everywhere alike
            r = det.detect(p)
            names.append(str(p.relative_to(DATA)))
            out.append(r.detector_score if r.detector_score is not None else r.score)
        bar.update()
    bar.close()
    return names, np.asarray(out, np.float64)


def margins(det: Detector, names: list[str], score: np.ndarray) -> list[PointMargins]:
    m = det.bundle.manifest
    out = []
    for point in m.fusion.operating_points:
        t = Fusion.of(m, point).spec.threshold
        gap = np.abs(score - t)
        i = int(np.argmin(gap))
        out.append(PointMargins(point, t, float(gap[i]), names[i], {f"{b:g}": int((gap <= b).sum()) for b in BANDS},
                                int((score > t).sum())))
    return out


def markdown(rows: list[PointMargins], n: int, cpu: str, default: str | None) -> str:
    lines = [f"# How far each decision of the default lies from its threshold (`{cpu}`)", "",
             f"{n} readable images of ../shared/data (labels not read), {time.strftime('%Y-%m-%d')}; "
             f"`benchmarks/decision_margins.py`. The largest cross-CPU difference of the fused score measured so far "
             f"is {MEASURED_CROSS_CPU:g} (`benchmarks/reports/emulated_cpu/`): a decision whose margin exceeds it "
             "cannot differ between those CPUs.", "",
             "| operating point | threshold | called fake | smallest margin | image | "
             + " | ".join(f"within {b:g}" for b in BANDS) + " |", "|---|---|---|---|---|" + "---|" * len(BANDS)]
    for r in rows:
        mark = " (default)" if r.point == default else ""
        lines.append(f"| {r.point}{mark} | {r.threshold:.6f} | {r.called_fake} | {r.smallest:.2e} | `{r.smallest_image}` | "
                     + " | ".join(str(r.within[f"{b:g}"]) for b in BANDS) + " |")
    return "\n".join([*lines, "", f"![margins]({report_stem()}.png)", ""])


def plot(score: np.ndarray, rows: list[PointMargins], path: Path) -> None:
    with figure(path, dpi=110, figsize=(7, 3.6)) as ax:
        bins = np.logspace(-9, 0, 46)
        for r in rows:
            ax.hist(np.maximum(np.abs(score - r.threshold), 1e-9), bins=bins, histtype="step", label=r.point)
        ax.axvline(MEASURED_CROSS_CPU, color="red", ls="--", lw=1, label="largest cross-CPU |Δ score| measured")
        ax.set_xscale("log")
        ax.set_xlabel("|fused score - threshold|")
        ax.set_ylabel("images")
        ax.legend(fontsize=8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "decision_margins"))
    out = Path(ap.parse_args().out)
    with Detector() as det:
        names, score = scores(det)
        rows = margins(det, names, score)
        default = det.bundle.manifest.fusion.default_operating_point
    out.mkdir(parents=True, exist_ok=True)
    stem, cpu = report_stem(), cpu_label()
    (out / f"{stem}.json").write_text(json.dumps({"cpu": cpu, "images": len(names), "points": [asdict(r) for r in rows],
                                                  "scores": dict(zip(names, score.tolist()))}, indent=1))
    (out / f"{stem}.md").write_text(markdown(rows, len(names), cpu, default))
    plot(score, rows, out / f"{stem}.png")
    print((out / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
