"""Camera-photo speed: what decoding costs against the branches, before and after region decoding.

    .venv/bin/python benchmarks/jpeg_decode.py [--runs 15] [--out benchmarks/reports/jpeg_decode]

Images: camera-like 12 MP (4000x3000) and 50 MP (8160x6120) JPEGs made here from a real shared phone photo
(upscaled, with sensor-like noise, quality 90, 4:2:0; baseline and progressive), and the two largest complete
real camera JPEGs of the shared data (5 and 8 MP). Per image, medians of ``--runs`` interleaved runs of:

- decoders: OpenCV full decode (the SDK's path before this change), the SDK's full decode and its region decode of
  the default's 224 crop (libjpeg-turbo's partial decoding, :mod:`aligngemini_sdk.jpeg`), the DCT-scaled decoders
  a whole-image branch could use (OpenCV ``IMREAD_REDUCED_COLOR_8``, Pillow draft mode), and, when installed, the
  bindings considered instead (simplejpeg 1/8; PyTurboJPEG's lossless crop + decode and full decode);
- end to end, ``Detector.detect(path)``: the shipped default's pixel branch alone (region decode), and the whole
  default (both branches) with its semantic branch reading the full decode (``jpeg_downscale = "none"``) and the
  DCT-reduced decode (``"dct"``, as shipped since 2026-12-02; reduced decode + region decode), each against the
  branches' own time in the same runs; and, for the pixel branch, the previous path (OpenCV full decode, then
  ``detect`` on the array);
- the default's verdicts under the two policies on every shared JPEG (flips, semantic |Δp|).

Output: ``<cpu>-<kind>.json``, ``<cpu>-<kind>.md``, ``<cpu>-<kind>.png`` under ``--out``. Figures are this CPU's, named in the report.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aligngemini_sdk.plot import figure

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CAMERA = SHARED / "wild" / "images" / "real" / "drewnoakes__metadata-extractor-images"
SOURCE_PHOTO = CAMERA / "jpg__Samsung SM-J327T1.jpg"   # a 5 MP phone photo, complete (many files there are cut)
REAL_PHOTOS = [("real 5 MP phone photo (Samsung SM-J327T1)", SOURCE_PHOTO), ("real 8 MP photo (Issue 177)",
                                                                              CAMERA / "jpg__Issue 177.jpg")]


@dataclass
class ImageRow:
    image: str
    megapixels: float
    file_mb: float
    progressive: bool
    decoders_ms: dict[str, float] = field(default_factory=dict)
    #: end to end: {"pixel-only": {...}, "default, full decode": {...}, "default, dct policy": {...}, ...}
    end_to_end: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class DecodeReport:
    cpu: str
    features: list[str]
    date: str
    runs: int
    jpeg_path: str
    rows: list[ImageRow]
    #: the default's verdicts under both decode policies on the shared JPEGs
    dct_agreement: dict[str, float] = field(default_factory=dict)
    #: region decode of a 224 crop of the 12 MP baseline file at several heights: [(top row, median ms)]
    crop_heights: list[tuple[int, float]] = field(default_factory=list)
    #: a 12 MP grid HEIC (made here, x265 quality 80, 512 tiles): full / tiles decode and pixel-only detect medians
    heic: dict[str, float] = field(default_factory=dict)


def _grid(tiled: Any) -> Any:
    assert tiled is not None, "the benchmark's HEIC is a grid the tile path serves"
    return tiled


def heic_figures(runs: int) -> dict[str, float]:
    """A phone's other format: a 12 MP HEIC written as iPhones write it (a grid of 512 x 512 HEVC tiles). Full decode
    against the tiles under the default's 224 crop, and pixel-only ``detect(path)`` against the branch."""
    try:
        import pillow_heif
    except ImportError:
        return {}
    from PIL import Image

    from aligngemini_sdk import Detector, heic
    from aligngemini_sdk.image import decode_bytes
    from aligngemini_sdk.jpeg import Rect

    pillow_heif.register_heif_opener()
    src = cv2.imread(str(SOURCE_PHOTO), cv2.IMREAD_COLOR_RGB)
    buf = io.BytesIO()
    Image.fromarray(cv2.resize(src, (4000, 3000), interpolation=cv2.INTER_CUBIC)).save(buf, format="HEIF", quality=80,
                                                                                       tile_size=512)
    data = buf.getvalue()
    crop = Rect((3000 - 224) // 2, (4000 - 224) // 2, 224, 224)
    with Detector(load_semantic=False) as det:
        rs = [det.detect(data) for _ in range(runs + 1)][1:]
    return {"file_mb": len(data) / 1e6, "decode_ms": median_ms(lambda: decode_bytes(data), max(3, runs // 3)),
            "tiles_ms": median_ms(lambda: _grid(heic.grid(data, 10 ** 9)).decode(crop), runs),
            "detect_ms": statistics.median(r.total_ms for r in rs),
            "branch_ms": statistics.median(r.pixel.ms or 0 for r in rs), "tiles_used": float(rs[0].extra["decode"] == "tiles")}


def crop_heights(data: bytes, runs: int, steps: int = 5) -> list[tuple[int, float]]:
    """Region decode of a 224 crop (centred horizontally) from the top of the image to its bottom: Huffman data
    carries no row index, so without restart markers every row above the crop must be entropy-decoded to reach
    it. The slope is that cost; the centre crop's time is the floor of any decoder reading this file."""
    from aligngemini_sdk import jpeg

    head = jpeg.header(data)
    assert head is not None
    left = (head.width - 224) // 2
    tops = [round(i * (head.height - 224) / (steps - 1)) for i in range(steps)]
    def region(top: int) -> Callable[[], object]:
        return lambda: jpeg.decode_region(data, jpeg.Rect(top, left, 224, 224))

    return [(top, median_ms(region(top), runs)) for top in tops]


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def camera_like(size: tuple[int, int], progressive: bool, seed: int = 0) -> bytes:
    """A camera-sized JPEG from a real photo: upscaled (cubic), sensor-like noise, quality 90, 4:2:0."""
    from PIL import Image

    src = cv2.imread(str(SOURCE_PHOTO), cv2.IMREAD_COLOR_RGB)
    up = cv2.resize(src, size, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    up += np.random.default_rng(seed).normal(0, 2.0, up.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(up, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90, subsampling=2,
                                                               progressive=progressive)
    return buf.getvalue()


def decoders(data: bytes) -> dict[str, Callable[[], object]]:
    """The SDK's paths and the alternatives measured against them (optional ones when installed)."""
    from PIL import Image

    from aligngemini_sdk import jpeg

    head = jpeg.header(data)
    assert head is not None
    crop = jpeg.Rect((head.height - 224) // 2, (head.width - 224) // 2, 224, 224)
    buf = np.frombuffer(data, np.uint8)

    def pil_draft() -> object:
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (im.width // 8, im.height // 8))
        return np.asarray(im)

    out = {"OpenCV full": lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB),
           "SDK full": lambda: jpeg.decode_full(data),
           "SDK region 224": lambda: jpeg.decode_region(data, crop),
           "OpenCV reduced 1/8": lambda: cv2.imdecode(buf, cv2.IMREAD_REDUCED_COLOR_8),
           "Pillow draft 1/8": pil_draft}
    out.update(_optional_decoders(data, crop))
    return out


def _optional_decoders(data: bytes, crop: Any) -> dict[str, Callable[[], object]]:
    out: dict[str, Callable[[], object]] = {}
    try:
        import simplejpeg  # type: ignore[import-not-found]

        out["simplejpeg 1/8"] = lambda: simplejpeg.decode_jpeg(data, min_factor=8)
    except ImportError:
        pass
    try:
        from turbojpeg import TurboJPEG  # type: ignore[import-not-found]

        tj = TurboJPEG()
        x, y = crop.left // 16 * 16 - 16, crop.top // 16 * 16 - 16
        out["PyTurboJPEG lossless crop 224"] = lambda: tj.decode(tj.crop(data, x, y, 272, 272), pixel_format=0)
        out["PyTurboJPEG full"] = lambda: tj.decode(data, pixel_format=0)
    except (ImportError, OSError, RuntimeError):
        pass
    return out


POLICIES = {"none": "default, full decode", "dct": "default, dct policy"}


def policy_variants(root: Path) -> dict[str, Path]:
    """Copies of the shipped default whose semantic branch declares each ``jpeg_downscale`` policy (model files,
    weights and fusion unchanged): what the default costs, and decides, with either decode."""
    import dataclasses
    import shutil

    from aligngemini_sdk.bundle import write_manifest
    from aligngemini_sdk.detector import default_bundle_path
    from aligngemini_sdk.manifest import Manifest

    out = {}
    for policy in POLICIES:
        out[policy] = root / f"default-{policy}"
        shutil.copytree(default_bundle_path(), out[policy])
        m = Manifest.from_json((out[policy] / "manifest.json").read_text())
        assert m.semantic is not None and m.semantic.input is not None
        sem = dataclasses.replace(m.semantic, input=dataclasses.replace(m.semantic.input, jpeg_downscale=policy))
        write_manifest(out[policy], dataclasses.replace(m, semantic=sem))
    return out


def agreement(variants: dict[str, Path], limit: int) -> dict[str, float]:
    """The default's verdicts under the two policies on the shared JPEGs (every source, both classes)."""
    from aligngemini_sdk import Detector

    paths = sorted(p for p in SHARED.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")
                   and p.read_bytes()[:2] == b"\xff\xd8")[:limit]
    from aligngemini_sdk.errors import ImageError

    flips, deltas, reduced, refused = 0, [], 0, 0
    with Detector(variants["none"]) as full, Detector(variants["dct"]) as dct:
        for p in paths:
            try:
                a, b = full.detect(p), dct.detect(p)
            except ImageError:  # truncated files (metadata test images): refused by both paths alike
                refused += 1
                continue
            flips += a.is_fake != b.is_fake
            reduced += "dct" in b.extra["decode"]
            if a.semantic.probability is not None and b.semantic.probability is not None:
                deltas.append(abs(a.semantic.probability - b.semantic.probability))
    return {"images": len(paths) - refused, "refused": refused, "reduced": reduced, "verdict_flips": flips,
            "median_abs_dp_semantic": statistics.median(deltas), "max_abs_dp_semantic": max(deltas)}


def end_to_end(path: Path, runs: int, variants: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """detect() medians against the branches' own medians, measured in the same runs."""
    from aligngemini_sdk import Detector

    out: dict[str, dict[str, Any]] = {}
    data = path.read_bytes()
    cases = [("pixel-only", None, False)] + [(POLICIES[p], variants[p], True) for p in POLICIES]
    for label, bundle, load_semantic in cases:
        with Detector(bundle, load_semantic=load_semantic) as det:
            det.detect(path)
            rs = [det.detect(path) for _ in range(runs)]
            total = statistics.median(r.total_ms for r in rs)
            branches = statistics.median((r.pixel.ms or 0) + (r.semantic.ms or 0) for r in rs)
            out[label] = {"detect_ms": total, "branches_ms": branches, "ratio": total / branches,
                          "decode": rs[0].extra["decode"]}
            if not load_semantic:
                def previous() -> object:
                    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
                    return det.detect(rgb, color_order="RGB")
                prev = median_ms(previous, runs)
                out["pixel-only, previous path"] = {"detect_ms": prev, "branches_ms": branches,
                                                    "ratio": prev / branches, "decode": "OpenCV full"}
    return out


def plot(rep: DecodeReport, path: Path) -> None:
    names = list(rep.rows[0].decoders_ms)
    with figure(path, dpi=110, figsize=(10, 4.8)) as ax:
        width = 0.8 / len(rep.rows)
        for i, row in enumerate(rep.rows):
            ax.bar([k + i * width for k in range(len(names))], [row.decoders_ms.get(n, 0) for n in names], width,
                   label=f"{row.image} ({row.megapixels:.0f} MP)")
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))], names, rotation=20, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("median ms (log)")
        ax.set_title(f"JPEG decoding on {rep.cpu}")
        ax.legend(fontsize=8)


def _floor_markdown(rep: DecodeReport) -> list[str]:
    """Where the region decode's time goes on the 12 MP file, and what that means for the end-to-end ratio."""
    if len(rep.crop_heights) < 2:
        return []
    tops, ms = zip(*rep.crop_heights, strict=True)
    slope, fixed = np.polyfit(tops, ms, 1)
    row = next(r for r in rep.rows if r.image == "12 MP baseline")
    centre = row.decoders_ms["SDK region 224"]
    branch = row.end_to_end["pixel-only"]["branches_ms"]
    return ["", "## The floor: a 224 crop of the 12 MP baseline file at several heights", "",
            "| crop top row | " + " | ".join(str(t) for t in tops) + " |", "|---|" + "---|" * len(tops),
            "| region decode ms | " + " | ".join(f"{v:.1f}" for v in ms) + " |", "",
            f"Linear fit: {fixed:.1f} ms fixed + {slope * 1000:.2f} ms per 1,000 rows above the crop (entropy decoding "
            f"that cannot be skipped without restart markers). The centre crop's {centre:.1f} ms is therefore the "
            f"floor for this file; with the pixel branch at {branch:.1f} ms, 'detect <= 2x the branch' would need the "
            f"whole decode within {branch:.1f} ms."]


def to_markdown(rep: DecodeReport) -> str:
    names = list(rep.rows[0].decoders_ms)
    lines = [f"# JPEG decoding and end-to-end speed on {rep.cpu}", "",
             f"CPU features: {' '.join(rep.features)}; {rep.jpeg_path}; medians of {rep.runs} runs; {rep.date}.",
             "", "## Decoders (ms)", "", "| image | MP | MB | progressive | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for r in rep.rows:
        lines.append(f"| {r.image} | {r.megapixels:.1f} | {r.file_mb:.2f} | {r.progressive} | "
                     + " | ".join(f"{r.decoders_ms.get(n, float('nan')):.1f}" for n in names) + " |")
    lines += ["", "## End to end: `detect(path)` against the branches' own time (same runs)", "",
              "Branch time includes each branch's own preprocessing (the whole-image branch's resize).", "",
              "| image | bundle | decode | detect p50 ms | branches p50 ms | ratio |", "|---|---|---|---|---|---|"]
    for r in rep.rows:
        for label, e in r.end_to_end.items():
            lines.append(f"| {r.image} | {label} | {e['decode']} | {e['detect_ms']:.1f} | "
                         f"{e['branches_ms']:.1f} | {e['ratio']:.2f}x |")
    lines += _floor_markdown(rep)
    if rep.heic:
        h = rep.heic
        lines += ["", "## HEIC (12 MP grid of 512 x 512 tiles, as iPhones write it; made here, x265 quality 80)", "",
                  f"{h['file_mb']:.2f} MB; full decode (libheif + libde265) **{h['decode_ms']:.0f} ms**; the tiles under "
                  f"the 224 centre crop **{h['tiles_ms']:.1f} ms**; pixel-only `detect(path)` {h['detect_ms']:.1f} ms "
                  f"against the branch's {h['branch_ms']:.1f} ms ({h['detect_ms'] / h['branch_ms']:.2f}x; tile path "
                  f"{'used' if h['tiles_used'] else 'NOT used'}). Inside `detect()` the tile workers share the 2 cores with ONNX "
                  "Runtime's spinning intra-op threads, so the decode there costs more than alone. Rotated or "
                  "mirrored grids decode in full."]
    a = rep.dct_agreement
    if a:
        lines += ["", "## The default's verdicts with the dct policy against those with the full decode", "",
                  f"{a['images']:.0f} shared JPEGs ({a['reduced']:.0f} of them reduced; {a['refused']:.0f} truncated files refused by both): {a['verdict_flips']:.0f} "
                  f"verdicts differ; semantic |Δp| median {a['median_abs_dp_semantic']:.4f}, "
                  f"max {a['max_abs_dp_semantic']:.4f}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--agreement-images", type=int, default=2000, help="shared JPEGs for the dct-policy agreement")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "jpeg_decode"))
    args = ap.parse_args()
    from aligngemini_sdk import jpeg
    from aligngemini_sdk.device import cpu_info, report_stem

    cpu = cpu_info()
    rows = []
    heights: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = policy_variants(Path(tmp))
        cases = [("12 MP baseline", (4000, 3000), False), ("12 MP progressive", (4000, 3000), True),
                 ("50 MP baseline", (8160, 6120), False)]
        files = []
        for name, size, prog in cases:
            p = Path(tmp) / f"{name.replace(' ', '_')}.jpg"
            p.write_bytes(camera_like(size, prog))
            files.append((name, p, prog))
        files += [(name, p, False) for name, p in REAL_PHOTOS]
        for name, p, prog in files:
            data = p.read_bytes()
            head = jpeg.header(data)
            assert head is not None
            print(f"[jpeg_decode] {name}", flush=True)
            row = ImageRow(name, head.width * head.height / 1e6, len(data) / 1e6, prog)
            for label, fn in decoders(data).items():
                row.decoders_ms[label] = median_ms(fn, args.runs)
            row.end_to_end = end_to_end(p, args.runs, variants)
            rows.append(row)
            if name == "12 MP baseline":
                heights = crop_heights(data, args.runs)
        print("[jpeg_decode] 12 MP HEIC", flush=True)
        heic = heic_figures(args.runs)
        print("[jpeg_decode] the default under both decode policies", flush=True)
        dct = agreement(variants, args.agreement_images)
    rep = DecodeReport(cpu=str(cpu.get("model", "?")), features=list(cpu.get("features", [])),
                       date=time.strftime("%Y-%m-%d"), runs=args.runs, jpeg_path=jpeg.status().detail, rows=rows,
                       dct_agreement=dct, crop_heights=heights, heic=heic)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = report_stem()
    (out / f"{stem}.json").write_text(json.dumps(asdict(rep), indent=2))
    (out / f"{stem}.md").write_text(to_markdown(rep))
    plot(rep, out / f"{stem}.png")
    print(to_markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
