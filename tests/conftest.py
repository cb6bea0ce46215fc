"""Shared fixtures: real bundles built once per test session from real weights and real images.

- ``ladeda_bundle``: the real pretrained Tiny-LaDeDa (../shared/data/weights) exported through the product's
  pixel export path (FP32 ONNX), run by real onnxruntime sessions.
- ``two_branch_bundle``: that pixel branch plus a tiny random-weight Gemma3 VLM converted by llama.cpp's own
  converter, quantized to Q4_K_M, with an f16 mmproj: both branches run for real.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALIGNGEMINI_SHARED_DATA", ROOT.parent / "shared" / "data"))
LADEDA = SHARED / "weights" / "tiny_ladeda" / "WildRF_Tiny_LaDeDa.pth"
KODAK = SHARED / "images" / "real" / "kodak24"
SD_FAKES = SHARED / "images" / "fake" / "sd_family"
CNN_REAL = SHARED / "images" / "real" / "cnndetection"
CNN_FAKE = SHARED / "images" / "fake" / "cnndetection"


HAVE_SHARED = (SHARED / "images.csv").is_file()
MISSING = f"shared data not found at {SHARED} (set ALIGNGEMINI_SHARED_DATA)"


#: An x86-64 CPU with AVX2 and FMA but no AVX-512 and no VNNI (many AMD CPUs, older Intel): qemu-user's TCG emulates
#: its CPUID and instructions, so ONNX Runtime's dispatch picks the kernels such a machine would run (the pair-
#: saturating VPMADDUBSW u8 x s8 path among them) on whatever x86-64 CPU runs the tests. setup.sh installs qemu-user
#: (apt, as root); .ci/run sets ALIGNGEMINI_REQUIRE_EMULATED_CPU=1 so CI cannot pass by skipping.
EMULATED_AVX2_CPU = "Haswell"


def _qemu_with_avx2() -> str | None:
    """qemu-x86_64 if installed and new enough to emulate AVX2 (TCG gained it in QEMU 7.2)."""
    qemu = shutil.which("qemu-x86_64") if platform.machine() == "x86_64" else None
    if qemu is None:
        return None
    found = re.search(r"version (\d+)\.(\d+)", subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout)
    return qemu if found and (int(found[1]), int(found[2])) >= (7, 2) else None


QEMU = _qemu_with_avx2()
needs_emulated_avx2 = pytest.mark.skipif(
    QEMU is None and os.environ.get("ALIGNGEMINI_REQUIRE_EMULATED_CPU") != "1",
    reason="qemu-user >= 7.2 (qemu-x86_64) not installed: no emulated AVX2-only CPU (setup.sh installs it)")


def on_emulated_avx2(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args`` on the emulated AVX2-only CPU; fails (not skips) if it exits non-zero."""
    return on_emulated_x86(EMULATED_AVX2_CPU, *args, timeout=timeout)


#: an x86-64 CPU without AVX (SSE4.2 and POPCNT: numpy's baseline), for code that picks its loops by CPU feature
EMULATED_BASELINE_CPU = "Nehalem"


