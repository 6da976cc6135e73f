#!/usr/bin/env bash
# bench/hetegen_device.py on a GPU machine, from any folder: JSON to $OUT (else the current
# folder), log beside it. Extra arguments pass through (e.g. --layers 8 --gpu-budget-gib 4).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$PWD}"
cd "$repo"
"${PYTHON:-python3}" bench/hetegen_device.py --out "$out/hetegen_device.json" "$@" \
  2>&1 | tee "$out/hetegen_device.log"
