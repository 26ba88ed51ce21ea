#!/usr/bin/env bash
# One prepared GPU check (a few minutes on one CUDA card): the throughput benchmark, then a short
# slice of paper-cifar100 on synthetic CIFAR-100-shaped data (3x32x32, 100 classes) through the
# real pipeline. Record the printed numbers and the card's name in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -m kdcal.bench --device cuda --steps 100
start=$(date +%s)
$PY -m kdcal run --profile paper-cifar100 --out "${OUT:-outputs}/gpu-slice" \
  --set dataset=synthetic --set synthetic_channels=3 --set synthetic_classes=100 \
  --set synthetic_size=32 --set synthetic_train=20000 --set synthetic_test=5000 --set val_size=5000 \
  --set teachers=resnet20,resnet56,resnet110 --set student=resnet8 --set seeds=0,1 \
  --set teacher_epochs=3 --set student_epochs=3 --set 'milestones=[]' --set 'student_milestones=[]'
echo "paper-cifar100 slice: $(( $(date +%s) - start )) s wall"
