#!/usr/bin/env bash
# Set up alkit in ./.venv from a fresh clone: Python packages (CPU torch 2.13 where it is on disk),
# and, when run as root with apt available, Debian's Fashion-MNIST package. With --with-browser (the
# test set-up) also Chromium for the browser tests, the ray extra for the Ray executor tests, and the bench extra (baal, modAL, skorch) for the
# benchmark smoke tests. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: a plain 'torch' could pull a multi-GB CUDA build; 2.13.0 satisfies alkit's range.
.venv/bin/python -m pip show torch >/dev/null 2>&1 || .venv/bin/python -m pip install -q "torch==2.13.0"
extras=test
[ "${1:-}" = "--with-browser" ] && extras=test,bench,ray   # the test suite also smoke-tests the peer benchmarks and runs a local Ray
.venv/bin/python -m pip install -q -e ".[$extras]"

want_apt=()
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || want_apt+=(dataset-fashion-mnist)
if [ "${1:-}" = "--with-browser" ] && ! command -v chromium >/dev/null 2>&1; then want_apt+=(chromium); fi
if [ ${#want_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want_apt[@]}" >/dev/null
  else
    echo "note: could not install ${want_apt[*]} (needs root and apt); alkit will download Fashion-MNIST itself" >&2
  fi
fi
# A local CIFAR-10 copy beside the checkout (as on the project's CI machines) is imported into the cache.
if [ -f ../shared/data/cifar-10-python.tar.gz ]; then
  .venv/bin/alkit fetch cifar10 --source ../shared/data/cifar-10-python.tar.gz -q >/dev/null
fi
