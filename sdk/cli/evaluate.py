"""``aligngemini eval``: balanced accuracy / AUC per source of a bundle on a labelled collection."""

from __future__ import annotations

import argparse
import json
from typing import Any

from aligngemini_sdk.cli.common import add_runtime_options, comma_list
from aligngemini_sdk.cli.exit_codes import EXIT_OK


def register(sub: Any) -> None:
    from aligngemini_sdk.evaluate import BACKENDS

    e = sub.add_parser("eval", help="balanced accuracy / AUC per source on a labelled collection")
    e.add_argument("bundle")
    e.add_argument("data", help="DIR with real/ and fake/, or CSV (path,label[,source])")
    e.add_argument("--out", help="write eval.json, eval.md and predictions.jsonl here")
    e.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    e.add_argument("--backend", default="local", choices=sorted(BACKENDS))
    e.add_argument("--exclude-sources", default="")
    add_runtime_options(e, bundle_flag=False, precision=False)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from aligngemini_sdk.evaluate import evaluate, to_markdown

    rep = evaluate(args.bundle, args.data, out=args.out, workers=args.workers, backend=args.backend,
                   exclude_sources=comma_list(args.exclude_sources), device=args.device,
                   threads=args.threads, budget_ms=args.budget_ms, power=args.power,
                   operating_point=args.operating_point)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=1))
    else:
        print(to_markdown(rep))
    return EXIT_OK
