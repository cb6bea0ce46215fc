"""``aligngemini info`` and ``aligngemini verify``: what a bundle holds, and whether this device reproduces it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from aligngemini_sdk.cli.exit_codes import EXIT_NONCONFORMING, EXIT_OK


def register(sub: Any) -> None:
    i = sub.add_parser("info", help="summarise a bundle and verify its checksums")
    i.add_argument("bundle", nargs="?")
    i.add_argument("--json", action="store_true")
    i.add_argument("--trusted-key", action="append", metavar="PEM",
                   help="Ed25519 public key of a bundle signer (repeatable): check the manifest's signature")
    i.set_defaults(func=cmd_info)

    vf = sub.add_parser("verify", help="check this device reproduces the bundle's golden outputs "
                                       f"(exit {EXIT_OK} pass, {EXIT_NONCONFORMING} an artifact does not conform or "
                                       "none could be checked)")
    vf.add_argument("bundle", nargs="?", help="bundle dir or .tar (default: the embedded default bundle)")
    vf.add_argument("--device", default="cpu")
    vf.add_argument("--threads", type=int, default=None)
    vf.add_argument("--json", action="store_true")
    vf.set_defaults(func=cmd_verify)


def cmd_info(args: argparse.Namespace) -> int:
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.detector import default_bundle_path

    b = Bundle.open(args.bundle or default_bundle_path(), trusted_keys=args.trusted_key)
    out = bundle_summary(b)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_summary(b, out)
    return EXIT_OK


def bundle_summary(b: Any) -> dict[str, Any]:
    """What ``info --json`` prints: identity, requirements, verified files, branches, fusion, operating points (with
    the 95 % upper bound on the real-photo FPR that each one's recorded measurement supports)."""
    from aligngemini_sdk.fpr_bound import BOUND_CONFIDENCE, measured_upper_bound
    from aligngemini_sdk.manifest import required_features

    m = b.manifest
    out: dict[str, Any] = {"bundle_id": m.bundle_id, "name": m.name, "placeholder": m.placeholder,
                           "description": m.description, "path": str(b.source), "fusion": m.fusion.rule,
                           "requires": required_features(m), "files_verified": b.verify(), "branches": {},
                           "signature": {"key_id": b.signature_key_id, "checked": b.signed_by is not None}}
    if m.fusion.rule in ("mean", "logistic"):
        out["fusion_weights"] = {**m.fusion.weights, "bias": m.fusion.bias, "threshold": m.fusion.threshold}
    out["operating_points"] = {n: {"target_fpr": p.target_fpr, "pixel": p.pixel, "semantic": p.semantic,
                                   "fusion": p.fusion, "measured": p.measured,
                                   "fpr_upper_95": measured_upper_bound(p.measured, BOUND_CONFIDENCE)}
                               for n, p in m.fusion.operating_points.items()}
    out["default_operating_point"] = m.fusion.default_operating_point
    for name in ("pixel", "semantic"):
        spec = m.branch(name)
        if spec is None:
            continue
        inp = spec.input
        out["branches"][name] = {
            "arch": spec.arch, "default_artifact": spec.default_artifact, "threshold": spec.threshold,
            "artifacts": {a: {"runtime": art.runtime, "precision": art.precision,
                              "size_mb": round(sum(f.bytes for f in art.files.values()) / 1e6, 3),
                              **({"input": art.options["input"]} if "input" in art.options else {})}
                          for a, art in spec.artifacts.items()},
            **({"input": inp.__dict__} if inp is not None else {}),
            **({"labels": m.semantic.labels} if name == "semantic" and m.semantic and m.semantic.labels else {}),
        }
    out["device_profiles"] = {k: {b2: s.__dict__ for b2, s in v.items()} for k, v in m.device_profiles.items()}
    out["provenance"] = m.provenance
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _measured_line(point: dict[str, Any]) -> str:
    """An operating point's recorded measurement in words: FPR (of how many real images, its 95 % upper bound), TPR,
    on what, and the confidence it was chosen at. The values come from a manifest: printed, never trusted."""
    m = point["measured"]
    fpr, tpr, n = m.get("fpr"), m.get("tpr"), m.get("n_real")
    text = f"measured FPR {fpr:.3f}" if _number(fpr) else "measured FPR ?"
    if point["fpr_upper_95"] is not None:
        text += f" of {n} real (95 % upper bound {point['fpr_upper_95']:.3f})"
    text += (f", TPR {tpr:.3f}" if _number(tpr) else "") + f" on {m.get('data', '?')}"
    conf = m.get("confidence")
    if _number(conf) and 0 < conf < 1 and _number(point["target_fpr"]):
        text += f"; chosen for FPR <= {point['target_fpr']:.0%} at {conf:.0%} confidence"
    return text


def _print_summary(b: Any, out: dict[str, Any]) -> None:
    from aligngemini_sdk.quantized_input import QuantizedInput

    m = b.manifest
    print(f"bundle   {m.bundle_id}  ({m.name}){'  [PLACEHOLDER: untrained]' if m.placeholder else ''}")
    print(f"path     {b.source}")
    sig = out["signature"]
    print("signed   " + ("no" if sig["key_id"] is None else
                         f"by key {sig['key_id']} ({'checked' if sig['checked'] else 'not checked: pass --trusted-key'})"))
    if m.description:
        print(f"about    {m.description}")
    print(f"fusion   {m.fusion.rule}" + (f" {out['fusion_weights']}" if "fusion_weights" in out else ""))
    for n, p in out["operating_points"].items():
        mark = " (default)" if n == out["default_operating_point"] else ""
        thresholds = ", ".join(f"{k} {p[k]:.4f}" for k in ("pixel", "semantic", "fusion") if p[k] is not None)
        print(f"point    {n}{mark}: {thresholds}; {_measured_line(p)}")
    if out["requires"]:
        print(f"requires {', '.join(out['requires'])} (SDK features)")
    for name, br in out["branches"].items():
        print(f"{name:8} arch={br['arch']} default={br['default_artifact']} threshold={br['threshold']}")
        for a, art in br["artifacts"].items():
            q = QuantizedInput.from_options(art)
            takes = f"  input {q.describe()}" if q else ""
            print(f"         - {a:10} {art['runtime']:12} {art['precision']:8} {art['size_mb']:.2f} MB{takes}")
            for line in _artifact_notes(m.branch(name).artifacts[a].options):
                print(f"           {line}")
    print(f"checksums: {len(out['files_verified'])} files verified (sha256)")
    for dev, stats in out["device_profiles"].items():
        print(f"profile  {dev}: " + ", ".join(f"{k} p90 {v['p90_ms']:.1f} ms" for k, v in stats.items()))


def _artifact_notes(options: dict[str, Any]) -> list[str]:
    """The INT8 saturation proof and the golden outputs an artifact carries, one line each."""
    notes = []
    proof = options.get("calibration", {}).get("int8_safety")
    if isinstance(proof, dict):
        notes.append(f"int8 weights {options['calibration'].get('weights', '?')}: "
                     + (f"no CPU kernel can saturate (worst pair sum {proof.get('worst_pair_sum')} <= "
                        f"{proof.get('int16_limit')}, {proof.get('nodes_checked')} nodes)" if proof.get("safe")
                        else f"CAN SATURATE on AVX2 u8s8 kernels: {proof.get('unsafe_nodes')}"))
    golden = options.get("conformance")
    if isinstance(golden, dict):
        notes.append(f"golden outputs: {golden.get('inputs')} inputs, tolerance {golden.get('tolerance', 0):.3g} "
                     "(aligngemini verify)")
    return notes


def cmd_verify(args: argparse.Namespace) -> int:
    """Run the bundle's golden inputs on this device; exit 4 when an artifact's outputs leave their tolerance."""
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.conformance import verify_bundle
    from aligngemini_sdk.detector import default_bundle_path

    rep = verify_bundle(Bundle.open(args.bundle or default_bundle_path()), device=args.device, threads=args.threads)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        cpu = rep.device["cpu"]
        print(f"bundle {rep.bundle_id} on {cpu['model']} [{' '.join(cpu['features'])}], "
              f"onnxruntime {rep.device['onnxruntime']}")
        for a in rep.artifacts:
            mark = {True: "PASS", False: "FAIL", None: "SKIP"}[a.passed]
            print(f"  {mark} {a.branch}/{a.artifact} ({a.runtime}, {a.precision}): {a.detail}")
            if a.saturation != "n/a":
                print(f"       int8 bound: {a.saturation}")
        if not rep.checked:
            print("  no artifact could be checked: nothing vouches for this device", file=sys.stderr)
    return EXIT_OK if rep.passed else EXIT_NONCONFORMING
