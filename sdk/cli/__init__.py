"""``aligngemini`` command line: one module per command group, each a thin layer over a library function.

    detect.py    detect                 evaluate.py  eval
    bundle.py    info, verify           bench.py     bench, bench compare
    system.py    sys                    export.py    export pixel | calibrate | harden | vlm | sign
    cache.py     cache [list | prune]

Machine-readable output goes to stdout (JSON lines with ``--json``); progress and diagnostics go to
stderr, so ``aligngemini detect DIR --json > results.jsonl`` is safe. Exit statuses: :mod:`.exit_codes`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aligngemini_sdk import __version__
from aligngemini_sdk.cli import bench, bundle, cache, detect, evaluate, export, system
from aligngemini_sdk.cli.exit_codes import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_ERROR
from aligngemini_sdk.errors import AlignGeminiError, ImageError

GROUPS = (detect, bundle, system, export, evaluate, bench, cache)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aligngemini", description="AlignGemini AI-generated image detector SDK")
    p.add_argument("-v", "--verbose", action="store_true", help="show runtime logs (llama.cpp, ORT)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="[aligngemini] %(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except AlignGeminiError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, ImageError) else EXIT_ERROR
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # the reader went away (`aligngemini detect DIR | head`): stop quietly, as Unix tools do; point stdout
        # at /dev/null so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
