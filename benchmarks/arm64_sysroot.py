"""An emulated 64-bit ARM machine to run the SDK on: an aarch64 Python 3.11 with numpy, OpenCV, ONNX Runtime and
onnx at this venv's versions, run by qemu-user (``qemu-aarch64 -cpu neoverse-n1``: ARMv8.2 with the dot-product
instructions phones and ARM servers have).

    .venv/bin/python benchmarks/arm64_sysroot.py      # builds it once, prints how to run a command there

Built under the SDK's cache (``emulators/arm64/``), nothing installed on the host: Debian's arm64 packages of Python
3.11 and the C libraries it loads, fetched with ``apt-get download`` and unpacked with ``dpkg -x`` (the host needs
``dpkg --add-architecture arm64`` and an ``apt-get update`` once, as root; this script does both when run as root),
then the aarch64 wheels with ``pip install --platform``. The SDK itself comes from this checkout (pure Python; the
x86 JPEG shim does not load there, so JPEGs take OpenCV's decode, whose pixels the shim matches byte for byte).

One trap, handled here: qemu-user shows the guest the host's ``/proc/cpuinfo`` (x86), where ONNX Runtime's cpuinfo
finds no ARM core and crashes at import. qemu's ``-L`` prefix serves a file from the sysroot when one exists there,
so a two-core Neoverse-N1 ``/proc/cpuinfo`` and ``/sys`` CPU lists are placed in the sysroot.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from aligngemini_sdk.cache import default_cache_dir

CPU = "neoverse-n1"
PYTHON = "usr/bin/python3.11"
#: Debian bookworm arm64 packages: Python 3.11 and the shared libraries it and the wheels load
PACKAGES = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libexpat1", "zlib1g",
            "libssl3", "libffi8", "libstdc++6", "libgcc-s1", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libuuid1",
            "libncursesw6", "libtinfo6", "libreadline8", "libgomp1", "libdb5.3", "libgdbm6", "libnsl2", "libtirpc3",
            "libcrypt1")
#: the wheels the SDK's device side (and the kernel probe) import, at this venv's versions
WHEELS = ("numpy", "opencv-python-headless", "onnxruntime", "onnx")
CORE = """processor\t: {n}
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

"""


def root() -> Path:
    return default_cache_dir() / "emulators" / "arm64"


def _sh(*cmd: str, cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{(r.stderr or r.stdout)[-1500:]}")


def _arm64_packages_available() -> None:
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split()
    if "arm64" in foreign:
        return
    if os.geteuid() != 0:
        raise SystemExit("run once as root: dpkg --add-architecture arm64 && apt-get update")
    _sh("dpkg", "--add-architecture", "arm64")
    _sh("apt-get", "update", "-qq")


def _unpack_python(sysroot: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="ag-arm64-") as tmp:
        _sh("apt-get", "download", "-qq", *(f"{p}:arm64" for p in PACKAGES), cwd=Path(tmp))
        for deb in sorted(Path(tmp).glob("*.deb")):
            _sh("dpkg", "-x", str(deb), str(sysroot))


def _fake_cpu(sysroot: Path, cores: int = 2) -> None:
    (sysroot / "proc").mkdir(exist_ok=True)
    (sysroot / "proc" / "cpuinfo").write_text("".join(CORE.format(n=n) for n in range(cores)))
    cpus = sysroot / "sys" / "devices" / "system" / "cpu"
    cpus.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (cpus / name).write_text(f"0-{cores - 1}\n")


def _wheels(sysroot: Path) -> None:
    pins = [f"{w}=={importlib.metadata.version(w)}" for w in WHEELS]
    _sh(sys.executable, "-m", "pip", "install", "-q", "--target", str(sysroot / "site"), "--python-version", "3.11",
        "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:", "--platform", "manylinux2014_aarch64",
        "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux_2_28_aarch64", *pins)


def sysroot() -> Path:
    """The sysroot, built on first use (a few minutes: ~25 packages and ~80 MB of wheels)."""
    done = root() / ".complete"
    if done.is_file():
        return root()
    if shutil.which("qemu-aarch64") is None:
        raise SystemExit("qemu-aarch64 not found (apt-get install qemu-user)")
    _arm64_packages_available()
    shutil.rmtree(root(), ignore_errors=True)
    root().mkdir(parents=True)
    _unpack_python(root())
    _fake_cpu(root())
    _wheels(root())
    done.write_text("\n".join(f"{w} {importlib.metadata.version(w)}" for w in WHEELS) + "\n")
    return root()


def python_command(cpu: str = CPU) -> tuple[list[str], dict[str, str]]:
    """(argv prefix that runs the aarch64 Python, environment) for a command on the emulated ARM CPU."""
    base = sysroot()
    spec = importlib.util.find_spec("aligngemini_sdk")
    assert spec is not None and spec.origin is not None
    package_parent = str(Path(spec.origin).parent.parent)  # this checkout, as the venv imports it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(base / "site"), package_parent])}
    qemu = shutil.which("qemu-aarch64")
    assert qemu is not None
    return [qemu, "-cpu", cpu, "-L", str(base), str(base / PYTHON)], env


if __name__ == "__main__":
    argv, env = python_command()
    print(f"PYTHONPATH={env['PYTHONPATH']} {' '.join(argv)} -c 'import platform; print(platform.machine())'")
    r = subprocess.run([*argv, "-c", "import platform, onnxruntime; print(platform.machine(), onnxruntime.__version__)"],
                       env=env, capture_output=True, text=True)
    print(r.stdout.strip() or r.stderr[-500:])
