"""Shared helpers for the benchmark scripts: machine facts, timing, and the results they save.

A benchmark saves its result as data, ``benchmarks/results/<key>.json``, with the command, commit,
date and machine; ``python -m benchmarks.render`` rebuilds BENCHMARKS.md from those files. A result's
``blocks`` (paragraphs and tables) are what the script measured; ``metrics`` are the figures the
headline and the status table take from it; ``notes`` are a person's commentary on that one run, so a
rerun leaves them with the old result, which moves to ``benchmarks/results/archive/``.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from alkit.models.device import cap_emulates_bf16, onednn_isa_cap

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "benchmarks" / "results"
ISA_NAMES = {"avx512-bf16": "AVX512-BF16 (native bf16)", "avx2": "AVX2 only (bf16 emulated)",
             "none": "no AVX2", "unknown": "CPU type not recorded"}


def cpu_isa(flags: str) -> str:
    """``avx512-bf16`` where bf16 runs natively (AVX512-BF16 or AMX), ``avx2`` where it is emulated."""
    words = set(flags.split())
    if {"avx512_bf16", "amx_bf16"} & words:
        return "avx512-bf16"
    return "avx2" if "avx2" in words else "none"


def machine_info() -> dict[str, Any]:
    """The facts a result's numbers depend on: CPU model and type, cores, memory, GPU, versions."""
    cpu, flags = platform.processor() or "unknown CPU", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    except OSError:
        pass
    cap = onednn_isa_cap()
    return {"cpu": cpu, "isa": cpu_isa(flags), **({"isa_cap": cap} if cap else {}), "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def cap_words(cap: str | None = None) -> str:
    """``, oneDNN capped at <ISA>`` for ``cap`` (default: this process's ``ONEDNN_MAX_CPU_ISA``), or nothing."""
    cap = cap or onednn_isa_cap()
    return f", oneDNN capped at {cap}" if cap else ""


def isa_text(info: dict[str, Any]) -> str:
    """The CPU type, and the oneDNN cap a run put on it (``ONEDNN_MAX_CPU_ISA``), if any."""
    return ISA_NAMES[info.get("isa", "unknown")] + (cap_words(info["isa_cap"]) if info.get("isa_cap") else "")


def stands_in_for_avx2(info: dict[str, Any]) -> bool:
    """True for a native-bf16 CPU whose oneDNN kernels were capped below bf16: an approximate AVX2-only CPU."""
    return info.get("isa") == "avx512-bf16" and cap_emulates_bf16(info.get("isa_cap"))


def machine_line(info: dict[str, Any]) -> str:
    return (f"{info['cpu']} [{isa_text(info)}], {info['cores']} cores, {info['memory_gib']} GiB, "
            f"{info.get('gpu') or 'no GPU'}; Python {info['python']}, torch {info['torch']}, "
            f"{info['threads']} torch threads")


def machine() -> str:
    return machine_line(machine_info())


def save_result(key: str, kind: str, title: str, blocks: list[str | dict[str, Any]],
                metrics: dict[str, Any] | None = None, results: Path = RESULTS,
                ran_on: dict[str, Any] | None = None) -> Path:
    """Write ``benchmarks/results/<key>.json``; an earlier result under the key moves to the archive.

    ``ran_on``: another result whose machine and commit this one records, for figures summarised here from
    work that ran there (a GPU machine's run store).

    ``blocks`` are the section's body in order: paragraphs (markdown strings) and tables (:func:`table`).
    """
    path = results / f"{key}.json"
    if path.exists():
        old = json.loads(path.read_text())
        archived = results / "archive" / f"{key}-{old['date']}-{old['commit'].replace('+', '-')}.json"
        archived.parent.mkdir(parents=True, exist_ok=True)
        path.replace(archived)
    result = {"key": key, "kind": kind, "title": title, "command": command(),
              "commit": ran_on["commit"] if ran_on else STARTED_AT, "date": time.strftime("%Y-%m-%d"),
              "machine": ran_on["machine"] if ran_on else machine_info(), "blocks": blocks,
              "metrics": metrics or {}, "notes": []}
    results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return path


def markdown_blocks(body: str) -> list[str | dict[str, Any]]:
    """Split a markdown body into blocks: paragraphs, and tables as :func:`table` data (cells as shown)."""
    lines, blocks, para, i = body.strip().split("\n"), [], [], 0

    def flush() -> None:
        if para:
            blocks.append("\n".join(para).strip())
            para.clear()

    while i < len(lines):
        line = lines[i]
        if line.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= {"|", "-"} and lines[i + 1].strip():
            flush()
            split = lambda row: [c.strip() for c in row.strip().strip("|").split("|")]  # noqa: E731
            columns, rows, i = split(line), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(split(lines[i]))
                i += 1
            blocks.append(table(columns, rows))
            continue
        if line.strip():
            para.append(line)
        else:
            flush()
        i += 1
    flush()
    return blocks


def device_key(base: str, device: torch.device) -> str:
    """A result key per machine type: ``<base>-cuda``, or ``<base>-cpu-avx512-bf16`` / ``-cpu-avx2``, with
    ``-onednn-<cap>`` after it when ``ONEDNN_MAX_CPU_ISA`` capped oneDNN's kernels."""
    if device.type != "cpu":
        return f"{base}-{device.type}"
    info = machine_info()
    return f"{base}-cpu-{info['isa']}" + (f"-onednn-{info['isa_cap'].lower()}" if info.get("isa_cap") else "")


def table(columns: list[str], rows: list[list[Any]], formats: list[str | None] | None = None) -> dict[str, Any]:
    """A table block: column names, rows of cells (numbers stay numbers, None shows as "–"), and a
    format spec per column for its numbers (e.g. ``",.0f"``, ``".4f"``; None: ``{:,}`` for ints, as is)."""
    return {"columns": columns, "rows": rows, "formats": formats or [None] * len(columns)}


def commit() -> str:
    """The short commit hash, ``+dirty`` with uncommitted changes outside ``benchmarks/results/``; ALKIT_BENCH_COMMIT
    names it where git is absent."""
    if os.environ.get("ALKIT_BENCH_COMMIT"):
        return os.environ["ALKIT_BENCH_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)benchmarks/results"],  # results written by an earlier run are data
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
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


STARTED_AT = commit()  # the code a benchmark process runs is the code it imported at its start


def command() -> str:
    """The command line that reproduces this run, from the repository root."""
    module = os.path.relpath(sys.argv[0], ROOT).removesuffix(".py").replace(os.sep, ".")
    cap = onednn_isa_cap()
    return (f"ONEDNN_MAX_CPU_ISA={cap} " if cap else "") + "python -m " + " ".join([module, *sys.argv[1:]])
