"""Peak memory while scoring very large pools (a uint8 memmap, a folder of PNG files), and of the
batch-diverse strategies (core-set, BADGE) on a Fashion-MNIST-sized pool of 512-d embeddings.

Peak RSS "beyond the memmap" is the peak of anonymous memory (RssAnon): pages of the
memmapped file are page cache that the kernel can drop, so they are not counted.

    python -m benchmarks.memory                      # 1,000,000-image memmap + 100,000 PNG files
    python -m benchmarks.memory --smoke              # seconds, for CI (writes nothing)
    python -m benchmarks.memory --only strategies    # core-set and BADGE only
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import alkit
from alkit.loop.seeding import torch_generator
from alkit.models import ReferenceCNN
from alkit.models.seeded import init_weights
from alkit.strategies import ModelOutputs, QueryContext, get_strategy
from alkit.strategies.streaming import streaming_query
from alkit.training.trainer import Normalizer
from benchmarks.common import markdown_blocks, save_result


def rss_anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakSampler:
    def __init__(self) -> None:
        self.peak = rss_anon_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_anon_mib())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_mib())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memmap-images", type=int, default=1_000_000)
    ap.add_argument("--png-images", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--pool", type=int, default=59_000, help="candidates for the strategy rows")
    ap.add_argument("--dim", type=int, default=512, help="embedding size for the strategy rows")
    ap.add_argument("--only", choices=["scoring", "strategies"], help="run one part")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.memmap_images, args.png_images, args.k, args.pool = 5_000, 300, 100, 3_000
    if args.only != "scoring":
        strategy_section(args)
    if args.only != "strategies":
        scoring_section(args)


def strategy_section(args: argparse.Namespace) -> None:
    """Peak anonymous memory of core-set and BADGE beyond the round's cached outputs (the pool's embeddings
    and logits, and the labeled set's embeddings, which the loop holds anyway)."""
    rng = np.random.default_rng(0)
    n_labeled = 1000
    n = args.pool + n_labeled
    idx = np.arange(n)
    outputs = ModelOutputs.from_arrays(idx, rng.normal(size=(n, 10)).astype(np.float32) * 3,
                                       np.abs(rng.normal(size=(n, args.dim))).astype(np.float32))
    labels = np.full(n, -1)
    labels[:n_labeled] = rng.integers(0, 10, n_labeled)
    ctx = QueryContext(idx[n_labeled:], idx[:n_labeled], labels, 10, 1, np.random.default_rng(0), outputs)
    ctx.embeddings(), ctx.labeled_embeddings(), ctx.logits()
    table = ["| strategy | pool | k | RssAnon before (MiB) | peak RssAnon (MiB) | peak beyond the outputs (MiB) | seconds |",
             "|---|---|---|---|---|---|---|"]
    beyond: dict[str, float] = {}
    for name in ("coreset", "badge"):
        base = rss_anon_mib()
        t0 = time.perf_counter()
        with PeakSampler() as peak:
            chosen = get_strategy(name).query(ctx, args.k)
        seconds = time.perf_counter() - t0
        assert len(set(chosen.tolist())) == args.k
        beyond[name] = peak.peak - base
        table.append(f"| `{name}` | {args.pool:,} x {args.dim} | {args.k:,} | {base:,.0f} | {peak.peak:,.0f} | "
                     f"{peak.peak - base:,.0f} | {seconds:,.1f} |")
    body = f"""The strategies' own work on {args.pool:,} candidates with {args.dim}-d float32 embeddings, 10 classes and
{n_labeled:,} labeled images, after the round's outputs are cached (as the loop holds them). Target: under
1 GiB (1,024 MiB) beyond the pool. Core-set computes distances in 4096 x 4096 blocks; BADGE never forms
the N x C·D gradient embeddings.

{chr(10).join(table)}
"""
    print(body)
    if not args.smoke:
        save_result("memory-strategies", "memory", "Memory of core-set and BADGE", markdown_blocks(body),
                    {"strategies": beyond})


def scoring_section(args: argparse.Namespace) -> None:
    torch.set_grad_enabled(False)
    model = ReferenceCNN((28, 28, 1), 10)
    init_weights(model, torch_generator(0, 0, "init"))
    model.eval()
    norm = Normalizer(np.array([0.286], np.float32), np.array([0.353], np.float32))
    margin = get_strategy("margin")
    cpu = torch.device("cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool"
        pool = np.lib.format.open_memmap(path.with_suffix(".npy"), mode="w+", dtype=np.uint8,
                                         shape=(args.memmap_images, 28, 28, 1))
        rng = np.random.default_rng(0)
        for s in range(0, args.memmap_images, 50_000):
            pool[s:s + 50_000] = rng.integers(0, 256, size=pool[s:s + 50_000].shape, dtype=np.uint8)
        pool.flush()
        del pool
        pool = np.load(path.with_suffix(".npy"), mmap_mode="r")
        base = rss_anon_mib()
        t0 = time.perf_counter()
        with PeakSampler() as peak:
            top, _ = streaming_query(margin, model, pool, args.k, norm, cpu)
        seconds = time.perf_counter() - t0
        rows.append((f"{args.memmap_images:,}-image uint8 memmap ({pool.nbytes / 2**20:,.0f} MiB on disk)",
                     base, peak.peak, seconds, len(top)))

        folder = Path(tmp) / "pngs" / "unlabeled"
        folder.mkdir(parents=True)
        ds = alkit.load_dataset("fashion-mnist", progress=False)
        for i in range(args.png_images):
            Image.fromarray(ds.x_train[i % len(ds.x_train), :, :, 0]).save(folder / f"{i:06d}.png", compress_level=1)
        base = rss_anon_mib()
        t0 = time.perf_counter()
        with PeakSampler() as peak:
            data = alkit.load_dataset("folder", path=Path(tmp) / "pngs", test_ratio=0, progress=False)
            top, _ = streaming_query(margin, model, data.x_train, args.k, norm, cpu)
        seconds = time.perf_counter() - t0
        rows.append((f"{args.png_images:,} PNG files through the `folder` dataset", base, peak.peak, seconds, len(top)))
    table = ["| pool | RssAnon before (MiB) | peak RssAnon (MiB) | peak beyond start (MiB) | seconds | images/s |",
             "|---|---|---|---|---|---|"]
    n_images = [args.memmap_images, args.png_images]
    table += [f"| {name} | {b:,.0f} | {p:,.0f} | {p - b:,.0f} | {s:,.1f} | {n / s:,.0f} |"
              for (name, b, p, s, _), n in zip(rows, n_images)]
    body = f"""Margin scoring with `alkit.strategies.streaming.streaming_query` (batches of 256, chunks of 16,384,
running top-{args.k:,}), reference CNN at 28x28x1. Target: peak memory beyond the pool itself ≤ 1.5 GiB
(1,536 MiB). "RssAnon" excludes the memmapped file's page cache.

{chr(10).join(table)}
"""
    print(body)
    if not args.smoke:
        save_result("memory", "memory", "Memory while scoring large pools", markdown_blocks(body),
                    {"pools": {name: p - b for name, b, p, _, _ in rows}})


if __name__ == "__main__":
    main()