def on_emulated_x86(cpu: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args`` on qemu-user's model of ``cpu``; fails (not skips) if it exits non-zero."""
    assert QEMU, "qemu-x86_64 >= 7.2 is required here (ALIGNGEMINI_REQUIRE_EMULATED_CPU=1): install qemu-user"
    r = subprocess.run([QEMU, "-cpu", cpu, sys.executable, *args], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, f"exit {r.returncode} on the emulated {cpu}:\n{r.stdout}\n{r.stderr}"
    return r

def _arm64_sysroot() -> Any:
    """benchmarks/arm64_sysroot.py (setup.sh builds its sysroot): an aarch64 Python under qemu-aarch64."""
    spec = importlib.util.spec_from_file_location("arm64_sysroot", ROOT / "benchmarks" / "arm64_sysroot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ARM64 = _arm64_sysroot()
needs_emulated_arm64 = pytest.mark.skipif(
    not (ARM64.root() / ".complete").is_file() and os.environ.get("ALIGNGEMINI_REQUIRE_EMULATED_CPU") != "1",
    reason="no emulated ARM CPU: the aarch64 sysroot is not built (setup.sh builds it with qemu-user as root)")


def on_emulated_arm64(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run an aarch64 Python with ``args`` on an emulated Neoverse-N1 (ARMv8.2 + dot product) with this checkout's
    SDK; fails (not skips) if it exits non-zero."""
    argv, env = ARM64.python_command()
    r = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    assert r.returncode == 0, f"exit {r.returncode} on the emulated {ARM64.CPU}:\n{r.stdout}\n{r.stderr}"
    return r


def pytest_sessionstart(session: pytest.Session) -> None:
    # CI must not pass by skipping: .ci/run sets ALIGNGEMINI_REQUIRE_SHARED_DATA=1
    if not HAVE_SHARED and os.environ.get("ALIGNGEMINI_REQUIRE_SHARED_DATA") == "1":
        raise pytest.UsageError(MISSING)


def pytest_report_header(config: pytest.Config) -> str:
    return f"shared data: {SHARED}" if HAVE_SHARED else f"{MISSING}: tests marked shared_data are skipped"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ../shared/data, tests that read it are skipped with the reason; pure unit tests still run."""
    if HAVE_SHARED:
        return
    skip = pytest.mark.skip(reason=MISSING)
    for item in items:
        if item.get_closest_marker("shared_data"):
            item.add_marker(skip)


def real_images(n: int = 4) -> list[Path]:
    return sorted(KODAK.glob("*.png"))[:n]


def fake_images(n: int = 4) -> list[Path]:
    return sorted(SD_FAKES.glob("*.jpg"))[:n]


def small_collection(root: Path, n: int = 12) -> Path:
    """A labelled folder (real/<src>, fake/<src>) of symlinks to shared images."""
    for label, srcs in (("real", [CNN_REAL, KODAK]), ("fake", [CNN_FAKE, SD_FAKES])):
        for src in srcs:
            d = root / label / src.name
            d.mkdir(parents=True, exist_ok=True)
            for p in sorted(src.iterdir())[: n // 2]:
                (d / p.name).symlink_to(p)
    return root


@pytest.fixture(scope="session")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_collection(tmp_path_factory.mktemp("collection"))


@pytest.fixture(scope="session")
def ladeda_bundle(tmp_path_factory: pytest.TempPathFactory, collection: Path) -> Path:
    from aligngemini_sdk.export.pixel import PixelExportConfig, export_pixel

    out = tmp_path_factory.mktemp("bundles") / "ladeda"
    export_pixel(PixelExportConfig(arch="ladeda", weights=str(LADEDA), out=out, precisions=("fp32",),
                                   val=str(collection), name="test ladeda"))
    return out


@pytest.fixture(scope="session")
def int8_bundle(tmp_path_factory: pytest.TempPathFactory, collection: Path) -> Path:
    """The real LaDeDa as a static-INT8 artifact taking the quantized uint8 NHWC input (the gate loosened: this
    fixture is about the artifact's form, not its accuracy)."""
    from aligngemini_sdk.export.pixel import GateThresholds, PixelExportConfig, export_pixel

    out = tmp_path_factory.mktemp("bundles") / "ladeda-int8"
    export_pixel(PixelExportConfig(arch="ladeda", weights=str(LADEDA), out=out, calib=str(collection),
                                   val=str(collection), allow_small_calib=True, precisions=("int8",), fallback_rounds=0,
                                   int8_scheme="static", gate=GateThresholds(min_agreement=0.5, max_bacc_drop=1.0),
                                   name="test ladeda int8"))
    return out


@pytest.fixture(scope="session")
def tiny_gemma3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from aligngemini_sdk.export.tiny import build_tiny_gemma3

    return build_tiny_gemma3(tmp_path_factory.mktemp("hf") / "tiny-gemma3")


@pytest.fixture(scope="session")
def two_branch_bundle(tmp_path_factory: pytest.TempPathFactory, ladeda_bundle: Path, tiny_gemma3: Path) -> Path:
    pytest.importorskip("llama_cpp", reason="needs the [gguf] extra (llama-cpp-python)")
    from aligngemini_sdk.export.vlm import VlmExportConfig, export_vlm

    out = tmp_path_factory.mktemp("bundles") / "two-branch"
    shutil.copytree(ladeda_bundle, out, dirs_exist_ok=True)
    export_vlm(VlmExportConfig(hf=tiny_gemma3, out=out, quants=("Q4_K_M",), mmproj_type="f16",
                               parity_images=real_images(2) + fake_images(2), n_ctx=512))
    return out


@pytest.fixture()
def bundle_copy(tmp_path: Path, ladeda_bundle: Path) -> Path:
    """A private copy of the LaDeDa bundle that a test may tamper with."""
    dst = tmp_path / "bundle"
    shutil.copytree(ladeda_bundle, dst)
    return dst
