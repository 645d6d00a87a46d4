"""Training-step speed: alkit's ``fit`` per precision, memory layout and batch size, and with each of its speed
levers (``benchmarks/levers.py``) turned off, against a plain step.

Every variant trains the reference CNN on the same random Fashion-MNIST labels through alkit's own ``fit``
(uint8 batches standardised on the fly, seeded dropout, the cosine schedule), with the step floor and
BatchNorm re-estimation off so that only optimizer steps are timed. The variants run in turns, round after
round, and each keeps its fastest round, so load from elsewhere on a shared machine falls on all of them
alike. The "plain" row is what a user writes: the labeled images converted to a float tensor once, then
``model(x[b])``, cross-entropy, Adam, in fp32 and NCHW layout (the end-to-end benchmark's loop).

    python -m benchmarks.training_step                          # this CPU
    ONEDNN_MAX_CPU_ISA=AVX2 python -m benchmarks.training_step  # oneDNN kept to AVX2 kernels, as on an AVX2 CPU
    python -m benchmarks.training_step --device cuda
    python -m benchmarks.training_step --smoke                  # seconds, for CI (writes nothing)

On an AVX512-BF16 CPU capped at AVX2, alkit's default is fp32 (`cpu_has_native_bf16` reads the cap), as on a
real AVX2-only CPU.

bf16 rows run only where bf16 is native (a GPU, or a CPU with AVX512-BF16 or AMX and no ISA cap below it): an
emulated bf16 step is several times slower than fp32, and alkit never trains in it by default there.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

import alkit
from alkit.loop.seeding import numpy_rng, torch_generator
from alkit.models import ReferenceCNN
from alkit.models.device import cpu_has_native_bf16, onednn_isa_cap, resolve_device, resolve_precision
from alkit.models.seeded import init_weights
from alkit.training.config import TrainConfig
from alkit.training.trainer import Normalizer, fit, steps_per_epoch, training_epochs
from benchmarks.common import cap_words, device_key, save_result, table
from benchmarks.levers import LEVERS, levers_off, suffix

PLAIN = "plain loop step (fp32, NCHW, float images prepared once)"


def plain_steps(ds, labeled: np.ndarray, norm: Normalizer, device: torch.device, batch: int, epochs: int,
                seed: int) -> int:
    """A hand-written fp32 training loop over ``labeled``; returns the number of steps taken."""
    model = ReferenceCNN(ds.image_shape, ds.num_classes).to(device)
    init_weights(model, torch_generator(seed, 0, "init"))
    x = norm(ds.x_train[labeled], device)
    y = torch.as_tensor(ds.y_train[labeled], device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng, steps = np.random.default_rng(seed), 0
    model.train()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(labeled))).to(device)
        for i in range(0, len(order) - 1, batch):
            b = order[i:i + batch]
            loss = nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps


LAYOUTS = {"channels-last": True, "NCHW": False}


def default_layout(device: torch.device) -> str:
    """The batch layout ``fit`` trains on by default on ``device``."""
    return "channels-last" if device.type == "cpu" else "NCHW"


def alkit_steps(ds, labeled: np.ndarray, norm: Normalizer, device: torch.device, cfg: TrainConfig,
                precision: str, layout: str, seed: int, off: tuple[str, ...] = ()) -> int:
    """alkit's ``fit``, with the levers named in ``off`` turned back to what alkit did before them."""
    model = ReferenceCNN(ds.image_shape, ds.num_classes)
    init_weights(model, torch_generator(seed, 0, "init"))
    with levers_off(off):
        fit(model, ds.x_train, ds.y_train, labeled, cfg, norm, device, precision, numpy_rng(seed, 0, "batches"),
            torch_generator(seed, 0, "dropout", device), channels_last=LAYOUTS[layout])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return training_epochs(len(labeled), cfg) * steps_per_epoch(len(labeled), cfg.batch_size)


