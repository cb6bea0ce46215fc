"""Options several command groups share, spelled once."""

from __future__ import annotations

import argparse
from typing import Any

from aligngemini_sdk.budget import PowerMode
from aligngemini_sdk.device import Device


def add_runtime_options(sp: argparse.ArgumentParser, *, bundle_flag: bool = True, device: str = "auto",
                        precision: bool = True) -> None:
    """Where and how the branches run: bundle, device, threads, precision, budget, power."""
    if bundle_flag:
        sp.add_argument("--bundle", help="bundle dir or .tar (default: the embedded default bundle)")
    sp.add_argument("--device", default=device, choices=Device.names(), metavar="DEVICE",
                    help=f"{', '.join(Device.names())} (default {device})")
    sp.add_argument("--threads", type=int, default=None)
    if precision:
        sp.add_argument("--precision", default=None, help="pixel artifact: int8, fp32, fp16, tensorrt")
    sp.add_argument("--budget-ms", type=float, default=None, help="per-image latency budget")
    add_power(sp)
    sp.add_argument("--operating-point", default=None, metavar="NAME",
                    help="a named operating point of the bundle, e.g. fpr1, fpr5, fpr10 (thresholds chosen for that "
                         "real-photo false-positive rate; `aligngemini info` lists them)")


def add_power(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--power", default=PowerMode.FULL.value, choices=PowerMode.names())


def comma_list(value: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in value.split(",") if s.strip())


def detector_from(args: argparse.Namespace) -> Any:
    from aligngemini_sdk.detector import Detector, DetectorOptions

    return Detector(args.bundle, DetectorOptions(device=args.device, budget_ms=args.budget_ms, power=args.power,
                                                 threads=args.threads, pixel_precision=args.precision,
                                                 verbose=args.verbose, provenance=not args.no_provenance,
                                                 trust_anchors=args.trust_anchors,
                                                 trusted_keys=tuple(args.trusted_key) if args.trusted_key else None,
                                                 operating_point=args.operating_point))
