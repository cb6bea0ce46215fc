"""``aligngemini detect``: verdicts for images, files or directories (JSON lines with ``--json``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aligngemini_sdk.cli.common import add_runtime_options, detector_from
from aligngemini_sdk.cli.exit_codes import DETECT_EPILOG, EXIT_BAD_INPUT, EXIT_OK, EXIT_SOME_FAILED
from aligngemini_sdk.errors import ImageError


def register(sub: Any) -> None:
    d = sub.add_parser("detect", help="detect AI-generated images", epilog=DETECT_EPILOG)
    d.add_argument("inputs", nargs="+", help="image files or directories")
    add_runtime_options(d)
    d.add_argument("--json", action="store_true", help="JSON lines on stdout")
    d.add_argument("--trust-anchors", help="PEM file of C2PA trust anchors (default: none, every signature untrusted)")
    d.add_argument("--no-provenance", action="store_true", help="do not read C2PA / generator metadata")
    d.add_argument("--trusted-key", action="append", metavar="PEM",
                   help="Ed25519 public key of a bundle signer (repeatable): refuse a bundle none of them signed")
    d.add_argument("--warmup", action="store_true", help="measure branch latencies before the first image")
    d.set_defaults(func=cmd_detect)


def cmd_detect(args: argparse.Namespace) -> int:
    from aligngemini_sdk.dataset import list_images
    from aligngemini_sdk.progress import Progress

    paths: list[Path] = [p for item in args.inputs for p in list_images(item)]
    if not paths:
        print("no images found", file=sys.stderr)
        return EXIT_BAD_INPUT
    det = detector_from(args)
    if args.warmup:
        det.warmup()
    bar = Progress(len(paths), "detect", enabled=None if len(paths) > 1 else False)
    n_bad = 0
    for path in paths:
        try:
            r = det.detect(path)
        except ImageError as exc:
            n_bad += 1
            rec: dict[str, Any] = {"path": str(path), "error": type(exc).__name__, "message": exc.reason}
            print(json.dumps(rec, allow_nan=False) if args.json else f"{path}: ERROR {type(exc).__name__}: {exc.reason}",
                  flush=True)
            bar.update()
            continue
        if args.json:
            d = r.to_dict()
            rec = {"path": str(path), "is_fake": r.is_fake, "label": r.label, "score": round(r.score, 6),
                   "branches": d["branches"], "total_ms": round(r.total_ms, 3), "budget_ms": r.budget_ms,
                   "over_budget": r.over_budget, "bundle_id": r.bundle_id, "provenance": d["provenance"],
                   "decided_by_provenance": r.decided_by_provenance,
                   "detectors": {"is_fake": r.detector_is_fake, "score": r.detector_score}}
            print(json.dumps(rec, allow_nan=False), flush=True)  # RFC 8259: a NaN is an error, never printed
        else:
            sem = (f"semantic {r.semantic.probability:.3f}" if r.semantic.ran
                   else f"semantic skipped ({r.semantic.skip_reason})")
            prov = f" | provenance: {r.decided_by_provenance}" if r.decided_by_provenance else ""
            print(f"{path}: {r.label.upper()} score {r.score:.3f} | pixel {r.pixel.probability:.3f} "
                  f"({r.pixel.ms:.1f} ms) | {sem}{prov} | {r.total_ms:.1f} ms", flush=True)
        bar.update()
    bar.close()
    if n_bad:
        print(f"{n_bad} of {len(paths)} inputs could not be read", file=sys.stderr)
    return EXIT_OK if not n_bad else EXIT_BAD_INPUT if n_bad == len(paths) else EXIT_SOME_FAILED
