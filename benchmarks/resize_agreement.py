"""Did the integer resize (``aligngemini_sdk.resize``) change the default's answers? Label-free, on this CPU.

    .venv/bin/python benchmarks/resize_agreement.py [--out DIR]

Until session 18 the whole-image view was shrunk with OpenCV's ``INTER_AREA`` and grown with its ``INTER_CUBIC``,
both finishing in floating point with kernels that differ by CPU (x86 and ARM builds gave different bytes;
``benchmarks/reports/emulated_cpu/``). The SDK now shrinks with an exact area average and grows bicubic, in integers. Every image of ``../shared/data`` (``images.csv`` and ``wild/images.csv``) is judged
twice in one process by the shipped default: as the SDK does now, and with ``preprocess.resize`` swapped back to the
OpenCV rule. Reported: per image the whole-image view's pixels that differ (of the full decode, shrunk both ways)
and how many levels apart, the difference of the semantic probability and of the fused score, and the decisions
that differ; and the cost of each resize to 224 x 224 at the sizes a camera photo reaches it (a 12 MP JPEG read at
1/8 DCT scale, a 5 MP one at 1/4, 12 and 48 MP PNGs, a 224 x 200,000 strip), medians of interleaved runs, with the
exact area's peak memory. Labels are not read: this says nothing about accuracy, only whether the shipped figures
still describe the shipped SDK. Output: ``resize_agreement.json``, ``.md`` and ``.png`` (|Δ whole-image p| against
the pixels that differ) under ``--out``, with the CPU named.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from aligngemini_sdk import preprocess
from aligngemini_sdk import resize as resize_module
from aligngemini_sdk.detector import Detector
from aligngemini_sdk.device import cpu_label
from aligngemini_sdk.errors import ImageError
from aligngemini_sdk.image import load_image
from aligngemini_sdk.plot import figure
from aligngemini_sdk.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SIDE = 224  # the default's whole-image view


@dataclass(frozen=True)
class Change:
    """One image judged with both resizes."""

    path: str
    pixels_differ: int
    levels_apart: int
    fake_now: bool
    fake_before: bool
    d_semantic: float
    d_score: float


def opencv_rule(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """The SDK's resize before session 18."""
    interp = cv2.INTER_AREA if rgb.shape[0] * rgb.shape[1] > height * width else cv2.INTER_CUBIC
    return cv2.resize(rgb, (width, height), interpolation=interp)


#: (height, width) of what the whole-image view resizes: a 12 MP JPEG at 1/8 scale, a 5 MP one at 1/4, decoded
#: photos of 1 and 3.4 MP (arrays, and formats without a reduced decode), 12 and 48 MP, a hostile 45 MP strip one view
#: high (all shrunk); a CIFAKE-sized image and a thumbnail (grown); a strip that grows in height and shrinks in width
#: (area across, then bicubic along)
TIMED_SIZES = ((375, 500), (480, 640), (1024, 1024), (1500, 2250), (3000, 4000), (6000, 8000), (224, 200_000),
               (32, 32), (150, 180), (100, 3000))


TIMING_REPEATS = 11


@dataclass(frozen=True)
class Timing:
    """One input size resized to the 224 x 224 view: interleaved medians, and the integer resize's peak traced memory
    (OpenCV allocates outside Python's view)."""

    size: str
    input_mb: float
    integer_ms: float  #: the SDK's resize as installed here (the C shim where it was built)
    numpy_ms: float  #: the same resize on its numpy path (where no C compiler was available)
    opencv_ms: float
    integer_peak_mb: float  #: traced by Python: numpy's arrays, not the C shim's buffers (``native_buffers_mb``)
    native_buffers_mb: float  #: what resize.c allocates for it (``native_buffers_mb()``), 0 without the C shim


