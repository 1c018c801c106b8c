#!/usr/bin/env bash
# Every GPU measurement of issue 5 in one script, for the device machine (one H100, ~10 minutes).
#   bash benchmarks/gpu_checks.sh [DATA_ROOT]      (default .device_data, a git-ignored copy of
#                                                  ../shared/data/cifar10 carried to the machine)
# Appends benchmark rows to benchmarks/results/, and leaves the GPU tests' log and em_basics run
# under the `gpu` profile in $OUT; each step is time-boxed so one slow step cannot eat the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
export UEX_DATA_ROOT="${1:-.device_data}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-/tmp/uex_gpu}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

step() {  # step SECONDS NAME COMMAND...
  local limit=$1 name=$2; shift 2
  echo "=== $name (limit ${limit}s)"; local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  tail -n 15 "$OUT/$name.log"; echo "=== $name: rc $rc in $((SECONDS - t0)) s"
}

step 120 pytest_gpu python -m pytest -q -m gpu tests
step 150 throughput_b128 python benchmarks/train_throughput.py --model resnet18 --batch-size 128 --steps 200 --workers 8 --pgd-images 8192 --pgd-steps 10 --pgd-batch 512
step 150 throughput_b512 python benchmarks/train_throughput.py --model resnet18 --batch-size 512 --steps 100 --workers 8 --pgd-images 8192 --pgd-steps 10 --pgd-batch 512 --compile
step 150 em_round python benchmarks/em_round.py --mode samplewise --steps 20 --pgd-batch 512
# The device image has no papermill/ipykernel/myst-nb: carry them, e.g. built here with
#   pip install --target .device_pkgs papermill ipykernel myst-nb   (check it stays under 64 MiB)
# and add .device_pkgs to PYTHONPATH; otherwise this step fails and the others still run.
export PYTHONPATH="$PYTHONPATH:$PWD/.device_pkgs"
# Into $OUT/gpu_run (not book/runs, which holds the lab run); its results table lands beside it.
step 420 em_basics_gpu python -m uexlib.cli run em_basics --profile gpu --output "$OUT/gpu_run"
cp -r benchmarks/results "$OUT/" 2>/dev/null
echo "done"
