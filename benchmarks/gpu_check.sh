#!/usr/bin/env bash
# The prepared GPU check (see benchmarks/gpu_check.py): one line per check, logs under $OUT (or ./gpu_check).
# Run from anywhere on a CUDA machine after `pip install -e ".[test,bench]"` with a CUDA build of torch; without
# CUDA it says so in one line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m benchmarks.gpu_check "$@"
