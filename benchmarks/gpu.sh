#!/usr/bin/env bash
# The sweep benchmarks on an NVIDIA GPU, as one prepared script: it records the device, the
# commit and the numbers in docs/data/benchmarks.json (sections run-gpu and throughput-gpu,
# each with its command, commit, machine and date), from which the docs are built.
#
#   bash benchmarks/gpu.sh              # the measurement (about 15 minutes on an H100)
#   bash benchmarks/gpu.sh --quick      # a smoke test of both scripts (nothing published)
#   PYTHON=python3 bash benchmarks/gpu.sh   # an interpreter that already has CUDA JAX
#
# 1. benchmarks/run.py --label gpu: W1-W4 timed as a user runs them (a fresh process per
#    repetition, cold compilation cache; the PyTorch baseline is a CPU loop and is left out).
# 2. benchmarks/throughput.py --label gpu: run-steps/s against the number of runs (84 to
#    100,002) for the W1 and W2 shapes, each point at most 2e7 run-steps (so 2,000 steps up
#    to 10,000 runs: the targets "10,000 W1 runs of 2,000 steps in under 5 s warm" and
#    "10,000 W2 runs within 20% of the float32 matmul bound of their flops"), at the
#    sweeps' precision (highest) and at JAX's default (TF32), and the half and learn times
#    at each precision against a float64 reference.
#
# Without PYTHON, creates .venv-gpu with a CUDA build of JAX (and the bench extra). Exits 1
# if JAX sees no GPU (CPU numbers would be mislabelled). Extra options go to both scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then
  # ssm_jax is then read from this checkout
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  VENV=${VENV:-.venv-gpu}
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -e '.[bench]' 'jax[cuda12]'
  fi
  PYTHON="$VENV/bin/python"
fi
"$PYTHON" - <<'PY'
import sys, jax
devices = jax.devices()
print("JAX devices:", devices)
if devices[0].platform != "gpu":
    sys.exit("no GPU visible to JAX: not running the GPU benchmark")
stats = devices[0].memory_stats() or {}
print("device:", devices[0].device_kind, "memory limit:", stats.get("bytes_limit"))
PY
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
git rev-parse --short HEAD || true
"$PYTHON" benchmarks/run.py --label gpu --no-torch --only roofline,w1,w2,w3,w4 "$@"
"$PYTHON" benchmarks/throughput.py --label gpu --run-steps 2e7 --precisions highest,default \
  --compare-precision "$@"
