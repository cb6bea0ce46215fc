"""K-fold cross-validation of recipe variants over the training pool (train + tune splits), never the test split.

    python -m training.cv --folds 3 --steps 800 --arms class,strip --out runs/cv

Why: the recipe's tune split has 52 images, so one image moves its balanced accuracy by ~2 points and two runs
of the same recipe can differ there by 6 points. Choosing between recipe variants on it (or on the test split,
which would turn the test split into a selection set) decides nothing. Cross-validation scores every one of the
~450 pool images out of fold, with the recipe's own training loop (``train_default.train_loop``), so variants are
compared on 9x more held-out images while the test and unseen splits stay untouched.

The arms are paired: same folds, same seed, hence the same batches and augmentation draws; an arm changes only
what it names. Evaluation is the SDK's view of an image: the 224 px centre crop of the image as decoded (frames
included), whatever the arm trained on. QAT is left out (it is the same short fine-tune in every arm and exists
for INT8 agreement, not for accuracy). Writes ``cv.json`` (every out-of-fold score), ``cv.md`` and ``cv.png``
into ``--out``; scores are saved after every run, and ``--resume`` skips runs already saved.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from aligngemini_sdk.export.compact import CompactExpert
from aligngemini_sdk.metrics import binary_metrics, fmt, markdown_table
from aligngemini_sdk.plot import figure
from training.train_default import (
    ROOT,
    SAMPLERS,
    evaluate,
    load_rgb,
    split_rows,
    strip_frame,
    train_loop,
)

#: arm name -> (sampling, strip frames before cropping in training)
ARMS: dict[str, tuple[str, bool]] = {
    "class": ("class", False),          # the shipped recipe
    "strip": ("class", True),           # the same with the class-coded frames removed (--strip-frames)
    "source": ("source", False),        # --sampling source
    "source+strip": ("source", True),
}


def _hash(path: str) -> int:
    """A fixed per-image hash, independent of the recipe's split hash (which made train/tune/test)."""
    return int(hashlib.sha256(f"default-cv:{path}".encode()).hexdigest()[:8], 16)


def cv_pool(data: Path, folds: int) -> list[dict]:
    """The training pool (the recipe's train + tune splits) with a ``fold`` per image; test and unseen are left out.

    Stratified: within each (label, source) group, images in hash order are dealt to the folds in turn, so every
    fold holds the same mix of classes and sources (plain hash-mod folds came out 151/122/179 images).
    """
    splits = split_rows(data)
    pool = sorted(splits["train"] + splits["tune"], key=lambda r: (r["label"], r["source"], _hash(r["path"])))
    out: list[dict] = []
    seen: dict[tuple[str, str], int] = {}
    for r in pool:
        group = (r["label"], r["source"])
        out.append({**r, "fold": seen.setdefault(group, 0) % folds})
        seen[group] += 1
    return out


def summarize(runs: dict[str, dict[str, list]], arms: list[str], folds: int) -> dict:
    """Per-fold and pooled metrics per arm (balanced accuracy at 0.5, AUC, accuracy on cnndetection reals),
    and the paired differences of every arm against the first."""
    out: dict = {"arms": {}, "paired": {}}
    for arm in arms:
        r = runs[arm]
        y, p, fold = np.asarray(r["label"]), np.asarray(r["p"]), np.asarray(r["fold"])
        per_fold = [binary_metrics(y[fold == k], p[fold == k]) for k in range(folds) if (fold == k).any()]
        cnn_real = (np.asarray(r["source"]) == "cnndetection") & (y == 0)
        out["arms"][arm] = {
            "folds": [{"balanced_accuracy": m["balanced_accuracy"], "auc": m["auc"]} for m in per_fold],
            "mean_balanced_accuracy": float(np.mean([m["balanced_accuracy"] for m in per_fold])),
            "mean_auc": float(np.mean([m["auc"] for m in per_fold])),
            "pooled": binary_metrics(y, p),
            "cnndetection_real_accuracy": float((p[cnn_real] <= 0.5).mean()) if cnn_real.any() else None,
        }
    base = arms[0]
    for arm in arms[1:]:
        a, b = out["arms"][arm], out["arms"][base]
        n = min(len(a["folds"]), len(b["folds"]))
        out["paired"][f"{arm} - {base}"] = {
            "folds_compared": n,
            "balanced_accuracy": [a["folds"][k]["balanced_accuracy"] - b["folds"][k]["balanced_accuracy"]
                                  for k in range(n)],
            "auc": [a["folds"][k]["auc"] - b["folds"][k]["auc"] for k in range(n)],
        }
    return out


