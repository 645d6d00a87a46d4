#!/usr/bin/env bash
# The GPU benchmarks as short scripts, for a lent GPU machine that has PyTorch but no internet.
#
#   bash benchmarks/gpu.sh prepare         # here, in the README's environment: copies the four Fashion-MNIST
#                                          # files and the wheels alkit needs beyond PyTorch's usual company
#                                          # into .devdata/ (git-ignored, about 30 MB), to carry to the GPU machine
#   bash benchmarks/gpu.sh prepare-cifar   # here: codes CIFAR-10 losslessly into .devdata/cifar/part0..2
#                                          # (25, 57 and 30 MB; benchmarks/devdata.py), one part per call
#   bash benchmarks/gpu.sh stash           # there: keeps the carried CIFAR parts in /tmp for a later call
#   bash benchmarks/gpu.sh run             # there, from the repository root with .devdata/ beside it: the steps
#                                          # in GPU_STEPS (default: all but cifar-field), each saving its
#                                          # results under benchmarks/results/ and copying them and the log
#                                          # to $OUT when that is set
#
# Steps: tests (pytest -m cuda), scoring (pool scoring on CUDA, with two-stage), mc (MC-dropout samples),
# e2e (the standard run with alkit's default path and from scratch, vs the plain loop), e2e-default (the
# default path only), e2e-bf16, workers (parallel seeds, 4 workers), and cifar-field: CIFAR-10 from the
# stashed and carried parts, then the field's strategies (random, margin, bald, coreset, badge; 3 seeds,
# 1k -> 10k by 1k, 20 epochs with augmentation, warm start) and random and margin at +500 per round, one
# unit per (seed, strategy) so that all share the GPU (through MPS where it starts), each run stopped
# after CIFAR_TIMEOUT seconds (default 480); their run stores come back as cifar-*.sqlite. CIFAR_FIELD and
# CIFAR_Q500 name other strategies (empty: that run is skipped), CIFAR_FIELD_WORKERS and CIFAR_Q500_WORKERS
# their processes (15, 6), CIFAR_THREADS each process's torch threads (1; more for badge and coreset, whose
# selection runs on the CPU), and CIFAR_TAG a suffix for their folders and results.
#
# Only the results written by this run are copied to $OUT (a call brings back at most 8 files).
# Copy the result files back into benchmarks/results/ here and run python -m benchmarks.render. Where git
# is absent, ALKIT_BENCH_COMMIT names the commit the results record.
# Arguments after "run" go to every benchmark: "run --smoke" checks the script in seconds and writes
# nothing; ALKIT_GPU_DEVICE=cpu runs it on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=.devdata
STASH=/tmp/alkit-cifar-parts

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
    rm -rf "$DEV/data" "$DEV/whl" && mkdir -p "$DEV/data/fashion-mnist" "$DEV/whl"
    cp "$src"/*-ubyte* "$DEV/data/fashion-mnist/"
    "$py" -m pip download -q --no-deps --only-binary=:all: -d "$DEV/whl" \
        "platformdirs==$("$py" -c 'import platformdirs; print(platformdirs.__version__)')"
    du -sh "$DEV"
}

prepare_cifar() {
    rm -rf "$DEV/cifar"
    "${PYTHON:-python}" -m benchmarks.devdata pack --out "$DEV/cifar" --part-mb 25,57
}

stash() {
    mkdir -p "$STASH"
    cp "$DEV"/cifar/part*/cifar-* "$STASH/"
    ls -la "$STASH"
}

