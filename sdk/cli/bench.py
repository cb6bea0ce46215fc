"""``aligngemini bench``: per-artifact latency, memory and accuracy, and the fused pipeline under budgets
(or ``bench compare A.json B.json``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from aligngemini_sdk.bench import BenchReport, compare, run_bench, to_markdown
from aligngemini_sdk.cli.common import add_power, comma_list
from aligngemini_sdk.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK
from aligngemini_sdk.device import Device


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmark a bundle's artifacts and the fused pipeline "
                                     "(or: bench compare A.json B.json)")
    p.add_argument("bundle", nargs="?", help="bundle dir/.tar (default: embedded), or 'compare'")
    p.add_argument("reports", nargs="*", help="with 'compare': two bench.json files")
    p.add_argument("--device", default="cpu", choices=Device.names(), metavar="DEVICE")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--data", help="labelled images (DIR with real/ fake/, or CSV) for accuracy")
    p.add_argument("--max-images", type=int, default=200)
    p.add_argument("--exclude-sources", default="", help="comma list of sources to leave out of --data")
    p.add_argument("--budget-ms", default="", help="comma list of budgets to sweep, e.g. 20,100,1000")
    add_power(p)
    p.add_argument("--write-profile", action="store_true", help="store measured p50/p90 in the bundle manifest")
    p.add_argument("--profile-from", metavar="FILE",
                   help="instead of measuring: store the estimated VLM latencies of --profile-model from FILE (a "
                        "<cpu>-<kind>.profile.json of benchmarks/vlm_shapes.py) in the bundle's device profiles")
    p.add_argument("--profile-model", help="with --profile-from: which model's estimate (e.g. qwen2.5-vl-7b)")
    p.add_argument("--profile-artifact", help="with --profile-from: the bundle's semantic artifact name (default: "
                                              "as in FILE, q4_k_m)")
    p.add_argument("--out", help="write bench.json, bench.md, latency.png, accuracy_vs_latency.png here")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bundle == "compare":
        if len(args.reports) != 2:
            print("usage: aligngemini bench compare A.json B.json", file=sys.stderr)
            return EXIT_BAD_INPUT
        a, b = (BenchReport.from_dict(json.loads(Path(p).read_text())) for p in args.reports)
        print(compare(a, b))
        return EXIT_OK
    if args.profile_from:
        return _import_profile(args)
    from aligngemini_sdk.detector import default_bundle_path

    budgets: list[float | None] = [None] + [float(x) for x in args.budget_ms.split(",") if x] if args.budget_ms else [None]
    rep = run_bench(args.bundle or os.fspath(default_bundle_path()), data=args.data, device=args.device,
                    threads=args.threads, warmup=args.warmup, runs=args.runs, budgets=budgets, out=args.out,
                    max_images=args.max_images, write_profile=args.write_profile, power=args.power,
                    exclude_sources=comma_list(args.exclude_sources))
    print(to_markdown(rep))
    if args.out:
        print(f"wrote {args.out}/bench.json, bench.md and plots", file=sys.stderr)
    return EXIT_OK


def _import_profile(args: argparse.Namespace) -> int:
    from aligngemini_sdk.bundle import import_estimated_profile

    if not args.bundle or not args.profile_model:
        print("usage: aligngemini bench BUNDLE_DIR --profile-from FILE --profile-model MODEL", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        profiles = json.loads(Path(args.profile_from).read_text())
        m = import_estimated_profile(args.bundle, profiles, args.profile_model, args.profile_artifact)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for dev, stats in m.device_profiles.items():
        print(f"profile  {dev}: " + ", ".join(f"{k} p90 {v.p90_ms:.0f} ms" for k, v in stats.items()))
    return EXIT_OK