def markdown(summary: dict, meta: dict) -> str:
    rows = []
    for arm, s in summary["arms"].items():
        folds = ", ".join(f"{fmt(f['balanced_accuracy'], True)} / {fmt(f['auc'])}" for f in s["folds"])
        rows.append([arm, folds, f"{fmt(s['mean_balanced_accuracy'], True)} / {fmt(s['mean_auc'])}",
                     f"{fmt(s['pooled']['balanced_accuracy'], True)} / {fmt(s['pooled']['auc'])}",
                     fmt(s["cnndetection_real_accuracy"], True)])
    text = (f"# Cross-validation of recipe variants\n\n{meta['folds']} folds over the training pool "
            f"({meta['n']} images: train + tune, never test or unseen), {meta['steps']} steps per run, seed "
            f"{meta['seed']}, no QAT. Balanced accuracy at threshold 0.5 / ROC-AUC of out-of-fold scores.\n\n")
    text += markdown_table(["arm", "per fold", "mean of folds", "pooled", "cnndetection reals"], rows) + "\n"
    for name, d in summary["paired"].items():
        text += (f"\n**{name}** over {d['folds_compared']} folds: balanced accuracy "
                 f"{', '.join(f'{v * 100:+.1f}' for v in d['balanced_accuracy'])} points; AUC "
                 f"{', '.join(f'{v:+.3f}' for v in d['auc'])}.\n")
    return text


def plot(summary: dict, path: Path) -> None:
    with figure(path, dpi=110, nrows=1, ncols=2, figsize=(9, 3.5)) as axes:
        for ax, key, label in ((axes[0], "balanced_accuracy", "balanced accuracy @0.5"), (axes[1], "auc", "ROC-AUC")):
            for i, s in enumerate(summary["arms"].values()):
                vals = [f[key] for f in s["folds"]]
                ax.scatter([i] * len(vals), vals, color="0.5", zorder=2)
                ax.plot([i - 0.25, i + 0.25], [np.mean(vals)] * 2, color="C0", lw=2, zorder=3)
            ax.set_xticks(range(len(summary["arms"])), list(summary["arms"]))
            ax.set_title(label + " per fold (bar: mean)")
            ax.grid(alpha=0.3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arms", default="class,strip", help=f"comma-separated, the first is the baseline: {list(ARMS)}")
    ap.add_argument("--out", default=str(ROOT / "runs" / "cv"))
    ap.add_argument("--resume", action="store_true", help="keep the runs already saved in OUT/cv.json")
    args = ap.parse_args()
    arms = args.arms.split(",")
    if unknown := [a for a in arms if a not in ARMS]:
        ap.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pool = cv_pool(Path(args.data), args.folds)
    print(f"pool {len(pool)} images; per fold: {[sum(r['fold'] == k for r in pool) for k in range(args.folds)]}",
          file=sys.stderr)
    raw = {r["abs"]: load_rgb(r["abs"]) for r in pool}
    stripped = {k: strip_frame(v) for k, v in raw.items()} if any(ARMS[a][1] for a in arms) else {}
    state = json.loads((out / "cv.json").read_text()) if args.resume and (out / "cv.json").exists() else {}
    runs = state.get("runs", {})
    done = set(state.get("done", []))
    meta = {"folds": args.folds, "steps": args.steps, "seed": args.seed, "n": len(pool), "arms": arms}
    args.minutes = 0.0  # train_loop stops on --steps
    total, t_start = args.folds * len(arms), time.time()
    for k in range(args.folds):
        for arm in arms:
            key = f"{arm}/{k}"
            if key in done:
                continue
            t0 = time.time()
            held = [r for r in pool if r["fold"] == k]
            p = run_arm(arm, [r for r in pool if r["fold"] != k], held, stripped if ARMS[arm][1] else raw, raw, args)
            record(runs.setdefault(arm, {"path": [], "label": [], "source": [], "fold": [], "p": []}), held, k, p)
            done.add(key)
            m = binary_metrics(runs[arm]["label"][-len(held):], p)
            print(f"[cv] {len(done)}/{total} {key}: {(time.time() - t0) / 60:.1f} min, balanced accuracy "
                  f"{m['balanced_accuracy']:.3f} AUC {m['auc']:.3f}; {(time.time() - t_start) / 60:.0f} min so far",
                  file=sys.stderr, flush=True)
            (out / "cv.json").write_text(json.dumps({"meta": meta, "done": sorted(done), "runs": runs}))
    present = [a for a in arms if a in runs]
    summary = summarize(runs, present, args.folds)
    (out / "cv.json").write_text(json.dumps({"meta": meta, "done": sorted(done), "runs": runs,
                                             "summary": summary}, indent=1))
    (out / "cv.md").write_text(markdown(summary, meta))
    plot(summary, out / "cv.png")
    print((out / "cv.md").read_text())
    return 0


def run_arm(arm: str, train: list[dict], held: list[dict], train_images: dict[str, np.ndarray],
            held_images: dict[str, np.ndarray], args: argparse.Namespace) -> np.ndarray:
    """P(fake) of ``held`` (the SDK's centre crop of ``held_images``) from the arm's recipe trained on ``train``
    (``train_images``: frames stripped or not), seeded as every arm is."""
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    rng = random.Random(args.seed)
    model = CompactExpert(pretrained=True)
    train_loop(model, SAMPLERS[ARMS[arm][0]](train), train_images, rng, args)
    return evaluate(model, held, held_images)[:, 0]


def record(run: dict[str, list], held: list[dict], fold: int, p: np.ndarray) -> None:
    """Append one fold's out-of-fold scores to an arm's run."""
    for row, pk in zip(held, p):
        run["path"].append(row["path"])
        run["label"].append(int(row["label"] == "fake"))
        run["source"].append(row["source"])
        run["fold"].append(fold)
        run["p"].append(float(pk))


if __name__ == "__main__":
    raise SystemExit(main())
