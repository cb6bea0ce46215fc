"""Sub-commands that live beside their implementation modules: ``eval``, ``bench``, ``export vlm``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def cmd_eval(args: argparse.Namespace) -> int:
    from aligngemini_sdk.evaluate import evaluate, to_markdown

    rep = evaluate(args.bundle, args.data, out=args.out, workers=args.workers, backend=args.backend,
                   exclude_sources=tuple(s for s in args.exclude_sources.split(",") if s), device=args.device,
                   threads=args.threads, budget_ms=args.budget_ms, power=args.power)
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        print(to_markdown(rep))
    return 0


def cmd_export_vlm(args: argparse.Namespace) -> int:
    from aligngemini_sdk.errors import GateFailedError
    from aligngemini_sdk.export.vlm import VlmExportConfig, export_vlm

    cfg = VlmExportConfig(hf=Path(args.hf), out=Path(args.out), lora=Path(args.lora) if args.lora else None,
                          quants=tuple(q.strip() for q in args.quant.split(",")), mmproj_type=args.mmproj_type,
                          imatrix=Path(args.imatrix) if args.imatrix else None,
                          llama_cpp=Path(args.llama_cpp) if args.llama_cpp else None,
                          parity_images=sorted(Path(args.parity_images).glob("*")) if args.parity_images else [],
                          keep_reference=args.keep_f16)
    if args.question:
        cfg.question = args.question
    try:
        rep = export_vlm(cfg)
    except GateFailedError as exc:
        print(f"GATE FAILED: {exc}", file=sys.stderr)
        return 3
    print(json.dumps({"bundle": args.out, "bundle_id": rep["bundle_id"],
                      "parity": {q: r["max_abs_delta"] for q, r in rep["types"].items()}}))
    return 0


def register(sub: Any) -> None:
    e = sub.add_parser("eval", help="balanced accuracy / AUC per source on a labelled collection")
    e.add_argument("bundle")
    e.add_argument("data", help="DIR with real/ and fake/, or CSV (path,label[,source])")
    e.add_argument("--out", help="write eval.json, eval.md and predictions.jsonl here")
    e.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    e.add_argument("--backend", default="local", choices=["local", "ray"])
    e.add_argument("--exclude-sources", default="")
    e.add_argument("--device", default="auto")
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--budget-ms", type=float, default=None)
    e.add_argument("--power", default="full", choices=["full", "balanced", "low"])
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    export = next(a for a in sub.choices.values() if a.prog.endswith(" export"))
    esub = next(a for a in export._actions if isinstance(a, argparse._SubParsersAction))
    v = esub.add_parser("vlm", help="VLM -> GGUF (quantized) + mmproj via llama.cpp, with parity gate")
    v.add_argument("--hf", required=True, help="transformers model directory")
    v.add_argument("--lora", help="peft LoRA adapter directory to merge first")
    v.add_argument("--quant", default="Q4_K_M", help="comma list: Q8_0, Q6_K, Q5_K_M, Q4_K_M, ...")
    v.add_argument("--mmproj-type", default="f16", choices=["f16", "q8_0", "f32"])
    v.add_argument("--imatrix")
    v.add_argument("--llama-cpp", help="llama.cpp checkout with convert_hf_to_gguf.py (default: from the sdist)")
    v.add_argument("--parity-images", help="folder of images for the parity gate")
    v.add_argument("--question", help="the question asked to the VLM")
    v.add_argument("--keep-f16", action="store_true", help="also ship the f16 text model")
    v.add_argument("--out", required=True)
    v.set_defaults(func=cmd_export_vlm)

    from aligngemini_sdk.bench import register as register_bench

    register_bench(sub)
