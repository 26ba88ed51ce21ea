#!/usr/bin/env bash
# One prepared GPU check for a ~10-minute loan, at most 8 minutes of work: the throughput
# benchmark (JSON rows), then a real study slice on full Fashion-MNIST (scripts/gpu_slice.py).
# What it writes under $OUT (6 files, no folders): gpu.txt, bench.json, results.csv, claims.csv,
# timing.json, log.txt. Commit the numbers in BENCHMARKS.md and the slice's tables.
#
#   OUT=/tmp/out scripts/gpu_check.sh                      # on the GPU machine (python3, cuda)
#   GPU_CHECK_SMALL=1 GPU_CHECK_DEVICE=cpu PY=.venv/bin/python OUT=/tmp/out scripts/gpu_check.sh
#
# Inputs carried with the repo (staged by scripts/gpu_prep.sh): data/gpu/FashionMNIST/raw/*.gz
# (read as $KDCAL_DATA) and data/gpu/wheels/*.whl (netcal and its two missing dependencies,
# installed into /tmp/site when present).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-outputs/gpu-check}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SMALL=${GPU_CHECK_SMALL:-0}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
if [ -z "${KDCAL_DATA:-}" ] && ls data/gpu/FashionMNIST/raw/*.gz >/dev/null 2>&1; then
  # decompressed outside the repo, so that data/gpu stays small enough to carry
  export KDCAL_DATA=$(mktemp -d) && mkdir -p "$KDCAL_DATA/FashionMNIST/raw" &&
    cp data/gpu/FashionMNIST/raw/*.gz "$KDCAL_DATA/FashionMNIST/raw/"
fi
exec > >(tee "$OUT/log.txt") 2>&1
start=$(date +%s)
if ls data/gpu/wheels/*.whl >/dev/null 2>&1 && ! $PY -c "import netcal" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site data/gpu/wheels/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
  $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$OUT/gpu.txt"
if [ "$SMALL" = 1 ]; then
  bench_args=(--steps 1 --quick-only --workers 0 --peak-seconds 0.05); slice_args=(--small)
  bench_limit=300; slice_limit=300
else
  bench_args=(--steps 40 --workers 4); slice_args=()
  bench_limit=170; slice_limit=270
fi
echo "== bench (limit ${bench_limit}s)"
timeout "$bench_limit" $PY -m kdcal.bench --device "$DEVICE" "${bench_args[@]}" --json "$OUT/bench.json"
echo "bench exit $?, $(( $(date +%s) - start )) s so far"
echo "== study slice (limit ${slice_limit}s)"
slice=$(mktemp -d)
timeout "$slice_limit" $PY scripts/gpu_slice.py "$slice" --device "$DEVICE" "${slice_args[@]}" "$@"
rc=$?
cp "$slice"/results.csv "$slice"/claims.csv "$slice"/timing.json "$OUT"/ 2>/dev/null
echo "slice exit $rc; gpu_check: $(( $(date +%s) - start )) s wall"
exit $rc
