"""Does the default give the same answers on another CPU? ``detect`` natively and on an emulated CPU, compared.

    .venv/bin/python benchmarks/emulated_cpu_agreement.py [--cpu Haswell | --cpu neoverse-n1] [--data DIR] [--out DIR]

The same ``aligngemini detect DIR --json`` runs twice: on this machine's CPU, and under qemu-user with ``-cpu`` a
model that lacks what this one has. ``Haswell`` (the default): x86-64 with AVX2 + FMA, no AVX-512, no VNNI, this
venv's own Python under ``qemu-x86_64``. ``neoverse-n1``: 64-bit ARM (ARMv8.2, NEON and the dot-product
instructions), an aarch64 Python with aarch64 wheels of the same versions under ``qemu-aarch64``
(``benchmarks/arm64_sysroot.py`` builds it). qemu emulates that CPU's instructions and feature registers, so ONNX
Runtime, OpenCV and libjpeg-turbo dispatch to the kernels such a machine runs: the whole pipeline (decode, crop,
both branches, fusion) is exercised there. Reported: per image the difference of the
fused score and of each branch's probability, and the decisions that differ. Emulation reproduces arithmetic, not
speed: no latency is reported. Output: ``<slug>.json``, ``<slug>.md`` and ``<slug>.png`` (sorted |Δ score|) under
``--out``, named after the emulated CPU, with both CPUs named.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from aligngemini_sdk.plot import figure

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wild" / "images"
LABEL = "import json; from aligngemini_sdk.device import cpu_label; print(json.dumps(cpu_label()))"
#: Which u8 x s8 kernel ONNX Runtime dispatches to: all-255 activations x all-127 weights, compared with the exact
#: product (VNNI, AMX, ARM dot product) and with the pair-saturated one (AVX2, AVX-512BW without VNNI), both from
#: export/saturation.py. Proof that the emulated run really took other kernels, not a copy of the native run.
KERNEL_PROBE = """
import json, numpy as np, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from aligngemini_sdk.export.saturation import emulate_u8s8_avx2, exact_u8s8
a, w = np.full((1, 64), 255, np.uint8), np.full((64, 1), 127, np.int8)
g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "g",
                      [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 64])],
                      [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])], [numpy_helper.from_array(w, "w")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a})[0]
print(json.dumps("exact (32-bit accumulation)" if np.array_equal(y, exact_u8s8(a, w)) else
                 "pair-saturated (16-bit pair sums)" if np.array_equal(y, emulate_u8s8_avx2(a, w)) else f"other ({y})"))
"""


@dataclass(frozen=True)
class Agreement:
    """One image's verdicts on both CPUs."""

    path: str
    native_fake: bool
    emulated_fake: bool
    d_score: float
    d_pixel: float
    d_semantic: float


@dataclass(frozen=True)
class Python:
    """How to start a Python: its argv prefix, and the environment it needs (None: this one's)."""

    argv: tuple[str, ...]
    env: dict[str, str] | None = None

    def run(self, args: list[str]) -> str:
        r = subprocess.run([*self.argv, *args], capture_output=True, text=True, cwd=ROOT, env=self.env)
        if r.returncode not in (0, 5):  # 5: some inputs could not be read (reported per file), the rest judged
            raise SystemExit(f"{' '.join(self.argv)} run failed ({r.returncode}):\n{r.stderr[-2000:]}")
        return r.stdout


def emulated(cpu: str) -> Python:
    """This venv's Python under qemu-x86_64 for an x86 model; an aarch64 Python under qemu-aarch64 for ARM ones."""
    if cpu.lower().startswith(("neoverse", "cortex", "a64fx")):
        from arm64_sysroot import python_command

        argv, env = python_command(cpu)
        return Python(tuple(argv), env)
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("qemu-x86_64 not found (apt-get install qemu-user; setup.sh installs it as root)")
    return Python((qemu, "-cpu", cpu, sys.executable))


def verdicts(stdout: str) -> dict[str, dict]:
    rows = (json.loads(line) for line in stdout.splitlines() if line.startswith("{"))
    return {r["path"]: r for r in rows if "is_fake" in r}


def branch_delta(a: dict, b: dict, name: str) -> float:
    """|Δ probability| of one branch; 0 when it ran on neither CPU, infinity when it ran on one only."""
    ran = [(r["branches"].get(name) or {}).get("ran", False) for r in (a, b)]
    if not any(ran):
        return 0.0
    if not all(ran):
        return float("inf")
    return abs(float(a["branches"][name]["probability"]) - float(b["branches"][name]["probability"]))


