#!/usr/bin/env bash
# Set up a development/export environment in .venv: the SDK (editable) with every extra except
# [tensorrt] (TensorRT cannot be installed from the package registries this project can reach).
#
# llama-cpp-python has no prebuilt wheel here: it is compiled once (6-12 min on 2 cores) into
# $ALIGNGEMINI_CACHE_DIR/wheels and reused afterwards. Its sdist is kept too: llama.cpp's HF->GGUF converter
# ships only inside it (the VLM exporter reads it from there; ALIGNGEMINI_LLAMA_SDIST points at it).
set -euo pipefail
cd "$(dirname "$0")"
CACHE="${ALIGNGEMINI_CACHE_DIR:-$HOME/.cache/aligngemini}"
LLAMA_VERSION="0.3.36"
PY="${PYTHON:-python3}"

# libjpeg-turbo's headers: the JPEG fast path's C shim is built against them (without them the install still
# succeeds and JPEGs take OpenCV's full decode)
if [ ! -f /usr/include/jpeglib.h ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing libjpeg-dev (apt) for the JPEG region decoder" >&2
    apt-get install -y -q libjpeg-dev >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libjpeg-dev >/dev/null; }
  else
    echo "[setup] libjpeg-turbo headers missing and not root: JPEGs will take OpenCV's full decode" >&2
  fi
fi

# qemu-user: the tests run ONNX Runtime on an emulated AVX2-only CPU (no AVX-512, no VNNI) to check that INT8 answers
# do not depend on the CPU (tests/conftest.py: needs_emulated_avx2); without it those tests are skipped
if [ "$(uname -m)" = "x86_64" ] && ! command -v qemu-x86_64 >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing qemu-user (apt) for the emulated-CPU tests" >&2
    apt-get install -y -q qemu-user >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q qemu-user >/dev/null; }
  else
    echo "[setup] qemu-user missing and not root: the emulated AVX2-CPU tests will be skipped" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPIP=".venv/bin/python -m pip"
$VPIP install -q --upgrade pip setuptools wheel
# torch first, pinned, so no dependency pulls a CUDA build (this machine serves a local CPU wheel for 2.13.0)
$VPIP install -q "torch==2.13.0"

mkdir -p "$CACHE/wheels" "$CACHE/sdist"
SDIST="$CACHE/sdist/llama_cpp_python-$LLAMA_VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  echo "[setup] downloading the llama-cpp-python $LLAMA_VERSION sdist" >&2
  $VPIP download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$CACHE/sdist"
fi
# A portable build: x86-64 with AVX2/FMA/F16C (every CPU this project targets), not -march=native. Native builds on
# Sapphire Rapids-class CPUs compile ggml's AMX kernels, which segfault in ggml_backend_amx_mul_mat on Q4_K_M models
# (seen here on a 2-core Xeon with AMX: the tiny Gemma3's parity gate crashed; llama.cpp#20824), and a native wheel
# cached on one CPU would die with SIGILL on another. ARM builds keep llama.cpp's defaults.
WHEELS="$CACHE/wheels/portable"
LLAMA_CMAKE_ARGS=""
if [ "$(uname -m)" = "x86_64" ]; then
  LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
fi
WHEEL=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$WHEEL" ]; then
  echo "[setup] compiling llama-cpp-python $LLAMA_VERSION (once; about 6-12 minutes on 2 cores)" >&2
  mkdir -p "$WHEELS"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" $VPIP wheel -q --no-deps -w "$WHEELS" "$SDIST"
  WHEEL=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n1)
fi
$VPIP install -q "$WHEEL"
# strict editable mode: a link tree under build/ that type checkers and IDEs resolve (aligngemini_sdk -> sdk/,
# .runtimes -> runtimes/, .export -> export/); re-run setup.sh after adding a module
$VPIP install -q -e ".[all]" --config-settings editable_mode=strict
mkdir -p .venv/etc
echo "$SDIST" > .venv/etc/llama_cpp_sdist
# An emulated 64-bit ARM CPU: qemu-aarch64 running an aarch64 Python with this venv's numpy / OpenCV / ONNX Runtime
# versions, built once under the SDK's cache (benchmarks/arm64_sysroot.py; root is needed once, for
# `dpkg --add-architecture arm64`). The tests check there that the bundles answer as they do here
# (tests/conftest.py: needs_emulated_arm64); without it those tests are skipped
if [ "$(uname -m)" = "x86_64" ] && command -v qemu-aarch64 >/dev/null; then
  .venv/bin/python benchmarks/arm64_sysroot.py >/dev/null 2>&1 \
    || echo "[setup] could not build the emulated ARM sysroot (run benchmarks/arm64_sysroot.py to see why)" >&2
fi
echo "[setup] ready: $(.venv/bin/aligngemini --help | head -n1)" >&2
