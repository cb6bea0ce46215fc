"""Is the in-the-wild default data-limited? G's recipe with fewer fake development repositories (issue 16).

    python -m training.learning_curve --work runs/semantic --out benchmarks/reports/wild_default/learning_curve

Each development repository is held out in turn, as in every round of training/WILD_VALIDATION.md, but the heads,
the fusion and the fpr5 threshold see only ``k`` of the other development fake repositories (k = 1..K_MAX: every
subset when there are at most SUBSETS of them, else SUBSETS drawn with a fixed seed), always with the training role
and every other development real repository. The reading was written in training/EXPLORATION.md before it ran.
The final-test repositories are not read; nothing ships from it.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aligngemini_sdk.device import cpu_label
from aligngemini_sdk.plot import figure
from training.train_semantic import extract, fold, load_rows

K_MAX = 5
SUBSETS = 5
CANDIDATE = "G"


@dataclass(frozen=True)
class Run:
    """One held-out repository scored by the recipe fitted with ``fakes`` as the development fake repositories."""

    held: str
    label: str
    k: int
    fakes: tuple[str, ...]
    threshold: float
    rate_fake: float


@dataclass(frozen=True)
class CurvePoint:
    """Repository-weighted figures at fpr5 with ``k`` fake development repositories (each held-out repository's rate
    averaged over its subsets first)."""

    k: int
    balanced_accuracy: float
    mean_tpr_fake_repos: float
    mean_fpr_real_repos: float
    runs: int


def subsets(others: list[str], k: int, held: str) -> list[tuple[str, ...]]:
    combos = list(itertools.combinations(others, k))
    return combos if len(combos) <= SUBSETS else random.Random(f"{held}#{k}").sample(combos, SUBSETS)


def runs(work: Path) -> list[Run]:
    """Every (held-out repository, k, subset) run, cached in ``work``."""
    rows = load_rows()
    pool = extract(rows, work)
    dev = sorted({r["source"] for r in pool.rows if r["role"] == "dev"})
    fake = {g for g in dev if pool.y[pool.idx("dev", g)][0] == 1}
    key = hashlib.sha256(json.dumps(["v1", len(pool.rows), dev, K_MAX, SUBSETS, CANDIDATE]).encode()).hexdigest()[:12]
    cache = work / f"learning-curve-{key}.json"
    if cache.is_file():
        return [Run(**{**r, "fakes": tuple(r["fakes"])}) for r in json.loads(cache.read_text())]
    out, t0 = [], time.time()
    for held in dev:
        others = [g for g in dev if g in fake and g != held]
        reals = [g for g in dev if g not in fake]
        for k in range(1, min(K_MAX, len(others)) + 1):
            for chosen in subsets(others, k, held):
                groups = sorted(set(reals) | set(chosen) | {held})
                f = fold(pool, held, groups, 1.0, (CANDIDATE,))
                out.append(Run(held, f["label"], k, chosen, f[CANDIDATE]["threshold"], f[CANDIDATE]["rate_fake"]))
        print(f"[curve] {dev.index(held) + 1}/{len(dev)} {held} ({time.time() - t0:.0f} s)", file=sys.stderr)
    cache.write_text(json.dumps([asdict(r) for r in out]))
    return out


def curve(all_runs: list[Run]) -> list[CurvePoint]:
    points = []
    for k in sorted({r.k for r in all_runs}):
        at_k = [r for r in all_runs if r.k == k]
        per_repo = {h: float(np.mean([r.rate_fake for r in at_k if r.held == h])) for h in {r.held for r in at_k}}
        label = {r.held: r.label for r in at_k}
        tpr = float(np.mean([v for h, v in per_repo.items() if label[h] == "fake"]))
        fpr = float(np.mean([v for h, v in per_repo.items() if label[h] == "real"]))
        points.append(CurvePoint(k, 0.5 * (tpr + 1 - fpr), tpr, fpr, len(at_k)))
    return points


def plot(all_runs: list[Run], points: list[CurvePoint], path: Path) -> None:
    with figure(path, dpi=120, figsize=(7.5, 4.5)) as ax:
        for held in sorted({r.held for r in all_runs}):
            mine = [r for r in all_runs if r.held == held]
            ks = sorted({r.k for r in mine})
            ys = [float(np.mean([r.rate_fake for r in mine if r.k == k])) for k in ks]
            fake = mine[0].label == "fake"
            ax.plot(ks, ys, color="tab:red" if fake else "tab:blue", alpha=0.35, lw=1)
            ax.annotate(held.split("/")[-1][:18], (ks[-1], ys[-1]), fontsize=6, alpha=0.6)
        ks = [p.k for p in points]
        ax.plot(ks, [p.balanced_accuracy for p in points], "k-o", lw=2, label="balanced accuracy (repo-weighted)")
        ax.plot(ks, [p.mean_tpr_fake_repos for p in points], "r--o", lw=1.5, label="mean TPR, fake repos")
        ax.plot(ks, [p.mean_fpr_real_repos for p in points], "b--o", lw=1.5, label="mean FPR, real repos")
        ax.set_xlabel("fake development repositories the heads see (besides the training role)")
        ax.set_ylabel("at fpr5, held-out repository")
        ax.set_xticks(ks)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        ax.set_title("G's recipe with fewer fake sources (thin: each held-out repository's share called fake)", fontsize=9)


def markdown(points: list[CurvePoint]) -> str:
    lines = ["# Learning curve: fake development repositories", "",
             f"`python -m training.learning_curve` (CPU: {cpu_label()}). Reading and protocol: "
             "`training/EXPLORATION.md`.", "",
             "| k fake dev repos | balanced acc. (repo-weighted) | mean TPR, fake repos | mean FPR, real repos | runs |",
             "|---|---|---|---|---|"]
    lines += [f"| {p.k} | {pct(p.balanced_accuracy)} | {pct(p.mean_tpr_fake_repos)} | {pct(p.mean_fpr_real_repos)} | "
              f"{p.runs} |" for p in points]
    return "\n".join([*lines, "", "![learning curve](learning_curve.png)", ""])


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/semantic")
    ap.add_argument("--out", default="benchmarks/reports/wild_default/learning_curve")
    args = ap.parse_args()
    all_runs = runs(Path(args.work))
    points = curve(all_runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_curve.json").write_text(json.dumps({"cpu": cpu_label(), "points": [asdict(p) for p in points],
                                                         "runs": [asdict(r) for r in all_runs]}, indent=1))
    (out / "README.md").write_text(markdown(points))
    plot(all_runs, points, out / "learning_curve.png")
    for p in points:
        print(f"k={p.k}: BA {p.balanced_accuracy:.1%}  TPR {p.mean_tpr_fake_repos:.1%}  FPR {p.mean_fpr_real_repos:.1%}"
              f"  ({p.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
