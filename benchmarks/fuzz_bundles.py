"""Fuzz the bundle boundary: every hostile bundle must give a typed error and leave nothing behind.

    .venv/bin/python benchmarks/fuzz_bundles.py [--cases 3000] [--seed 1] [--out benchmarks/reports/fuzz_bundles]

Two mutators, both starting from the embedded default bundle:

- ``tar``: the bundle packed as a tar, then 1-4 random bytes overwritten; opened with ``Bundle.open`` into a fresh
  cache and verified. Outcomes: opens (a byte in padding), typed error, untyped error, and *leftover*: a typed
  error that still left something in the cache.
- ``manifest``: every leaf of ``manifest.json`` (a path, size, digest, runtime, threshold, ...) replaced in turn by
  every hostile value (NUL bytes, ``..``, 2**70, infinity, a negative number, a list, ``true``, a 5,000-character
  string, ...); the directory bundle is opened and verified, and a bundle that opens is loaded into a
  ``Detector`` that judges one image (an accepted value must not fail later, untyped, at load or inference).
- ``signed``: the default signed with a key made in the run, then 1-4 bytes of ``manifest.json`` or ``manifest.sig``
  changed, opened by a device that trusts the key: every case must be refused (any that opens is a miss).

Anything other than an :class:`AlignGeminiError` is a defect (the run lists the first of each kind). Output:
``fuzz.json`` and ``README.md`` under ``--out``, with the CPU named.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk import Bundle, Detector
from aligngemini_sdk.detector import default_bundle_path
from aligngemini_sdk.device import cpu_label
from aligngemini_sdk.errors import AlignGeminiError
from aligngemini_sdk.export.bundle_writer import pack_tar
from aligngemini_sdk.manifest import MANIFEST_NAME

HOSTILE: tuple[Any, ...] = (None, -1, 2**70, 1.5, True, "", "../../etc/passwd", "/abs", "a\0b", "x" * 5000, [], {},
                            "pixel", "NaN", float("inf"))


@dataclass
class Outcomes:
    """What the cases of one mutator gave."""

    mutator: str
    cases: int = 0
    opened: int = 0
    typed: int = 0
    untyped: int = 0
    leftover: int = 0
    examples: list[str] = field(default_factory=list)  #: the first untyped error or leftover of each kind

    def note(self, what: str) -> None:
        if what not in self.examples and len(self.examples) < 20:
            self.examples.append(what)


def attempt(out: Outcomes, open_it: Callable[[], Bundle], cache: Path) -> None:
    """Open and verify one hostile bundle, counting the outcome; ``cache`` must be empty after a refusal."""
    out.cases += 1
    try:
        open_it().verify()
        out.opened += 1
    except AlignGeminiError as exc:
        out.typed += 1
        if cache.exists() and any(cache.iterdir()):
            out.leftover += 1
            out.note(f"leftover after {type(exc).__name__}")
    except Exception as exc:  # a defect: recorded, not raised, so the run counts them all
        out.untyped += 1
        out.note(f"{type(exc).__name__}: {str(exc)[:120]}")
    shutil.rmtree(cache, ignore_errors=True)


def fuzz_tar(work: Path, cases: int, rng: random.Random) -> Outcomes:
    raw = pack_tar(default_bundle_path(), work / "default.tar").read_bytes()
    out, target, cache = Outcomes("tar"), work / "mutated.tar", work / "cache"
    for _ in range(cases):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        target.write_bytes(bytes(data))
        attempt(out, lambda: Bundle.open(target, cache_dir=cache), cache)
    return out


def leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in leaves(v, (*path, k))] or [path]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in leaves(v, (*path, i))] or [path]
    return [path]


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def fuzz_manifest(work: Path) -> Outcomes:
    bundle = work / "bundle"
    shutil.copytree(default_bundle_path(), bundle)
    original = json.loads((bundle / MANIFEST_NAME).read_text())
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out, cache = Outcomes("manifest"), work / "unused-cache"

    def load_and_judge() -> Bundle:
        opened = Bundle.open(bundle)
        with Detector(opened) as detector:
            detector.detect(image, color_order="RGB")
        return opened

    load_and_judge()  # the unmutated bundle must pass, or every case below would count a typed error for nothing
    for path in (p for p in leaves(original) if p):
        for value in HOSTILE:
            (bundle / MANIFEST_NAME).write_text(json.dumps(replaced(original, path, value)))
            attempt(out, load_and_judge, cache)
    return out


def fuzz_signed(work: Path, cases: int, rng: random.Random) -> Outcomes:
    """A signed copy of the default, opened by a device that trusts the signer's key, after 1-4 random bytes of
    ``manifest.json`` or ``manifest.sig`` changed: every change must be refused (``opened`` counts the misses)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from aligngemini_sdk.signature import SIGNATURE_NAME, sign_manifest

    bundle = work / "signed"
    shutil.copytree(default_bundle_path(), bundle)
    key = ed25519.Ed25519PrivateKey.generate()
    sign_manifest(bundle, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    Bundle.open(bundle, trusted_keys=[public])  # the unmutated bundle must pass
    originals = {name: (bundle / name).read_bytes() for name in (MANIFEST_NAME, SIGNATURE_NAME)}
    out, cache = Outcomes("signed (trusted key)"), work / "unused-cache"
    for _ in range(cases):
        name = rng.choice(sorted(originals))
        data = bytearray(originals[name])
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i] = (data[i] + rng.randrange(1, 256)) % 256  # always a different byte
        (bundle / name).write_bytes(bytes(data))
        before = out.opened
        attempt(out, lambda: Bundle.open(bundle, trusted_keys=[public]), cache)
        if out.opened > before:
            changed = [f"{i}: {originals[name][i:i + 1]!r}->{data[i:i + 1]!r}" for i in range(len(data))
                       if data[i] != originals[name][i]]
            out.note(f"opened after changing {name} at {', '.join(changed)}")
        (bundle / name).write_bytes(originals[name])
    return out


def markdown(results: list[Outcomes], seed: int) -> str:
    lines = ["# Bundle fuzzing", "", f"`benchmarks/fuzz_bundles.py --seed {seed}` (CPU: {cpu_label()}).", "",
             "| mutator | cases | opened | typed error | untyped error | typed but left files in the cache |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.mutator} | {r.cases} | {r.opened} | {r.typed} | {r.untyped} | {r.leftover} |" for r in results]
    bad = [f"- {r.mutator}: {e}" for r in results for e in r.examples]
    return "\n".join([*lines, "", *(["Defects:", *bad] if bad else ["No defects."]), ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=3000, help="tar mutations (the manifest sweep is exhaustive)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/reports/fuzz_bundles")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="fuzz-bundles-"))
    try:
        results = [fuzz_tar(work, args.cases, rng), fuzz_manifest(work), fuzz_signed(work, args.cases, rng)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps({"cpu": cpu_label(), "seed": args.seed,
                                               "results": [asdict(r) for r in results]}, indent=1))
    (out / "README.md").write_text(markdown(results, args.seed))
    print(markdown(results, args.seed))
    missed = any(r.opened for r in results if r.mutator.startswith("signed"))
    return 1 if missed or any(r.untyped or r.leftover for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
