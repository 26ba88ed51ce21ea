#!/usr/bin/env bash
# Seeds of the gpu-evidence profile through the notebooks, on one GPU machine with no network:
# `kdcal run --profile gpu-evidence --set seeds=[S]` (papermill, notebooks 01-04, bundle, report)
# for as many seeds as fit in the budget, one study folder per run. What it leaves under $OUT
# (files only, at most 8, each under 16 MiB, as a loan returns them):
#   gpu-evidence-s<S>.tar.gz  the study folder of seed S without runs/ (bundle/, results.csv,
#                             the executed notebooks, report.html, figures, study.json, log.txt)
#   gpu-evidence.json         device, seeds done, seconds per run;  log.txt: this script's output
#   fill.json                 with --bench: `python -m kdcal.bench --fill` rows, run first
#
#   OUT=/tmp/out scripts/gpu_evidence.sh [--seeds "0 1 2"] [--budget 480] [--per-run 1] [--bench]
#                                        [--set K=V]
#   OUT=$(mktemp -d) PY=.venv/bin/python scripts/gpu_evidence.sh --dry-run     # here, on a CPU
#
# On the GPU machine: carry data/gpu (scripts/gpu_prep.sh). Its wheels are installed offline into
# /tmp/site when papermill, ipykernel, nbconvert or netcal is missing; Fashion-MNIST is staged
# from its idx files. A run starts only when the longest run so far still fits in what is left of
# the budget (the first always starts), and is stopped at the budget's end. --per-run N puts N
# seeds in one run (their teachers then train packed: pack_teachers=auto on CUDA); the default,
# one seed per run, gives one bundle per seed. --dry-run: the same steps on this machine's CPU,
# on a tiny synthetic study (seconds of training; the notebooks' start-up dominates).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PY:-python3}
OUT=${OUT:?set OUT to the folder that receives the results}
SEEDS="0"; BUDGET=480; PER_RUN=1; DRY=0; BENCH=0; SETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) SEEDS=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --per-run) PER_RUN=$2; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --bench) BENCH=1; shift ;;
    *) echo "gpu_evidence: unknown argument $1 (valid: --seeds, --budget, --per-run, --bench, --set, --dry-run)" >&2; exit 2 ;;
  esac
done
for n in "$BUDGET" "$PER_RUN"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_evidence: --budget and --per-run take a positive integer, got '$n'" >&2; exit 2; }
done
read -r -a SEED_LIST <<<"$SEEDS"
for s in "${SEED_LIST[@]}"; do
  [[ "$s" =~ ^[0-9]+$ ]] || { echo "gpu_evidence: --seeds takes non-negative integers, got '$s'" >&2; exit 2; }
