#!/usr/bin/env bash
# One prepared run for a machine with an NVIDIA GPU and CuPy (e.g. the device tool's): the GPU
# parity tests, then the timing table. Needs no network: run from the repository root, with
# numpy, scipy, safetensors, sentencepiece, tqdm, cupy, torch, transformers, pytest and hypothesis
# installed (the device machines' image has them). Under 8 minutes on an H100.
#   bash benchmarks/gpu_check.sh            # or: bash benchmarks/gpu_check.sh --quick
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MINIBERTGEN_REQUIRE_GPU=1
python3 -c "import cupy; p = cupy.cuda.runtime.getDeviceProperties(0); print('GPU:', p['name'].decode())" || exit 1
status=0
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_backend.py || status=1
timeout 240 python3 benchmarks/bench_gpu.py "$@" || status=1
exit $status
