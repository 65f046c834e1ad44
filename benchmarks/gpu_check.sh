#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): CUDA tests, LoRA training tokens/s and MFU in bf16,
# generation items/s and a 2-cell Ray sweep, into one JSON file. At most ~5 minutes on one GPU.
# Without CUDA it writes {"cuda": false} and exits 0.
#
#   bash benchmarks/gpu_check.sh [OUT.json]        # default benchmarks/results/gpu_check.json
#
# Python: the repo's .venv when there is one, else the machine's python3 with the repo on
# PYTHONPATH. Wheels in .whl/ (packages the machine lacks, e.g. trl, datasets) are installed
# into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/gpu_check.json}"
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$(dirname "$out")"
exec timeout 300 "$py" benchmarks/gpu_check.py --out "$out" "${@:2}"