done
[ ${#SEED_LIST[@]} -gt 0 ] || { echo "gpu_evidence: --seeds is empty" >&2; exit 2; }
if [ "$DRY" = 1 ]; then  # the gpu-evidence design on a CPU in seconds: not a result
  SETS=(--set device=cpu --set dataset=synthetic --set synthetic_train=360 --set synthetic_test=120
        --set synthetic_size=8 --set val_size=120 --set teachers=resnet8,resnet8x2
        --set teacher_epochs=1 --set student_epochs=1 --set batch_size=60
        --set student_batch_size=60 --set eval_batch_size=500 "${SETS[@]}")
fi
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
SCRATCH=$(mktemp -d)  # the study folders and the staged data, removed at the end
trap 'rm -rf "$SCRATCH"' EXIT
start=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

# 1. what the machine lacks, from the carried wheels (no network there)
if ! $PY -c "import papermill, ipykernel, nbconvert, netcal" 2>/dev/null; then
  if ! ls data/gpu/wheels/*.whl >/dev/null 2>&1; then
    echo "gpu_evidence: papermill, ipykernel, nbconvert or netcal is missing and data/gpu/wheels is empty: run scripts/gpu_prep.sh here and carry data/gpu" >&2
    exit 1
  fi
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site data/gpu/wheels/*.whl || exit 1
  # the kernel (python3 -m ipykernel_launcher) and nbconvert's templates come from there too
  export PYTHONPATH=$PYTHONPATH:/tmp/site JUPYTER_PATH=/tmp/site/share/jupyter PATH=/tmp/site/bin:$PATH
fi

# 2. Fashion-MNIST from the carried idx files, decompressed outside the carried tree
if [ -z "${KDCAL_DATA:-}" ] && ls data/gpu/FashionMNIST/raw/*.gz >/dev/null 2>&1; then
  KDCAL_DATA=$SCRATCH/data && mkdir -p "$KDCAL_DATA/FashionMNIST/raw" &&
    cp data/gpu/FashionMNIST/raw/*.gz "$KDCAL_DATA/FashionMNIST/raw/" && export KDCAL_DATA
fi

$PY - <<'PY' | tee "$OUT/device.txt"
import sys, torch
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {name}")
PY
device=$(cat "$OUT/device.txt"); rm -f "$OUT/device.txt"

# 3. optionally, how full the engine keeps the device (its time counts in the budget)
if [ "$BENCH" = 1 ]; then
  bench_args=(--fill --json "$OUT/fill.json"); [ "$DRY" = 1 ] && bench_args+=(--quick --device cpu)
  echo "== bench: python -m kdcal.bench ${bench_args[*]}"
  timeout 150 $PY -m kdcal.bench "${bench_args[@]}" || echo "== bench exited $?; the seeds follow"
fi

# 4. the seeds, run by run, while the longest run so far fits in what is left
WORK=$SCRATCH/studies
longest=0; done_seeds=(); runs_json=()
i=0
while [ $i -lt ${#SEED_LIST[@]} ]; do
  group=("${SEED_LIST[@]:$i:$PER_RUN}"); i=$(( i + PER_RUN ))
  tag=$(IFS=-; echo "${group[*]}")
  left=$(( BUDGET - ($(date +%s) - start) ))
  if [ ${#done_seeds[@]} -gt 0 ] && [ "$longest" -ge "$left" ]; then
    echo "== seeds $tag: not started (${left} s left, the longest run took ${longest} s)"
    break
  fi
  [ "$left" -gt 0 ] || { echo "== seeds $tag: not started (budget spent)"; break; }
  folder=$WORK/gpu-evidence-s$tag
  echo "== seeds $tag: kdcal run --profile gpu-evidence (limit ${left} s) -> $folder"
  t0=$(date +%s)
  timeout --kill-after=15 "$left" $PY -m kdcal run --profile gpu-evidence \
    --set "seeds=[$(IFS=,; echo "${group[*]}")]" "${SETS[@]}" --out "$folder"
  rc=$?; seconds=$(( $(date +%s) - t0 )); [ "$seconds" -gt "$longest" ] && longest=$seconds
  runs_json+=("{\"seeds\": [$(IFS=,; echo "${group[*]}")], \"seconds\": $seconds, \"exit\": $rc}")
  if [ $rc -ne 0 ]; then
    echo "== seeds $tag: kdcal run exited $rc after ${seconds} s (124 or 137: stopped at the budget); no bundle"
    break
  fi
  tar -czf "$OUT/gpu-evidence-s$tag.tar.gz" -C "$folder" --exclude=./runs --exclude=./.lock .
  size=$(stat -c %s "$OUT/gpu-evidence-s$tag.tar.gz")
  echo "== seeds $tag: done in ${seconds} s; gpu-evidence-s$tag.tar.gz $(( size / 1024 )) KiB"
  [ "$size" -lt $(( 16 * 1048576 )) ] || echo "gpu_evidence: WARNING gpu-evidence-s$tag.tar.gz is over the 16 MiB a loan returns"
  done_seeds+=("${group[@]}")
done
$PY - "$OUT/gpu-evidence.json" "$device" "$(IFS=,; echo "${done_seeds[*]}")" "$(IFS=,; echo "${runs_json[*]}")" "$DRY" <<'PY'
import json, sys
path, device, seeds, runs, dry = sys.argv[1:]
json.dump({"device": device, "dry_run": dry == "1", "seeds_done": json.loads(f"[{seeds}]"),
           "runs": json.loads(f"[{runs}]")}, open(path, "w"), indent=1)
PY
echo "gpu_evidence: seeds done [${done_seeds[*]}] in $(( $(date +%s) - start )) s"
[ ${#done_seeds[@]} -gt 0 ]