cifar_field() {
    local device=$1 out=$2 log=$3
    shift 3
    local parts=("$DEV"/cifar/part*)
    [[ -d "$STASH" ]] && parts+=("$STASH")
    python3 -m benchmarks.devdata unpack --parts "${parts[@]}" --to "$ALKIT_DATA" 2>&1 | tee -a "$log"
    if [[ "$device" == cuda* ]] && command -v nvidia-cuda-mps-control > /dev/null && [[ "${ALKIT_GPU_MPS:-1}" == 1 ]]; then
        nvidia-cuda-mps-control -d 2>&1 | tee -a "$log" || true
        if timeout 60 python3 -c 'import torch; assert torch.ones(8, device="cuda").sum().item() == 8'; then
            echo "MPS: on" | tee -a "$log"
        else
            echo "MPS: the check failed; off" | tee -a "$log"
            echo quit | nvidia-cuda-mps-control || true
        fi
    fi
    local common=(--dataset cifar10 --seeds 0,1,2 --epochs 20 --augment --warm-start --full-data none --unit strategy)
    local threads=${CIFAR_THREADS:-1} names=() pids=() status=()
    # name, strategies, workers, extra options; the parent's threads // workers is each worker's torch threads;
    # each run is its own process group (setsid), so that what it leaves behind can be ended without touching others
    launch() {
        [[ -n "$2" ]] || return 0
        OMP_NUM_THREADS=$(($3 * threads)) setsid timeout "${CIFAR_TIMEOUT:-480}" python3 -m benchmarks.label_efficiency \
            "${common[@]}" --strategies "$2" --workers "$3" --out "runs/bench-cifar10-$1-warm" "${@:4}" \
            > "$out/cifar-$1.log" 2>&1 &
        names+=("$1") && pids+=($!)
    }
    launch "field${CIFAR_TAG:-}" "${CIFAR_FIELD-random,margin,bald,coreset,badge}" "${CIFAR_FIELD_WORKERS:-15}" "$@"
    launch "q500${CIFAR_TAG:-}" "${CIFAR_Q500-random,margin}" "${CIFAR_Q500_WORKERS:-6}" --query 500 "$@"
    local i
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" && status+=(0) || status+=($?)
        echo "cifar-${names[$i]} exit ${status[$i]} (124: stopped at CIFAR_TIMEOUT) $(date +%T)" | tee -a "$log"
    done
    for i in "${!pids[@]}"; do  # a run stopped by the timeout leaves its worker processes in its process group
        kill -9 -- "-${pids[$i]}" 2> /dev/null || true
    done
    for i in "${!names[@]}"; do
        local run=runs/bench-cifar10-${names[$i]}-warm
        [[ -f $run/runs.sqlite ]] || continue
        python3 -c 'import sqlite3, sys; a = sqlite3.connect(sys.argv[1]); b = sqlite3.connect(sys.argv[2]); a.backup(b)' \
            "$run/runs.sqlite" "$out/cifar-${names[$i]}.sqlite"
        if [[ ${status[$i]} != 0 ]]; then  # a finished run saved its result; a stopped one is summarised here
            python3 -m benchmarks.label_efficiency --from-run "$run" "$@" 2>&1 | tail -n 30 | tee -a "$log" || true
        fi
    done
}

run() {
    local out=${OUT:-/tmp/alkit-gpu} device=${ALKIT_GPU_DEVICE:-cuda}
    local steps=${GPU_STEPS:-tests,scoring,mc,e2e,e2e-bf16,workers}
    mkdir -p "$out/results"
    python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --no-cache-dir --target /tmp/alkit-site \
        "$DEV"/whl/*.whl
    export PYTHONPATH="/tmp/alkit-site:src:.${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    export ALKIT_DATA="$PWD/$DEV/data"
    local rc=0 log="$out/gpu.log" since=/tmp/alkit-gpu-since
    : > "$log"
    touch "$since"
    if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"; fi
    python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__)' | tee -a "$log"
    local step
    for step in ${steps//,/ }; do
        echo "== $step $(date +%T)" | tee -a "$log"
        case $step in
            tests) if [[ "$device" == cuda* ]]; then
                       python3 -m pytest -q -p no:cacheprovider -m cuda tests/training/test_cuda.py 2>&1 | tee -a "$log" || rc=1
                   fi ;;
            scoring) python3 -m benchmarks.scoring --device "$device" "$@" 2>&1 | tee -a "$log" || rc=1 ;;
            mc) python3 -m benchmarks.mc_dropout --device "$device" "$@" 2>&1 | tee -a "$log" || rc=1 ;;
            e2e) python3 -m benchmarks.end_to_end --device "$device" --arms default,scratch "$@" 2>&1 | tee -a "$log" || rc=1 ;;
            e2e-default) python3 -m benchmarks.end_to_end --device "$device" --arms default "$@" 2>&1 | tee -a "$log" || rc=1 ;;
            e2e-bf16) python3 -m benchmarks.end_to_end --device "$device" --precision bf16 --arms default "$@" 2>&1 | tee -a "$log" || rc=1 ;;
            workers) python3 -m benchmarks.workers --workers 4 --rounds 5 --device "$device" "$@" 2>&1 | tee -a "$log" || rc=1 ;;
            cifar-field) cifar_field "$device" "$out" "$log" "$@" || rc=1 ;;
            *) echo "gpu.sh: unknown step '$step'" | tee -a "$log"; rc=2 ;;
        esac
        find benchmarks/results -maxdepth 1 -name '*.json' -newer "$since" -exec cp {} "$out/results/" \;
    done
    echo "== done $(date +%T)" | tee -a "$log"
    return $rc
}

case "${1:-}" in
    prepare) prepare ;;
    prepare-cifar) prepare_cifar ;;
    stash) stash ;;
    run) shift; run "$@" ;;
    *) echo "usage: bash benchmarks/gpu.sh prepare|prepare-cifar|stash|run" >&2; exit 2 ;;
esac
