"""Two ONNX branches on a small CPU: one after the other on every core, or side by side on half the cores each.

    .venv/bin/python benchmarks/branch_concurrency.py [--bundle LABEL=DIR ...] [--rounds 3]
        [--out benchmarks/reports/branch_concurrency]

For each bundle (default: the shipped default) on 16 decoded photos of the shared `wild/` pool (8 camera photos,
8 generated images; decoding excluded, preprocessing included), modes alternating ``--rounds`` times in one run:
- ``sequential``: the pixel branch, then the semantic branch, each session on every usable core (how the detector
  ran both before it planned concurrency);
- ``together``: the semantic branch in a second thread beside the pixel branch, each session on half the cores
  (``budget.plan_concurrency``);
- ``detect``: ``Detector.detect()`` as shipped (its plan, planner and fusion included);
- ``detect-numpy-resize``: the same with the whole-image view resized on numpy's path instead of the C shim
  (``resize.numpy_only()``: what an install without a C compiler runs; the same bytes), only where the shim was built;
- ``alone``: ``detect()`` with a budget that leaves no time for the semantic branch (1 ms): the pixel branch alone, on
  the session the detector keeps for such calls (every core);
- ``alone-half``: the same on the session beside the semantic branch (half the cores; ``threads=cores // 2``, how
  the detector ran such calls before it kept a session for them).
Both branches' answers are checked identical across modes. Output: ``<cpu>-<kind>.json``, ``.md``, ``.png`` (``device.report_stem()``; kind: ``device.int8_kernel_class()``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk import resize
from aligngemini_sdk.plot import figure

ROOT = Path(__file__).resolve().parents[1]
WILD = ROOT.parent / "shared" / "data" / "wild" / "images"
MODES = ("sequential", "together", "detect", "detect-numpy-resize", "alone", "alone-half")
#: the budget that drops the semantic branch in the ``alone`` modes (ms)
NO_TIME_MS = 1.0


@dataclass
class ModeRun:
    bundle: str
    mode: str
    round: int
    threads_per_session: int
    p50_ms: float
    p90_ms: float


def photos() -> list[np.ndarray]:
    from aligngemini_sdk.image import load_image

    picks = [sorted((WILD / "real" / "facebookresearch__sam2").glob("*.jpg"))[:4],
             sorted((WILD / "real" / "drewnoakes__metadata-extractor-images").glob("*Canon*.jpg"))[:4],
             sorted((WILD / "fake" / "Kwai-Kolors__Kolors").glob("*"))[:4],
             sorted((WILD / "fake" / "comfyanonymous__ComfyUI_examples").glob("*"))[:4]]
    return [load_image(p).rgb for group in picks for p in group]


def time_calls(call: Callable[[np.ndarray], object], images: list[np.ndarray], passes: int = 6) -> list[float]:
    for im in images[:4]:
        call(im)
    out = []
    for _ in range(passes):
        for im in images:
            t = time.perf_counter()
            call(im)
            out.append((time.perf_counter() - t) * 1e3)
    return out


def pair(px: Any, se: Any, pool: ThreadPoolExecutor | None) -> Callable[[np.ndarray], tuple[float, float]]:
    """Both branches on one image: one after the other, or (with a ``pool``) the semantic one beside the pixel one."""
    def both(im: np.ndarray) -> tuple[float, float]:
        if pool is None:
            return px.predict_one(im), se.predict_one(im)
        job = pool.submit(se.predict_one, im)
        return px.predict_one(im), job.result()
    return both


def measure(label: str, path: str, images: list[np.ndarray], rnd: int, cores: int) -> tuple[list[ModeRun], bool]:
    """One round of every mode on one bundle; and whether every mode gave the same answers."""
    from aligngemini_sdk import Bundle, Detector
    from aligngemini_sdk.runtimes import open_pixel, open_semantic

    bundle = Bundle.open(path)
    m = bundle.manifest
    assert m.pixel is not None and m.semantic is not None and m.semantic.input is not None, "needs two ONNX branches"
    runs: list[ModeRun] = []
    answers: set[tuple[Any, ...]] = set()
    for mode, threads in (("sequential", cores), ("together", max(1, cores // 2))):
        px = open_pixel(bundle, m.pixel, device="cpu", threads=threads, spinning=False)
        se = open_semantic(bundle, m.semantic, device="cpu", threads=threads, spinning=False)
        pool = ThreadPoolExecutor(1)
        both = pair(px, se, pool if mode == "together" else None)
        t = time_calls(both, images)
        answers.add(tuple(both(im) for im in images))
        runs.append(ModeRun(label, mode, rnd, threads, statistics.median(t), float(np.percentile(t, 90))))
        pool.shutdown()
        px.close()
        se.close()
    with Detector(bundle, device="cpu") as det:
        runs.append(_detect_mode(det, "detect", label, images, rnd, cores, answers))
        if resize.status().available:
            with resize.numpy_only():
                runs.append(_detect_mode(det, "detect-numpy-resize", label, images, rnd, cores, answers))
    pixel_answers = {tuple(p for p, _ in a) for a in answers}
    for mode, user_threads in (("alone", None), ("alone-half", max(1, cores // 2))):
        with Detector(bundle, device="cpu", threads=user_threads, budget_ms=NO_TIME_MS) as det:
            runs.append(_alone_mode(det, mode, label, images, rnd, cores, pixel_answers))
    return runs, len(answers) == 1 and len(pixel_answers) == 1


def _alone_mode(det: Any, mode: str, label: str, images: list[np.ndarray], rnd: int, cores: int,
                pixel_answers: set[tuple[Any, ...]]) -> ModeRun:
    """``detect()`` under a budget with no time for the semantic branch; its pixel probabilities added to
    ``pixel_answers``."""
    t = time_calls(lambda im: det.detect(im, color_order="RGB"), images)
    results = [det.detect(im, color_order="RGB") for im in images]
    assert not any(r.semantic.ran for r in results), "the budget should leave no time for the semantic branch"
    pixel_answers.add(tuple(r.pixel.probability for r in results))
    threads = det.pixel_alone.describe()["threads"]
    return ModeRun(label, mode, rnd, threads or cores, statistics.median(t), float(np.percentile(t, 90)))


def _detect_mode(det: Any, mode: str, label: str, images: list[np.ndarray], rnd: int, cores: int,
                 answers: set[tuple[Any, ...]]) -> ModeRun:
    """``detect()`` timed on the images, its branch probabilities added to ``answers``."""
    t = time_calls(lambda im: det.detect(im, color_order="RGB"), images)
    answers.add(tuple((r.pixel.probability, r.semantic.probability)
                      for r in (det.detect(im, color_order="RGB") for im in images)))
    return ModeRun(label, mode, rnd, det.concurrency.threads_per_branch or cores, statistics.median(t),
                   float(np.percentile(t, 90)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", action="append", metavar="LABEL=DIR",
                    help="a bundle with two ONNX branches (default: the shipped default)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "branch_concurrency"))
    args = ap.parse_args()
    from aligngemini_sdk import default_bundle_path
    from aligngemini_sdk.device import cpu_info, cpu_label, report_stem

    bundles = dict(b.split("=", 1) for b in (args.bundle or [f"default={default_bundle_path()}"]))
    cores = int(cpu_info()["usable_cores"])
    images = photos()
    runs: list[ModeRun] = []
    identical: dict[str, bool] = {}
    for rnd in range(args.rounds):
        for label, path in bundles.items():
            got, same = measure(label, path, images, rnd, cores)
            runs += got
            identical[label] = identical.get(label, True) and same
            print(f"[concurrency] round {rnd + 1}/{args.rounds} {label}: "
                  + ", ".join(f"{r.mode} {r.p50_ms:.2f} ms" for r in got), flush=True)
    report = {"cpu": cpu_label(), "usable_cores": cores, "date": time.strftime("%Y-%m-%d"), "images": len(images),
              "identical_answers": identical, "runs": [asdict(r) for r in runs]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = report_stem()
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    md = markdown(report, runs, bundles)
    (out / f"{stem}.md").write_text(md)
    plot(runs, bundles, out / f"{stem}.png")
    print(md)
    return 0


def median_of(runs: list[ModeRun], label: str, mode: str) -> float:
    """The median over rounds of one mode's p50 (NaN when the mode did not run: no C shim here)."""
    vals = [r.p50_ms for r in runs if r.bundle == label and r.mode == mode]
    return statistics.median(vals) if vals else float("nan")


