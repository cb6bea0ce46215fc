"""``aligngemini cache``: what the SDK's cache holds, and ``cache prune`` to remove what can be made again."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from aligngemini_sdk.cli.common import comma_list
from aligngemini_sdk.cli.exit_codes import EXIT_OK


def register(sub: Any) -> None:
    from aligngemini_sdk.cache import DERIVED, KINDS

    c = sub.add_parser("cache", help="list the SDK's cache (unpacked bundles, sealed folders, engines), or prune it")
    c.add_argument("action", nargs="?", choices=("list", "prune"), default="list")
    c.add_argument("--older-than-days", type=float, default=0.0,
                   help="prune: only entries not used for this many days (default: every entry of the kinds)")
    c.add_argument("--kinds", type=comma_list, default=DERIVED, metavar="K1,K2",
                   help=f"prune: which kinds ({', '.join(KINDS)}; default {','.join(DERIVED)}: what is made again "
                        "on demand)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_cache)


def cmd_cache(args: argparse.Namespace) -> int:
    from aligngemini_sdk.cache import default_cache_dir, entries, prune

    if args.action == "prune":
        shown = prune(older_than_s=args.older_than_days * 86400.0, kinds=args.kinds)
    else:
        shown = entries()
    if args.json:
        print(json.dumps({"cache": str(default_cache_dir()), "action": args.action,
                          "entries": [{"kind": e.kind, "path": str(e.path), "bytes": e.bytes,
                                       "last_used": e.last_used} for e in shown]}, indent=2))
        return EXIT_OK
    verb = "removed" if args.action == "prune" else "holds"
    print(f"{default_cache_dir()} {verb} {len(shown)} entries, {sum(e.bytes for e in shown) / 1e6:.1f} MB")
    for e in shown:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        print(f"  {e.kind:<20} {e.bytes / 1e6:>9.1f} MB  last used {used}  {e.path.name}")
    return EXIT_OK
