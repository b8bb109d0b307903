#!/bin/bash
# Runs bench/ops_gpu.py on the lent GPU machine: fla-core from the carried wheel in .whl/,
# ncd.ops through a shim package (no install of ncd). Usage: bash bench/gpu_run.sh [args]
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/shim/ncd && touch /tmp/shim/ncd/__init__.py && ln -sfn "$PWD/ops" /tmp/shim/ncd/ops
export PYTHONPATH=/tmp/shim:/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,memory.used --format=csv,noheader
python3 "${SCRIPT:-bench/ops_gpu.py}" "$@" 2>&1 | tee "${OUT:-/tmp}/log.txt"
