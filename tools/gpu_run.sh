#!/usr/bin/env bash
# On a lent GPU machine (no network), from the repository root, with `.whl` and `.gpu`
# carried over (`make gpu-prep` writes both here):
#   bash tools/gpu_run.sh [check|bench|all]
# installs the carried wheels into .site, then runs tools/gpu_check.py and/or
# benchmarks/gpu_throughput.py; the logs and result files go to $OUT (or .gpu/out).
set -uo pipefail
what=${1:-all}
out=${OUT:-.gpu/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target .site .whl/*.whl 2>&1 | tail -2
export PYTHONPATH=$PWD/.site:$PWD/src
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
rc=0
if [ "$what" = check ] || [ "$what" = all ]; then
  python3 tools/gpu_check.py --data .gpu/check --device cuda 2>&1 | tee "$out/gpu_check.log"
  rc=${PIPESTATUS[0]}
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  python3 benchmarks/gpu_throughput.py --data .gpu/bench 2>&1 | tee "$out/gpu_throughput.log"
  cp benchmarks/results/gpu_throughput.* "$out/" 2>/dev/null
fi
exit "$rc"
