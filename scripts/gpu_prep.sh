#!/usr/bin/env bash
# Stage what a GPU machine with no network needs (scripts/gpu_check.sh, scripts/gpu_evidence.sh)
# in the ignored folder data/gpu, to carry with the run (carry=["data/gpu"]):
#   data/gpu/FashionMNIST/raw/*.gz  Fashion-MNIST's idx files (kdcal.data decompresses them there)
#   data/gpu/wheels/*.whl           what the machine's Python 3.12 lacks to run `kdcal run`
#                                   (papermill, Jupyter's kernel packages, nbconvert, netcal:
#                                   scripts/gpu_wheels.txt), for cp312 manylinux x86_64
# kdcal itself is not a wheel: it runs from the carried tree (its notebooks are found beside the
# package), with PYTHONPATH at the repo. Ends with the sizes: what travels must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${FMNIST_GZ:-/usr/share/datasets/fashion-mnist}
# the wheels afresh: one version of each, since a second one stops the offline install
rm -rf data/gpu/wheels
mkdir -p data/gpu/FashionMNIST/raw data/gpu/wheels
cp "$SRC"/*-ubyte.gz data/gpu/FashionMNIST/raw/
PIP=${PIP:-python3 -m pip}
mapfile -t WHEELS < <(grep -v '^#' scripts/gpu_wheels.txt | grep .)
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  --platform any -d data/gpu/wheels "${WHEELS[@]}"
mib() { echo $(( ($1 + 1048575) / 1048576 )); }
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
data=$(du -sb data/gpu/FashionMNIST | cut -f1)
wheels=$(du -sb data/gpu/wheels | cut -f1)
total=$(( tree + data + wheels ))
echo "travels: tree $(mib "$tree") MiB + Fashion-MNIST $(mib "$data") MiB + $(ls data/gpu/wheels | wc -l) wheels $(mib "$wheels") MiB = $(mib "$total") MiB (limit 64)"
[ "$total" -le $(( 64 * 1048576 )) ] || { echo "gpu_prep: over the 64 MiB a loan carries" >&2; exit 1; }