def markdown(report: dict, runs: list[ModeRun], bundles: dict[str, str]) -> str:
    lines = [f"# Two ONNX branches: one after the other, or side by side (`{report['cpu']}`)", "",
             f"{report['usable_cores']} usable cores, {report['date']}; {report['images']} decoded `wild/` photos "
             "(decoding excluded, preprocessing included); modes alternate in one run; p50 of each round, then "
             "the median over rounds. `benchmarks/branch_concurrency.py`.", "",
             "| bundle | sequential ms (every core each) | together ms (half the cores each) | together / sequential "
             "| detect() ms as shipped | detect() ms, numpy resize | pixel alone: every core ms | pixel alone: half the "
             "cores ms | every / half | same answers in every mode |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label in bundles:
        seq, tog, det, slow, alone, half = (median_of(runs, label, m) for m in MODES)
        lines.append(f"| {label} | {seq:.2f} | {tog:.2f} | {tog / seq:.2f}x | {det:.2f} | "
                     f"{'-' if slow != slow else f'{slow:.2f}'} | {alone:.2f} | {half:.2f} | {alone / half:.2f}x | "
                     f"{report['identical_answers'][label]} |")
    lines += ["", "Per round:", "", "| bundle | mode | round | threads per session | p50 ms | p90 ms |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r.bundle} | {r.mode} | {r.round + 1} | {r.threads_per_session} | {r.p50_ms:.2f} | {r.p90_ms:.2f} |"
              for r in runs]
    return "\n".join(lines) + "\n"


def plot(runs: list[ModeRun], bundles: dict[str, str], path: Path) -> None:
    with figure(path, dpi=110, figsize=(2.4 + 3.0 * len(bundles), 3.6)) as ax:
        for i, label in enumerate(bundles):
            for j, mode in enumerate(MODES):
                vals = [r.p50_ms for r in runs if r.bundle == label and r.mode == mode]
                ax.scatter([i * 7 + j] * len(vals), vals, color=f"C{j}", label=mode if i == 0 else None)
        ax.set_xticks([i * 7 + 2.5 for i in range(len(bundles))], list(bundles))
        ax.set_ylabel("p50 ms per image (alone: pixel branch only)")
        ax.set_ylim(bottom=0)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)


if __name__ == "__main__":
    raise SystemExit(main())
