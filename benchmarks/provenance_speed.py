"""Cost of the provenance branch per file: read from the bytes before any pixel is decoded.

    .venv/bin/python benchmarks/provenance_speed.py [--runs 200] [--out benchmarks/reports/provenance]

Files: the largest shared JPEG without metadata; the same photo with EXIF text; a PNG with an A1111
``parameters`` chunk; the JPEG signed with C2PA by a throwaway test PKI (``aligngemini_sdk.provenance_testing``),
verified without trust anchors (untrusted) and with the test root as anchor (trusted); the photo as a HEIC with a
phone's EXIF, and that HEIC signed (with the ``[heic]`` extra). Median and p90 of
``read_provenance`` over ``--runs`` calls each, interleaved, on the CPU named in the report. Targets (issue 17):
no metadata <= 0.2 ms, C2PA <= 20 ms. Output: ``<cpu>-<kind>.json``, ``<cpu>-<kind>.md``, ``<cpu>-<kind>.png``.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk.plot import figure

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "images"


def files() -> dict[str, tuple[bytes, str | None]]:
    import cv2
    from PIL import Image, PngImagePlugin

    from aligngemini_sdk.provenance_testing import make_test_pki, sign_image

    src = max(SHARED.rglob("*.jpg"), key=lambda p: p.stat().st_size)
    bgr = cv2.imread(str(src))
    assert bgr is not None, src
    plain = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    pil = Image.fromarray(bgr[:, :, ::-1])
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = "Camera maker", "Phone 1", "Firmware 1.0"
    with_exif = io.BytesIO()
    pil.save(with_exif, "JPEG", quality=92, exif=exif.tobytes())
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a photo\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    png = io.BytesIO()
    pil.crop((0, 0, 1024, 1024)).save(png, "PNG", pnginfo=info)
    pki = make_test_pki("Benchmark Camera")
    signed = sign_image(pki, plain, "digitalCapture", "Benchmark Camera")
    anchors = Path(tempfile.mkdtemp()) / "anchors.pem"
    anchors.write_bytes(pki.root_pem)
    out = {f"JPEG, no metadata ({bgr.shape[1]}x{bgr.shape[0]})": (plain, None),
           "JPEG with EXIF text": (with_exif.getvalue(), None), "PNG with A1111 parameters": (png.getvalue(), None),
           "JPEG + C2PA, no trust anchors": (signed, None), "JPEG + C2PA, trusted root": (signed, str(anchors))}
    heic = _heic(pil, exif)
    if heic is not None:
        out["HEIC with EXIF"] = (heic, None)
        out["HEIC + C2PA, trusted root"] = (sign_image(pki, heic, "digitalCapture", "Benchmark Camera",
                                                       mime="image/heic"), str(anchors))
    return out


def _heic(pil: Any, exif: Any) -> bytes | None:
    """The photo as a HEIC with ``exif`` (None without the [heic] extra)."""
    try:
        import pillow_heif
    except ImportError:
        return None
    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    pil.save(out, "HEIF", quality=80, exif=exif.tobytes())
    return out.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "provenance"))
    args = ap.parse_args()
    from aligngemini_sdk.device import cpu_info, report_stem
    from aligngemini_sdk.provenance import read_provenance

    cases = files()
    times: dict[str, list[float]] = {k: [] for k in cases}
    outcome = {k: read_provenance(d, trust_anchors=a) for k, (d, a) in cases.items()}  # warm-up, and what it says
    for _ in range(args.runs):
        for k, (d, a) in cases.items():
            t0 = time.perf_counter()
            read_provenance(d, trust_anchors=a)
            times[k].append((time.perf_counter() - t0) * 1e3)
    cpu = cpu_info()
    rows = {k: {"bytes": len(cases[k][0]), "p50_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)),
                "says": outcome[k].says, "validation": outcome[k].validation} for k, v in times.items()}
    rep = {"cpu": cpu, "runs": args.runs, "date": time.strftime("%Y-%m-%d"), "cases": rows,
           "targets_ms": {"no metadata": 0.2, "c2pa": 20.0}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = report_stem()
    (out / f"{slug}.json").write_text(json.dumps(rep, indent=1))
    md = [f"# Provenance branch cost on {cpu['model']}", "",
          f"`read_provenance` on the file's bytes, {args.runs} interleaved calls per file, {rep['date']}. "
          "Targets: no metadata <= 0.2 ms, C2PA <= 20 ms.", "",
          "| file | bytes | p50 ms | p90 ms | says | validation |", "|---|---|---|---|---|---|"]
    md += [f"| {k} | {r['bytes']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['says']} | {r['validation']} |"
           for k, r in rows.items()]
    (out / f"{slug}.md").write_text("\n".join(md) + "\n")
    with figure(out / f"{slug}.png", dpi=110, figsize=(7, 3.2)) as ax:
        ax.barh(list(rows), [r["p50_ms"] for r in rows.values()])
        ax.set_xscale("log")
        ax.set_xlabel("median ms per file (log)")
        ax.set_title(f"Provenance branch, {cpu['model']}", fontsize=9)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
