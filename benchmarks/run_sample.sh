#!/usr/bin/env bash
# Regenerate the sample benchmark report of the embedded default on this machine:
#   bash benchmarks/run_sample.sh [OUT]   (default: benchmarks/reports/sample_bench/<cpu>-<kind>/)
# Both ONNX branches of the default as shipped, 200 shared images (images.csv without CIFAKE), 100 timed runs per
# artifact, the fused pipeline under a budget sweep and the SDK overhead. Those images are training images of the
# default's recipe: the accuracy columns are in-sample and say nothing about the wild (README's in-the-wild section
# and benchmarks/reports/wild_default/ do); read this report for latency, budgets and overhead on the CPU it names.
set -euo pipefail
cd "$(dirname "$0")/.."
STEM=$(.venv/bin/python -c "from aligngemini_sdk.device import report_stem; print(report_stem())")
.venv/bin/aligngemini bench --data ../shared/data/images --exclude-sources cifake --max-images 200 --runs 100 \
  --budget-ms 5,10,15,50 --out "${1:-benchmarks/reports/sample_bench/$STEM}"
