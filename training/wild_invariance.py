"""Like with like: does the in-the-wild default call an image fake for what it shows, or for its format and size?

    python -m training.wild_invariance --bundle sdk/default_bundle --out benchmarks/reports/wild_default/invariance

In ``wild/`` most fakes are PNG and large, every real photo a JPEG and most of them small (its README's traps), so a
detector can score well by reading "lossless" or "large". Here every image is scored as served and again after
changes that keep what it shows and alter only how it is stored -- the same pixels as PNG, JPEG at native size at
quality 95 and 75, halved (INTER_AREA) and kept lossless, halved then JPEG 85 -- both classes alike. Each variant is
then a like-with-like comparison: every image of both classes went through the same step. Scored as users score:
``Detector.detect`` on the encoded bytes, the default operating point, provenance off.

Images: every ``wild/`` image (development repositories, which the shipped heads were fitted on, and final-test
repositories, which no head saw; reported apart) and CNNDetection's ProGAN-era pairs from ``images.csv``, the one
source holding both classes (real-vs-fake inside it is not a repository contrast).

Reading, written before it first ran (2026-12-02): the default is *format-robust on this pool* iff, for every
variant, its image-weighted balanced accuracy over all ``wild/`` images stays within 5 points of the as-served
figure and its real-photo FPR stays <= 10 %. A variant that drops fake repositories' share called fake while real
repositories keep theirs is a format (or size) shortcut, and is named as one.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from aligngemini_sdk.device import cpu_label
from aligngemini_sdk.metrics import binary_metrics, markdown_table
from aligngemini_sdk.plot import figure
from aligngemini_sdk.progress import track
from training.wild_split import ROOT, SHARED, SPLIT

CNNDETECTION = "PeterWang512/CNNDetection"
#: the reading's bounds (module docstring)
MAX_BA_DROP = 0.05
MAX_FPR = 0.10


def _png(rgb: np.ndarray) -> bytes:
    return bytes(cv2.imencode(".png", rgb[:, :, ::-1])[1])


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    return bytes(cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1])


def _half(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)


#: variant name -> the re-stored image's bytes, from the decoded pixels ("served" reads the file itself)
VARIANTS: dict[str, Callable[[np.ndarray], bytes] | None] = {
    "served": None,
    "png": _png,
    "jpeg95": lambda rgb: _jpeg(rgb, 95),
    "jpeg75": lambda rgb: _jpeg(rgb, 75),
    "half_png": lambda rgb: _png(_half(rgb)),
    "half_jpeg85": lambda rgb: _jpeg(_half(rgb), 85),
}


@dataclass(frozen=True)
class Scored:
    path: str
    label: str
    source: str
    group: str  # "development", "final" or "cnndetection"
    served_format: str
    scores: dict[str, float]  # variant -> fused score
    fake: dict[str, bool]  # variant -> verdict at the default operating point


@dataclass(frozen=True)
class VariantSummary:
    variant: str
    balanced_accuracy: float
    tpr: float
    real_fpr: float
    auc_pooled: float | None
    flipped_vs_served: float  # share of images whose verdict differs from "served"


@dataclass(frozen=True)
class Report:
    bundle_id: str
    cpu: str
    operating_point: str | None
    groups: dict[str, list[VariantSummary]]  # group ("wild", "final", "development", "cnndetection") -> variants
    per_repo: dict[str, dict[str, float]]  # repository -> variant -> share called fake
    repo_label: dict[str, str]
    repo_format: dict[str, str]
    robust: bool
    reading: str


def load_rows() -> list[dict[str, str]]:
    with open(SPLIT) as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        if r["role"] in ("dev", "final"):
            out.append({**r, "group": "final" if r["role"] == "final" else "development"})
        elif r["source"] == CNNDETECTION:
            out.append({**r, "group": "cnndetection"})
    return out


def score_all(bundle: str, rows: list[dict[str, str]]) -> list[Scored]:
    from aligngemini_sdk.detector import Detector, DetectorOptions
    from aligngemini_sdk.errors import ImageError
    from aligngemini_sdk.image import load_image

    out = []
    with Detector(bundle, DetectorOptions(provenance=False)) as det:
        for r in track(rows, desc="invariance (6 variants per image)"):
            path = SHARED / r["path"]
            try:
                rgb = load_image(path).rgb
            except ImageError as exc:  # the SDK refuses it (a truncated JPEG): not scored, as in wild_report
                print(f"\n[invariance] skipping {exc}", file=sys.stderr)
                continue
            scores, fake = {}, {}
            for name, make in VARIANTS.items():
                res = det.detect(path if make is None else make(rgb))
                scores[name], fake[name] = float(res.score), bool(res.is_fake)
            out.append(Scored(r["path"], r["label"], r["source"], r["group"], path.suffix.lower().lstrip("."),
                              scores, fake))
    return out


def summarize(items: list[Scored], variant: str) -> VariantSummary:
    y = [int(s.label == "fake") for s in items]
    m = binary_metrics(y, [s.scores[variant] for s in items], predictions=[s.fake[variant] for s in items])
    flipped = float(np.mean([s.fake[variant] != s.fake["served"] for s in items]))
    return VariantSummary(variant, float(m["balanced_accuracy"] or 0.0), float(m["acc_fake"] or 0.0),
                          1.0 - float(m["acc_real"] or 0.0), m["auc"], flipped)


def build_report(bundle: str, scored: list[Scored]) -> Report:
    from aligngemini_sdk.bundle import Bundle

    manifest = Bundle.open(bundle).manifest
    groups = {"wild": [s for s in scored if s.group != "cnndetection"]}
    for g in ("final", "development", "cnndetection"):
        groups[g] = [s for s in scored if s.group == g]
    summaries = {g: [summarize(items, v) for v in VARIANTS] for g, items in groups.items() if items}
    repos = sorted({s.source for s in scored if s.group != "cnndetection"})
    per_repo = {r: {v: float(np.mean([s.fake[v] for s in scored if s.source == r])) for v in VARIANTS} for r in repos}
    label = {r: next(s.label for s in scored if s.source == r) for r in repos}
    fmt = {r: "/".join(sorted({s.served_format for s in scored if s.source == r})) for r in repos}
    robust, reading = read(summaries["wild"])
    return Report(manifest.bundle_id, cpu_label(), manifest.fusion.default_operating_point, summaries, per_repo,
                  label, fmt, robust, reading)


def read(wild: list[VariantSummary]) -> tuple[bool, str]:
    """The reading written before the first run: robust iff no variant loses more than MAX_BA_DROP of the
    as-served balanced accuracy or calls more than MAX_FPR of the real photos fake."""
    served = next(v for v in wild if v.variant == "served")
    bad = [v for v in wild if served.balanced_accuracy - v.balanced_accuracy > MAX_BA_DROP or v.real_fpr > MAX_FPR]
    if not bad:
        return True, (f"format-robust on this pool: every variant within {MAX_BA_DROP:.0%} balanced accuracy of "
                      f"as-served, real FPR <= {MAX_FPR:.0%}")
    return False, "NOT format-robust on this pool: " + ", ".join(
        f"{v.variant} (BA {v.balanced_accuracy:.1%}, real FPR {v.real_fpr:.1%})" for v in bad)


def markdown(rep: Report) -> str:
    pct = "{:.1%}".format
    parts = [f"# Like with like: the default under format and size changes\n\nBundle `{rep.bundle_id}`, operating "
             f"point `{rep.operating_point}`; CPU: {rep.cpu}. Made by `python -m training.wild_invariance` (the "
             "variants and the reading are in its docstring, written before it first ran). Every image of both "
             "classes goes through the same change, so each row compares like with like.\n\n"
             f"**Reading: {rep.reading}.**\n"]
    titles = {"wild": "All `wild/` images", "final": "Final-test repositories (no head saw them)",
              "development": "Development repositories (the shipped heads were fitted on them)",
              "cnndetection": "CNNDetection pairs (one source, both classes; training images)"}
    for g, rows in rep.groups.items():
        parts.append(f"## {titles[g]}\n\n" + markdown_table(
            ["variant", "balanced acc.", "TPR", "real FPR", "pooled AUC", "verdicts changed vs served"],
            [[v.variant, pct(v.balanced_accuracy), pct(v.tpr), pct(v.real_fpr),
              "—" if v.auc_pooled is None else f"{v.auc_pooled:.3f}", pct(v.flipped_vs_served)] for v in rows]) + "\n")
    parts.append("## Per repository: share called fake\n\n" + markdown_table(
        ["repository", "class", "served as", *VARIANTS],
        [[r, rep.repo_label[r], rep.repo_format[r], *(pct(rep.per_repo[r][v]) for v in VARIANTS)]
         for r in rep.per_repo]) + "\n\n![per repository](invariance.png)\n")
    return "\n".join(parts)


def plot(rep: Report, path: Path) -> None:
    repos = sorted(rep.per_repo, key=lambda r: (rep.repo_label[r], r))
    grid = np.array([[rep.per_repo[r][v] for v in VARIANTS] for r in repos])
    with figure(path, dpi=110, figsize=(8, 0.32 * len(repos) + 1.6)) as ax:
        im = ax.imshow(grid, cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
        for i, j in np.ndindex(grid.shape):
            ax.text(j, i, f"{grid[i, j]:.0%}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(VARIANTS)), list(VARIANTS), fontsize=8)
        ax.set_yticks(range(len(repos)), [f"{rep.repo_label[r]}: {r.split('/')[-1][:28]} ({rep.repo_format[r]})"
                                          for r in repos], fontsize=7)
        ax.set_title("share called fake (fake repos: higher is better; real: lower)", fontsize=9)
        ax.figure.colorbar(im, ax=ax, fraction=0.03)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "sdk" / "default_bundle"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "wild_default" / "invariance"))
    args = ap.parse_args()
    rows = load_rows()
    scored = score_all(args.bundle, rows)
    rep = build_report(args.bundle, scored)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({**asdict(rep), "images": [asdict(s) for s in scored]}, indent=1))
    (out / "README.md").write_text(markdown(rep))
    plot(rep, out / "invariance.png")
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
