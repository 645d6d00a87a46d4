"""MC-dropout samples (what ``bald`` and ``batchbald`` read): the cost of T samples in eval passes of the pool.

alkit runs a model's deterministic stem (``stem()``/``after_stem()``; for the reference CNN, its layers
before the first dropout) once per batch and only the rest once per sample. This times that against
whole forward passes per sample, in the same run with the turns interleaved, and checks that both give
bit-for-bit the same samples.

    python -m benchmarks.mc_dropout                  # 10,000 Fashion-MNIST images, T = 20
    python -m benchmarks.mc_dropout --device cuda
    python -m benchmarks.mc_dropout --smoke          # seconds, for CI (writes nothing)
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from torch import nn

import alkit
from alkit.loop.seeding import torch_generator
from alkit.models import ReferenceCNN
from alkit.models.device import resolve_device
from alkit.models.seeded import init_weights
from alkit.training.config import TrainConfig
from alkit.training.inference import mc_dropout_logits, predict_logits
from alkit.training.trainer import Normalizer
from benchmarks.common import device_key, save_result, table
from benchmarks.levers import levers_off, suffix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--turns", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, no BENCHMARKS.md update")
    args = ap.parse_args()
    if args.smoke:
        args.pool, args.samples, args.turns = 300, 2, 1
    dev = resolve_device(args.device)
    ds = alkit.load_dataset("fashion-mnist", progress=False)
    x, norm = ds.x_train[: args.pool], Normalizer(*ds.channel_stats())
    model = ReferenceCNN(ds.image_shape, 10).to(dev)
    init_weights(model, torch_generator(0, 0, "init"))
    batch = TrainConfig().eval_batch_for(dev, model, ds.image_shape)
    stem, whole = "MC-dropout, stem once per batch (alkit)", "MC-dropout, whole passes per sample"
    arms = {"eval pass (fp32, no dropout)": lambda: predict_logits(model, x, None, norm, dev, "fp32", batch),
            stem: lambda: mc_dropout_logits(
                model, x, None, norm, dev, args.samples, torch_generator(0, 1, "mc", dev), 1, batch),
            # nn.Sequential(model) hides stem()/after_stem(): whole passes per sample
            whole: lambda: mc_dropout_logits(
                nn.Sequential(model), x, None, norm, dev, args.samples, torch_generator(0, 1, "mc", dev), 1, batch)}
    before = stem + suffix(("masks",))

    def with_bernoulli_masks() -> np.ndarray:
        with levers_off(("masks",)):
            return arms[stem]()

    arms[before] = with_bernoulli_masks
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    outputs: dict[str, Any] = {}
    for _ in range(args.turns):
        for name, fn in arms.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            outputs[name] = fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - t0)
    best = {name: min(v) for name, v in seconds.items()}
    one_pass = best["eval pass (fp32, no dropout)"]
    identical = bool(np.array_equal(outputs[stem], outputs[whole]))
    rows = [[name, best[name], best[name] / one_pass,
             f"{args.pool * (args.samples if name != next(iter(arms)) else 1) / best[name]:,.0f}",
             " / ".join(f"{t:.1f}" for t in seconds[name])] for name in arms]
    blocks: list[str | dict[str, Any]] = [
        f"The reference CNN on the first {args.pool:,} Fashion-MNIST training images on {dev.type}, "
        f"T = {args.samples} samples, batch {batch}, best of {args.turns} interleaved turns. The stem runs "
        f"once per batch and the samples are {'bit-for-bit identical' if identical else 'NOT identical'} "
        "to whole passes per sample.",
        table(["variant", "seconds (best)", "in eval passes", "image-samples/s", "every turn (s)"], rows,
              [None, ".2f", ".1f", None, None]),
        f"Stem once per batch vs whole passes: **{best[whole] / best[stem]:.2f}x** faster. alkit's dropout masks "
        f"(float32 uniforms against the keep rate) vs `bernoulli_` masks: {best[before] / best[stem]:.2f}x."]
    print("\n".join(b if isinstance(b, str) else str(b) for b in blocks))
    if not identical:
        raise SystemExit("the stem split changed the MC-dropout samples")
    if not args.smoke:
        metrics = {"speedup": best[whole] / best[stem], "masks_gain": best[before] / best[stem],
                   "identical": identical, "samples": args.samples,
                   "passes": {"stem": best[stem] / one_pass, "whole": best[whole] / one_pass}}
        save_result(device_key("mc-dropout", dev), "mc_dropout", "MC-dropout samples: the stem once per batch",
                    blocks, metrics)


if __name__ == "__main__":
    main()