def numpy_rule(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """The SDK's resize on its numpy path instead of the C shim (the same bytes)."""
    with resize_module.numpy_only():
        return resize_module.resize(rgb, height, width)


def timings(repeats: int = TIMING_REPEATS) -> list[Timing]:
    """Per TIMED_SIZES, on a real photo tiled up to that size; the three resizes interleaved."""
    photo = load_image(DATA / "images/real/kodak24/testsets__Kodak24__kodim01.png").rgb
    out = []
    for h, w in TIMED_SIZES:
        img = np.ascontiguousarray(np.tile(photo, (h // photo.shape[0] + 1, w // photo.shape[1] + 1, 1))[:h, :w])
        t: dict[str, list[float]] = {"integer": [], "numpy": [], "cv2": []}
        for _ in range(repeats):
            for name, fn in (("integer", preprocess.resize), ("numpy", numpy_rule), ("cv2", opencv_rule)):
                t0 = time.perf_counter()
                fn(img, SIDE, SIDE)
                t[name].append((time.perf_counter() - t0) * 1e3)
        tracemalloc.start()
        preprocess.resize(img, SIDE, SIDE)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        med = {k: float(np.median(v)) for k, v in t.items()}
        native = native_buffers_mb(h, w, 3) if resize_module.status().available else 0.0
        out.append(Timing(f"{h} x {w}", img.nbytes / 1e6, med["integer"], med["numpy"], med["cv2"], peak, native))
    return out


def native_buffers_mb(h: int, w: int, ch: int, height: int = SIDE, width: int = SIDE) -> float:
    """The largest set of buffers resize.c holds at once on resize()'s plan for an h x w image: the area shrink a
    32-bit sum and a 32-bit row sum per input row value (plus its column bounds); the bicubic growth a 32-bit row of
    horizontal sums per input row, its tap and weight tables (4 + 4 per output row value) and one input row widened
    to 32 bits. Where one side grows and the area shrinks, the shrink runs first, and the growth on its output."""
    area = 4 * (2 * w * ch) + 16 * (width + 1)
    if h >= height and w >= width:
        return area / 1e6
    sh, sw = (h, w) if h * w <= height * width else (min(h, height), min(w, width))  # what cubic() is given
    cubic = 4 * (sh * width * ch + 8 * width * ch + sw * ch)
    return max(area if (sh, sw) != (h, w) else 0, cubic) / 1e6


@contextlib.contextmanager
def resized_by_opencv() -> Iterator[None]:
    now = preprocess.resize
    preprocess.resize = opencv_rule
    try:
        yield
    finally:
        preprocess.resize = now


def paths() -> list[Path]:
    out = []
    for index in (DATA / "images.csv", DATA / "wild" / "images.csv"):
        with index.open(newline="") as f:
            out += [index.parent / row["path"] for row in csv.DictReader(f)]
    return out


def judge(det: Detector, path: Path) -> Change:
    now = det.detect(path)
    with resized_by_opencv():
        before = det.detect(path)
    rgb = load_image(path).rgb
    d = np.abs(preprocess.resize(rgb, SIDE, SIDE).astype(np.int16) - opencv_rule(rgb, SIDE, SIDE))
    sem = abs((now.semantic.probability or 0.0) - (before.semantic.probability or 0.0))
    return Change(str(path.relative_to(DATA)), int(d.any(axis=-1).sum()), int(d.max()), now.is_fake, before.is_fake,
                  sem, abs(now.score - before.score))


def markdown(rows: list[Change], cpu: str, wall: float, refused: int, times: list[Timing]) -> str:
    flips = [r for r in rows if r.fake_now != r.fake_before]
    moved = [r for r in rows if r.pixels_differ]
    return "\n".join([
        "# The default with the integer resize vs OpenCV's INTER_AREA / INTER_CUBIC (label-free)", "",
        f"- CPU: {cpu}; {len(rows)} images of ../shared/data judged ({refused} refused as unreadable); wall {wall:.0f} s "
        f"(`benchmarks/resize_agreement.py`, {time.strftime('%Y-%m-%d')})", "",
        "| decisions that differ | images whose 224 view differs | pixels differing, median / max of those | max "
        "levels apart | max \\|Δ semantic p\\| | max \\|Δ score\\| |", "|---|---|---|---|---|---|",
        f"| {len(flips)} of {len(rows)} | {len(moved)} | {_median_moved(moved)} / "
        f"{max(r.pixels_differ for r in rows)} of {SIDE * SIDE} | {max(r.levels_apart for r in rows)} "
        f"| {max(r.d_semantic for r in rows):.2e} | {max(r.d_score for r in rows):.2e} |", "",
        *[f"Differing: `{r.path}` (now {'fake' if r.fake_now else 'real'})" for r in flips], "",
        f"Resize here: {resize_module.status().detail}. Medians of {TIMING_REPEATS} interleaved runs.", "",
        "| input to the 224 x 224 view | input MB | integer resize, as installed (ms) | integer, numpy path (ms) | "
        "OpenCV, the old rule (ms) | peak MB traced by Python | C shim buffers MB |",
        "|---|---|---|---|---|---|---|",
        *[f"| {t.size} | {t.input_mb:.3g} | {t.integer_ms:.2f} | {t.numpy_ms:.2f} | {t.opencv_ms:.2f} "
          f"| {t.integer_peak_mb:.1f} | {t.native_buffers_mb:.2f} |" for t in times],
        "", "![|Δ whole-image p| against pixels that differ](resize_agreement.png)", ""])


def _median_moved(moved: list[Change]) -> str:
    return f"{np.median([r.pixels_differ for r in moved]):.0f}" if moved else "-"


def plot(rows: list[Change], path: Path) -> None:
    """|Δ semantic p| against the pixels that differ, per image (identical views on the left edge)."""
    with figure(path, dpi=120, figsize=(6.5, 3.8)) as ax:
        ax.scatter([r.pixels_differ for r in rows], [max(r.d_semantic, 1e-9) for r in rows], s=6, alpha=0.5)
        ax.set(xscale="symlog", yscale="log", xlabel=f"pixels of the {SIDE} x {SIDE} view that differ",
               ylabel="|Δ whole-image p| (1e-9 = identical)")
        ax.set_title("default bundle: integer resize vs OpenCV INTER_AREA / INTER_CUBIC, per image", fontsize=9)
        ax.grid(alpha=0.3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "resize_agreement"))
    ap.add_argument("--timings-only", action="store_true", help="only time the resizes (the agreement rows need "
                                                                "every shared image judged twice)")
    args = ap.parse_args()
    if args.timings_only:
        for t in timings():
            print(t)
        return 0
    out, t0, todo = Path(args.out), time.perf_counter(), paths()
    bar, rows = Progress(len(todo), "resize agreement"), []
    with Detector() as det:
        for p in todo:
            with contextlib.suppress(ImageError):  # refused either way (a truncated file): counted, not judged
                rows.append(judge(det, p))
            bar.update()
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    cpu = cpu_label()
    wall, times = time.perf_counter() - t0, timings()
    (out / "resize_agreement.json").write_text(json.dumps({"cpu": cpu, "timings": [asdict(t) for t in times],
                                                           "rows": [asdict(r) for r in rows]}, indent=1))
    (out / "resize_agreement.md").write_text(markdown(rows, cpu, wall, len(todo) - len(rows), times))
    plot(rows, out / "resize_agreement.png")
    print((out / "resize_agreement.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
