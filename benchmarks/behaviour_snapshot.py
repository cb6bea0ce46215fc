"""What a code change must not change: the artifacts exports write and what `detect --json` says.

    .venv/bin/python benchmarks/behaviour_snapshot.py OUT     # on two commits, then: cmp A/snapshot.json B/snapshot.json

Writes OUT/snapshot.json with the SHA-256 of every file of (1) a LaDeDa export (FP32 + FP16, the real weights) and
(2) a compact-expert export (INT8: weight formats, fallback search, uint8 input, the pixel-input candidate), their
manifests and gate reports (timings, CPU names and paths left out), (3) the pre-hardening default bundle hardened
again (``export harden``), (4) the shipped default bundle's files, and (5) ``aligngemini detect --json`` on 44
shared images (timings left out). The restructure of issue 15 left all of it identical.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALIGNGEMINI_SHARED_DATA", ROOT.parent / "shared" / "data"))
CLI = str(ROOT / ".venv" / "bin" / "aligngemini")
PRE_HARDENING = "bbbee00^"  # the commit before the default bundle was hardened
VOLATILE = ("created", "cpu", "bundle", "total_ms", "elapsed_s", "kernels_vs_reference")


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): sha(p) for p in sorted(d.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def stable(o: Any) -> Any:
    """``o`` without timings, CPU names and paths."""
    if isinstance(o, dict):
        return {k: stable(v) for k, v in o.items() if not (k.endswith("ms") or "latency" in k or k in VOLATILE)}
    return [stable(v) for v in o] if isinstance(o, list) else o


def collection(out: Path) -> tuple[Path, dict[tuple[str, str], list[dict[str, str]]]]:
    """Up to 8 images per (label, source repository) of images.csv, as a labelled folder of links."""
    with open(SHARED / "images.csv") as fh:
        rows = list(csv.DictReader(fh))
    pick: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in rows:
        group = pick.setdefault((r["label"], r["source_repo"].replace("/", "__")), [])
        if len(group) < 8:
            group.append(r)
    coll = out / "coll"
    shutil.rmtree(coll, ignore_errors=True)
    for (label, src), group in pick.items():
        d = coll / ("fake" if label == "fake" else "real") / src
        d.mkdir(parents=True, exist_ok=True)
        for r in group:
            (d / Path(r["path"]).name).symlink_to(SHARED / r["path"])
    return coll, pick


def export_record(bundle: Path, cfg: Any) -> dict[str, Any]:
    from aligngemini_sdk.errors import GateFailedError
    from aligngemini_sdk.export.pixel import export_pixel

    shutil.rmtree(bundle, ignore_errors=True)
    try:
        rep = export_pixel(cfg).to_dict()
    except GateFailedError as exc:
        rep = exc.report.to_dict() if exc.report is not None else {"failed": str(exc)}
    manifest = bundle / "manifest.json"
    return {"files": hashes(bundle), "report": stable(json.loads(json.dumps(rep, default=str))),
            "manifest": stable(json.loads(manifest.read_text())) if manifest.exists() else None}


def hardened(out: Path, coll: Path) -> dict[str, str] | None:
    old, new = out / "old_default", out / "hardened"
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(new, ignore_errors=True)
    (old / "pixel").mkdir(parents=True)
    for f in ("manifest.json", "MODEL_CARD.md", "pixel/model.int8.onnx"):
        blob = subprocess.run(["git", "-C", str(ROOT), "show", f"{PRE_HARDENING}:sdk/default_bundle/{f}"],
                              capture_output=True, check=True).stdout
        (old / f).write_bytes(blob)
    subprocess.run([CLI, "export", "harden", str(old), "--out", str(new), "--images", str(coll / "real"),
                    "--max-images", "16"], check=False)
    return hashes(new) if new.exists() else None


def detect_record(pick: dict[tuple[str, str], list[dict[str, str]]]) -> tuple[int, list[Any]]:
    imgs = [str(SHARED / r["path"]) for group in pick.values() for r in group[:3]]
    with open(SHARED / "wild" / "images.csv") as fh:
        imgs += [str(SHARED / "wild" / r["path"]) for r in list(csv.DictReader(fh))[::20]]
    run = subprocess.run([CLI, "detect", *imgs, "--json"], capture_output=True, text=True)
    return run.returncode, [stable(json.loads(line)) for line in run.stdout.splitlines() if line.strip()]


def main() -> int:
    import torch

    from aligngemini_sdk.export.compact import CompactExpert
    from aligngemini_sdk.export.pixel import PixelExportConfig
    from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    coll, pick = collection(out)
    res: dict[str, Any] = {"ladeda": export_record(out / "ladeda", PixelExportConfig(
        arch="ladeda", weights=str(SHARED / "weights" / "tiny_ladeda" / "WildRF_Tiny_LaDeDa.pth"), out=out / "ladeda",
        precisions=("fp32", "fp16"), val=str(coll), name="snapshot ladeda"))}
    torch.manual_seed(0)
    spec = InputSpec(height=224, width=224, crop="center", resize="none", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    res["compact"] = export_record(out / "compact", PixelExportConfig(
        arch="module", module=CompactExpert(pretrained=True), out=out / "compact", precisions=("int8",),
        calib=str(coll), allow_small_calib=True, min_calib=20, input=spec, name="snapshot compact", fallback_rounds=1))
    res["hardened_files"] = hardened(out, coll)
    res["default_files"] = hashes(ROOT / "sdk" / "default_bundle")
    res["detect_rc"], res["detect"] = detect_record(pick)
    (out / "snapshot.json").write_text(json.dumps(res, indent=1, sort_keys=True))
    print(f"wrote {out / 'snapshot.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
