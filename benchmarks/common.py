"""Shared helpers for the benchmark scripts: machine facts, timing, and BENCHMARKS.md sections."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import torch

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isa = ("AVX512-BF16 (native bf16)" if "avx512_bf16" in flags or "amx_bf16" in flags
           else "AVX2 only (bf16 emulated)" if "avx2" in flags else "no AVX2")
    cpu = f"{cpu} [{isa}]"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")


def commit() -> str:
    """The short commit hash, ``+dirty`` with uncommitted changes; ALKIT_BENCH_COMMIT names it where git is absent."""
    if os.environ.get("ALKIT_BENCH_COMMIT"):
        return os.environ["ALKIT_BENCH_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def best_of(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """The fastest of ``repeats`` timed calls (the least disturbed by other load), and the last result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between markers ``<!-- name -->`` in BENCHMARKS.md."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# alkit benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)


def command() -> str:
    """The command line that reproduces this run, from the repository root."""
    module = os.path.relpath(sys.argv[0], ROOT).removesuffix(".py").replace(os.sep, ".")
    return "python -m " + " ".join([module, *sys.argv[1:]])