def compare(native: dict[str, dict], emulated: dict[str, dict]) -> list[Agreement]:
    both = sorted(set(native) & set(emulated))
    return [Agreement(p, native[p]["is_fake"], emulated[p]["is_fake"],
                      abs(native[p]["score"] - emulated[p]["score"]),
                      branch_delta(native[p], emulated[p], "pixel"),
                      branch_delta(native[p], emulated[p], "semantic")) for p in both]


def markdown(rows: list[Agreement], cpus: dict[str, str], emulated_model: str, wall: float) -> str:
    flips = [r for r in rows if r.native_fake != r.emulated_fake]
    worst = max(rows, key=lambda r: r.d_score)
    lines = [f"# The default on an emulated {emulated_model} vs natively", "",
             f"- native CPU: {cpus['native']}", f"- emulated CPU: qemu-user `-cpu {emulated_model}`, as the process "
             f"sees it: {cpus['emulated']}", f"- ONNX Runtime's u8 x s8 kernel: native {cpus['native_u8s8_kernel']}, "
             f"emulated {cpus['emulated_u8s8_kernel']} ({_other_kernels(cpus)})",
             "- the fused score in `detect --json` is rounded to 6 decimals; branch probabilities are not",
             f"- {len(rows)} images judged on both; wall {wall:.0f} s "
             f"(`benchmarks/emulated_cpu_agreement.py`, {time.strftime('%Y-%m-%d')})", "",
             "| decisions that differ | max \\|Δ score\\| | mean \\|Δ score\\| | max \\|Δ pixel p\\| | "
             "max \\|Δ semantic p\\| |", "|---|---|---|---|---|",
             f"| {len(flips)} of {len(rows)} | {worst.d_score:.2e} | {sum(r.d_score for r in rows) / len(rows):.2e} "
             f"| {max(r.d_pixel for r in rows):.2e} | {max(r.d_semantic for r in rows):.2e} |", ""]
    lines += [f"Differing: `{r.path}` (native {'fake' if r.native_fake else 'real'})" for r in flips]
    return "\n".join([*lines, "", "![sorted |Δ score|](" + emulated_model.lower() + ".png)", ""])


def _other_kernels(cpus: dict[str, str]) -> str:
    """What shows that the emulated run did not reuse this machine's kernels."""
    if cpus["emulated"].startswith("aarch64"):
        return "an aarch64 build of every library: ARM kernels by construction"
    if cpus["native_u8s8_kernel"] != cpus["emulated_u8s8_kernel"]:
        return "the emulated run took other kernels"
    return "the same u8 x s8 kernel class: this probe does not tell the runs apart"


def plot(rows: list[Agreement], path: Path, emulated_model: str) -> None:
    with figure(path, dpi=120, figsize=(6.5, 3.8)) as ax:
        ax.semilogy(sorted(max(r.d_score, 1e-12) for r in rows), ".", ms=3)
        ax.set_xlabel("image (sorted)")
        ax.set_ylabel("|fused score native - emulated|")
        ax.set_title(f"default bundle, native vs emulated {emulated_model} (1e-12 = identical)", fontsize=9)
        ax.grid(alpha=0.3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", default="Haswell", help="a qemu-x86_64 -cpu model, or an ARM one (neoverse-n1)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "emulated_cpu"))
    args = ap.parse_args()
    native, other = Python((sys.executable,)), emulated(args.cpu)
    detect = ["-m", "aligngemini_sdk.cli", "detect", args.data, "--json"]
    cpus = {"native": json.loads(native.run(["-c", LABEL])), "emulated": json.loads(other.run(["-c", LABEL])),
            "native_u8s8_kernel": json.loads(native.run(["-c", KERNEL_PROBE])),
            "emulated_u8s8_kernel": json.loads(other.run(["-c", KERNEL_PROBE]))}
    t0 = time.perf_counter()
    here = verdicts(native.run(detect))
    print(f"[emulated] native: {len(here)} verdicts; now on the emulated {args.cpu} (slow)", file=sys.stderr)
    rows = compare(here, verdicts(other.run(detect)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = args.cpu.lower()
    (out / f"{slug}.json").write_text(json.dumps({"cpus": cpus, "emulated_model": args.cpu, "data": args.data,
                                                  "rows": [asdict(r) for r in rows]}, indent=1))
    md = markdown(rows, cpus, args.cpu, time.perf_counter() - t0)
    (out / f"{slug}.md").write_text(md)
    plot(rows, out / f"{slug}.png", args.cpu)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
