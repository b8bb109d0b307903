#!/bin/bash
# Fills the git-ignored wheel folders that bench/gpu.sh installs on the GPU machine, which has no
# network and Python 3.12: .whl/ (fla-core 0.6.0, the anchor, pure Python) and .whl-ncd/ (what
# the compiler suite imports beyond torch: pydantic and its core for CPython 3.12 on x86_64,
# graphviz). Run once here, then carry both folders with the call (the device tool's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/pip}
mkdir -p .whl .whl-ncd
$PIP download -q --no-deps -d .whl fla-core==0.6.0
pins=$($PIP freeze | grep -iE '^(pydantic|pydantic[-_]core|annotated[-_]types|typing[-_]extensions|typing[-_]inspection|graphviz)==')
# shellcheck disable=SC2086
$PIP download -q --no-deps -d .whl-ncd --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 $pins
ls .whl .whl-ncd
