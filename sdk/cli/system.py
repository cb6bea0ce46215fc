"""``aligngemini sys``: installed runtimes, providers and CPU features (what a benchmark figure is a fact about)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from aligngemini_sdk.cli.exit_codes import EXIT_OK


def register(sub: Any) -> None:
    s = sub.add_parser("sys", help="installed runtimes, providers, CPU features")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sys)


def cmd_sys(args: argparse.Namespace) -> int:
    from aligngemini_sdk.device import device_key, fingerprint

    fp = fingerprint()
    fp["device_key"] = device_key("cpu")
    if args.json:
        print(json.dumps(fp, indent=2))
        return EXIT_OK
    cpu = fp["cpu"]
    print(f"cpu         {cpu['model']} ({cpu['arch']}), {cpu['usable_cores']} usable / {cpu['logical_cores']} logical cores")
    print(f"features    {' '.join(cpu['features']) or '-'}")
    print(f"os/python   {fp['os']} / {fp['python']}")
    print(f"onnxruntime {fp['onnxruntime']}  providers: {', '.join(fp['onnxruntime_providers'])}")
    print(f"llama.cpp   {fp['llama_cpp'] or 'not installed (pip install aligngemini-sdk[gguf])'}")
    print(f"tensorrt    {fp['tensorrt'] or 'not installed (pip install aligngemini-sdk[tensorrt])'}")
    print(f"jpeg        {fp['jpeg_region_decode']}")
    print(f"resize      {fp['resize']}")
    print(f"heic        {fp['heic']}")
    print(f"device key  {fp['device_key']}")
    return EXIT_OK
