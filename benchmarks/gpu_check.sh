#!/usr/bin/env bash
# The GPU check, one prepared script for a bare CUDA machine (about 7 minutes): the device,
# the CUDA tests, then benchmarks/gpu_check.py (bf16 record-model training, throughput against
# the device's GEMM roofline, minutes to 84.78 nats). It uses the machine's own python3 and
# PyTorch with vaekit from src/, and reads MNIST from DATA (default .gpu-data, holding
# mnist/*.gz: copy ../shared/datasets/mnist there and carry the folder). Results go to OUTDIR.
#
#   bash benchmarks/gpu_check.sh [OUTDIR] [DATA]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-check}}
data=${2:-.gpu-data}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))' \
    | tee -a "$out/device.txt"
# The CUDA tests: every test that asks for a CUDA device, plus the training engine's.
timeout 150 python3 -m pytest -q -p no:cacheprovider -x -k "cuda or device" \
    tests/test_data_batching.py tests/test_train_engine.py 2>&1 | tail -n 15 | tee "$out/tests.txt" || true
timeout 360 python3 benchmarks/gpu_check.py --minutes 3 --shared "$data" --out "$out" \
    2>&1 | tee "$out/gpu-check.log"
