#!/usr/bin/env bash
# The GPU benchmarks as one short script, for a lent GPU machine that has PyTorch but no internet.
#
#   bash benchmarks/gpu.sh prepare   # here, in the README's environment: copies the four Fashion-MNIST
#                                    # files and the wheels alkit needs beyond PyTorch's usual company into
#                                    # .devdata/ (git-ignored, about 30 MB), to be carried to the GPU machine
#   bash benchmarks/gpu.sh run       # there, from the repository root with .devdata/ beside it: the CUDA
#                                    # tests (pytest -m cuda), scoring on CUDA (with two-stage), MC-dropout
#                                    # samples, the end-to-end run with alkit on its default path (auto) and
#                                    # in fp32, then parallel seeds (4 workers); saves the results
#                                    # scoring-cuda, mc-dropout-cuda, end-to-end-cuda-*, workers-cuda under
#                                    # benchmarks/results/, and copies them (after each step) and the log
#                                    # to $OUT when that is set
#
# Copy the result files back into benchmarks/results/ here and run python -m benchmarks.render. Where git
# is absent, ALKIT_BENCH_COMMIT names the commit the results record.
# Arguments after "run" go to every benchmark: "run --smoke" checks the script in seconds and writes
# nothing; ALKIT_GPU_DEVICE=cpu runs it on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=.devdata

prepare() {
    local py=${PYTHON:-python}
    local src
    src=$("$py" -c 'from alkit.data.fashion_mnist import locate
found = locate()
print(found["train_images"].parent if found else "")')
    if [[ -z "$src" ]]; then
        echo "gpu.sh: Fashion-MNIST is not on this machine; run 'alkit fetch fashion-mnist' first" >&2
        exit 2
    fi
    rm -rf "$DEV" && mkdir -p "$DEV/data/fashion-mnist" "$DEV/whl"
    cp "$src"/*-ubyte* "$DEV/data/fashion-mnist/"
    "$py" -m pip download -q --no-deps --only-binary=:all: -d "$DEV/whl" \
        "platformdirs==$("$py" -c 'import platformdirs; print(platformdirs.__version__)')"
    du -sh "$DEV"
}

run() {
    local out=${OUT:-/tmp/alkit-gpu} device=${ALKIT_GPU_DEVICE:-cuda}
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/alkit-site "$DEV"/whl/*.whl
    export PYTHONPATH="/tmp/alkit-site:src:.${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    export ALKIT_DATA="$PWD/$DEV/data"
    local rc=0 log="$out/gpu.log"
    : > "$log"
    if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"; fi
    python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__)' | tee -a "$log"
    if [[ "$device" == cuda* ]]; then
        python3 -m pytest -q -p no:cacheprovider -m cuda tests/training/test_cuda.py 2>&1 | tee -a "$log" || rc=1
    fi
    mkdir -p "$out/results"
    python3 -m benchmarks.scoring --device "$device" "$@" 2>&1 | tee -a "$log" || rc=1
    python3 -m benchmarks.mc_dropout --device "$device" "$@" 2>&1 | tee -a "$log" || rc=1
    cp benchmarks/results/*.json "$out/results/"
    python3 -m benchmarks.end_to_end --device "$device" --arms default,scratch "$@" 2>&1 | tee -a "$log" || rc=1
    cp benchmarks/results/*.json "$out/results/"
    python3 -m benchmarks.end_to_end --device "$device" --precision bf16 --arms default "$@" 2>&1 | tee -a "$log" || rc=1
    cp benchmarks/results/*.json "$out/results/"
    python3 -m benchmarks.workers --workers 4 --rounds 5 --device "$device" "$@" 2>&1 | tee -a "$log" || rc=1
    cp benchmarks/results/*.json "$out/results/"
    return $rc
}

case "${1:-}" in
    prepare) prepare ;;
    run) shift; run "$@" ;;
    *) echo "usage: bash benchmarks/gpu.sh prepare|run" >&2; exit 2 ;;
esac
