#!/usr/bin/env bash
# Regenerate the committed sample benchmark report on this machine (default benchmarks/reports/cpu/; pass another
# folder per CPU kind, e.g. benchmarks/reports/cpu-amd-epyc-avx2):
# the embedded default bundle plus a tiny Gemma3 semantic branch, on 200 shared images, with a budget sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(mktemp -d)/bundle
cp -r sdk/default_bundle "$B"
.venv/bin/python - "$B" <<'PY'
import sys, tempfile
from pathlib import Path
from aligngemini_sdk.export.tiny import build_tiny_gemma3
from aligngemini_sdk.export.vlm import VlmExportConfig, export_vlm
hf = build_tiny_gemma3(Path(tempfile.mkdtemp()) / "tiny-gemma3")
export_vlm(VlmExportConfig(hf=hf, out=Path(sys.argv[1]), quants=("Q4_K_M", "Q8_0"), n_ctx=512))
PY
.venv/bin/aligngemini bench "$B" --data ../shared/data/images --exclude-sources cifake --max-images 200 --runs 100 \
  --budget-ms 5,20,100,1000 --out "${1:-benchmarks/reports/cpu}"
