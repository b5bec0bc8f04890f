#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): npsenet's CuPy path on a GPU machine in under
# 8 minutes, from this checkout, with the Python, CuPy and PyTorch found there.
#
#   bash benchmarks/gpu_check.sh               # writes report.md and the logs to $OUT (else runs/gpu_check/)
#   bash benchmarks/gpu_check.sh --dry-run     # no GPU needed: the commands, and CPU stand-ins
#   PYTHON=python3.12 bash benchmarks/gpu_check.sh --only bench-train,epoch
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
