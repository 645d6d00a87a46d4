"""Parallel seeds: the same run in one process, in N worker processes, and as N Ray tasks, timed in one run.

The run: Fashion-MNIST, margin, N paired seeds, 1,000 random initial labels +1,000 per round
(``--rounds``), the default recipe, no full-data reference. It runs once with ``workers=1`` and once
with ``workers=N`` into fresh folders, and reports both wall times, the ratio, and whether the two
runs' rounds agree (accuracy, F1 and the queried images of every round). The one-process run keeps
all CPU threads, which is the fair speed baseline. On a GPU the processes share the device and the
rounds must agree exactly; on a CPU each worker has threads // N threads, float sums differ with the
thread count, so the CPU report gives the largest F1 difference instead (tests/loop/test_parallel.py and
tests/loop/test_ray.py check exact agreement at equal threads). The Ray run (a local Ray, started and timed before it, with
threads // N CPUs per unit) has the worker processes' threads per unit, so those two must agree
exactly on every device; the difference in their wall times, per unit, is Ray's overhead.

    python -m benchmarks.workers --workers 4 --rounds 5 --device cuda   # 105 s on an H100 (2026-11-26)
    python -m benchmarks.workers --workers 2                            # on a CPU
    python -m benchmarks.workers --smoke                     # seconds, for CI (writes nothing)
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import alkit
from alkit.models.device import resolve_device
from benchmarks.common import device_key, markdown_blocks, save_result


def _timed_run(out: Path, workers: int, seeds: list[int], kw: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    t0 = time.perf_counter()
    result = alkit.run(kw.pop("dataset"), ["margin"], seeds, out=out, workers=workers, report=False, **kw)
    return time.perf_counter() - t0, result.rows


def _ray_run(out: Path, cpus: int, seeds: list[int], kw: dict[str, Any]) -> tuple[float, float, list[dict[str, Any]]]:
    """(seconds to start a local Ray, seconds of the run on it, rows)."""
    import ray

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    start = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        result = alkit.run(kw.pop("dataset"), ["margin"], seeds, out=out, executor="ray", cpus_per_unit=cpus,
                           report=False, **kw)
    finally:
        ray.shutdown()
    return start, time.perf_counter() - t0, result.rows


def _disagreements(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[str]:
    rb = {(r["seed"], r["round"]): r for r in b}
    out = []
    for r in a:
        other = rb.get((r["seed"], r["round"]))
        if other is None:
            out.append(f"seed {r['seed']} round {r['round']}: missing")
        elif (abs(r["f1_macro"] - other["f1_macro"]) > 1e-9 or abs(r["accuracy"] - other["accuracy"]) > 1e-9
              or not np.array_equal(r["queried"], other["queried"])):
            out.append(f"seed {r['seed']} round {r['round']}: F1 {r['f1_macro']:.4f} vs {other['f1_macro']:.4f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="query rounds after the initial 1,000 labels (default: 3)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    device = resolve_device(args.device)
    seeds = list(range(args.workers))
    kw: dict[str, Any] = dict(dataset="fashion-mnist", initial=1000, query=1000, rounds=args.rounds, epochs=10,
                              device=args.device, full_data="none", progress=False)
    if args.smoke:
        kw.update(initial=60, query=60, rounds=1, epochs=1, min_steps=0, candidates=600)
    with tempfile.TemporaryDirectory() as tmp:
        one_s, one = _timed_run(Path(tmp) / "one", 1, seeds, dict(kw))
        par_s, par = _timed_run(Path(tmp) / "par", args.workers, seeds, dict(kw))
        per_unit = max(1, torch.get_num_threads() // args.workers)
        ray_start, ray_s, on_ray = _ray_run(Path(tmp) / "ray", per_unit, seeds, dict(kw))
    bad = _disagreements(par, on_ray)
    ray_agree = ("every round agrees with the worker processes' (accuracy, F1, queried images)" if not bad
                 and len(par) == len(on_ray) else f"{len(bad)} of {len(par)} rounds differ from the worker "
                 "processes': " + "; ".join(bad[:3]))
    if device.type == "cuda":
        bad += _disagreements(one, par)
        agree = ("every round agrees (accuracy, F1, queried images)" if not bad and len(one) == len(par)
                 else f"{len(bad)} of {len(one)} rounds differ: " + "; ".join(bad[:3]))
    else:
        f1 = {(r["seed"], r["round"]): r["f1_macro"] for r in par}
        gap = max(abs(r["f1_macro"] - f1[(r["seed"], r["round"])]) for r in one)
        agree = (f"largest F1 difference {gap * 100:.2f} points ({torch.get_num_threads()} threads in one process, "
                 f"{max(1, torch.get_num_threads() // args.workers)} per worker)")
    body = (f"Fashion-MNIST, margin, {len(seeds)} paired seeds, {kw['initial']:,} initial labels +{kw['query']:,} "
            f"for {kw['rounds']} rounds, {kw['epochs']} epochs; {len(one)} rounds in each run.\n\n"
            "| run | wall s | rounds per minute |\n|---|---|---|\n"
            f"| one process | {one_s:.1f} | {len(one) / one_s * 60:.1f} |\n"
            f"| {args.workers} worker processes | {par_s:.1f} | {len(par) / par_s * 60:.1f} |\n"
            f"| {args.workers} Ray tasks ({per_unit} CPU each; local Ray started in {ray_start:.1f} s before) | "
            f"{ray_s:.1f} | {len(on_ray) / ray_s * 60:.1f} |\n\n"
            f"Speed-up: **{one_s / par_s:.2f}x** with worker processes, **{one_s / ray_s:.2f}x** on Ray. "
            f"Agreement: {agree}. Ray: {ray_agree}; its overhead over the worker processes is "
            f"{(ray_s - par_s) / len(seeds):+.1f} s per unit ({len(seeds)} units), plus Ray's start.\n")
    print(body)
    if bad:
        raise SystemExit(f"workers benchmark: {agree}")
    if not args.smoke:
        save_result(device_key("workers", device), "workers",
                    f"Parallel seeds: one process vs {args.workers} workers on {device.type}", markdown_blocks(body),
                    {"device": device.type, "one_process_s": one_s, "workers_s": par_s, "ray_s": ray_s})


if __name__ == "__main__":
    main()
