#!/usr/bin/env bash
# Stage what scripts/gpu_check.sh needs on a GPU machine with no network, in the ignored folder
# data/gpu (about 32 MB, under the 64 MiB a loan carries): Fashion-MNIST's idx files as .gz
# (kdcal.data decompresses them there) and the wheels of netcal, pyro-ppl and pyro-api, which
# the machine's python3 (3.12) lacks. Then carry data/gpu with the run.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${FMNIST_GZ:-/usr/share/datasets/fashion-mnist}
mkdir -p data/gpu/FashionMNIST/raw data/gpu/wheels
cp "$SRC"/*-ubyte.gz data/gpu/FashionMNIST/raw/
PIP=${PIP:-python3 -m pip}
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform any -d data/gpu/wheels \
  netcal==1.4.0 pyro-ppl==1.9.2 pyro-api==0.1.2
du -sh data/gpu
