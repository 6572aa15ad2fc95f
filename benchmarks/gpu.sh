#!/usr/bin/env bash
# Run the ssm-jax benchmark suite on an NVIDIA GPU and record the device name.
#
#   bash benchmarks/gpu.sh [extra benchmarks/run.py options, e.g. --quick]
#   PYTHON=python3 bash benchmarks/gpu.sh --no-torch --chunk-size 84   # what made the table
#
# Creates .venv-gpu with a CUDA build of JAX (and the bench extra), checks that JAX sees a
# GPU (exits 1 otherwise: the CPU numbers would be mislabelled), runs benchmarks/run.py
# --label gpu, which writes benchmarks/results/results_gpu.json (machine.device is the GPU
# name, e.g. "NVIDIA H100 80GB HBM3"). A later CPU run of benchmarks/run.py fills the GPU
# column of results.md from that file.
set -euo pipefail
cd "$(dirname "$0")/.."
# PYTHON=python3 uses an interpreter that already has a CUDA build of JAX and the
# dependencies (e.g. a machine without internet); ssm_jax is then read from this checkout.
if [ -n "${PYTHON:-}" ]; then
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
print("device:", devices[0].device_kind)
PY
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
"$PYTHON" benchmarks/run.py --label gpu "$@"