def variants(device: torch.device, native_bf16: bool) -> dict[str, tuple[str, str, int, tuple[str, ...]]]:
    """Row name -> (precision, batch layout, batch, levers turned off)."""
    out = {}
    precisions = ("fp32", "bf16") if native_bf16 else ("fp32",)
    layout = default_layout(device)
    for precision in precisions:
        for each in LAYOUTS:
            out[f"alkit fit, {precision}, {each} batches, batch 64"] = (precision, each, 64, ())
    for precision in precisions:
        for off in [(lever,) for lever in LEVERS] + [tuple(LEVERS)]:
            name = f"alkit fit, {precision}, {layout} batches, batch 64" + suffix(off)
            out[name] = (precision, layout, 64, off)
    for precision in precisions:
        out[f"alkit fit, {precision}, {layout} batches, batch 128"] = (precision, layout, 128, ())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per timed fit")
    ap.add_argument("--rounds", type=int, default=3, help="turns: every variant runs once per turn")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.labels, args.epochs, args.rounds = 200, 1, 1
    device = resolve_device(args.device)
    isa_cap = onednn_isa_cap()
    native_bf16 = device.type == "cuda" or cpu_has_native_bf16()
    ds = alkit.load_dataset("fashion-mnist", progress=False)
    norm = Normalizer(*ds.channel_stats())
    labeled = np.sort(numpy_rng(0, 0, "initial").choice(len(ds.y_train), args.labels, replace=False))
    rows = variants(device, native_bf16)
    best: dict[str, float] = {}
    for turn in range(args.rounds):
        order = [PLAIN, *rows] if turn % 2 == 0 else [*reversed(rows), PLAIN]
        for name in order:
            t0 = time.perf_counter()
            if name == PLAIN:
                steps = plain_steps(ds, labeled, norm, device, 64, args.epochs, turn)
            else:
                precision, layout, batch, off = rows[name]
                cfg = TrainConfig(epochs=args.epochs, batch_size=batch, min_steps=0, bn_recalibration=False).validate()
                steps = alkit_steps(ds, labeled, norm, device, cfg, precision, layout, turn, off)
            per_step = (time.perf_counter() - t0) / steps
            batch = 64 if name == PLAIN else rows[name][2]
            best[name] = min(best.get(name, float("inf")), per_step / batch)  # seconds per image
            print(f"turn {turn}: {name}: {per_step * 1000:.1f} ms/step", flush=True)
    layout = default_layout(device)
    default = f"alkit fit, {resolve_precision('auto', device) if native_bf16 else 'fp32'}, {layout} batches, batch 64"
    base = best[f"alkit fit, fp32, {layout} batches, batch 64"]
    cells = [[name, 1 / best[name], best[name] * (64 if name == PLAIN else rows[name][2]) * 1000,
              base / best[name], best[PLAIN] / best[name]] for name in [PLAIN, *rows]]
    cap = f", oneDNN capped at {isa_cap} (`ONEDNN_MAX_CPU_ISA`)" if isa_cap else ""
    text = [f"The reference CNN trained on {args.labels:,} random Fashion-MNIST labels, {args.epochs} epochs per fit, "
            f"on {device}{cap}; each variant's fastest of {args.rounds} turns (variants interleaved). "
            "Only optimizer steps are timed: the step floor and BatchNorm re-estimation are off. "
            f"alkit's default here: {default.removeprefix('alkit fit, ')}.",
            table(["variant", "images/s", "ms per step", f"vs alkit fp32 {layout}", "vs plain loop"], cells,
                  [None, ",.0f", ".1f", ".2f", ".2f"])]
    if not native_bf16:
        text.append("No bf16 rows: bf16 is emulated here (no AVX512-BF16/AMX, or oneDNN capped below it).")
    print(text[0])
    for c in cells:
        print(c)
    metrics = {"device": device.type, "isa_cap": isa_cap, "default": default,
               "default_vs_plain": best[PLAIN] / best[default], "default_vs_fp32": base / best[default],
               "lever_gains": {lever: best[default + suffix((lever,))] / best[default] for lever in LEVERS},
               "gain_over_before": best[default + suffix(tuple(LEVERS))] / best[default],
               "rows": {name: {"images_per_s": 1 / best[name], "vs_plain": best[PLAIN] / best[name]}
                        for name in [PLAIN, *rows]}}
    if not args.smoke:
        key = device_key("training-step", device)
        title = (f"Training step on {'the CPU' if device.type == 'cpu' else device.type.upper()}"
                 + cap_words())
        save_result(key, "training_step", title, text, metrics)


if __name__ == "__main__":
    main()
