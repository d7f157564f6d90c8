#!/usr/bin/env bash
# The one command to run the moment a GPU is available: every GPU test, then the sampling,
# training and tokenizer benchmarks, all into one JSON file (default gpu_check.json).
# Fits in 8 minutes on one H100; prints one line and exits 0 where there is no GPU.
#   scripts/gpu_check.sh [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m nbp bench gpu-check --out "${1:-gpu_check.json}"
