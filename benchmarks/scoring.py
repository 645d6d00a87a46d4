"""Pool-scoring throughput: alkit's scoring path vs a plain eager-fp32 ``model(x)`` loop.

Both score the same images with the same trained weights in the same process; each
optimisation is measured on its own, and the fast path's top-1000 selections are
compared with the fp32 baseline's (selection fidelity) for margin and entropy.

    python -m benchmarks.scoring                 # 60,000-image Fashion-MNIST pool
    python -m benchmarks.scoring --smoke         # a few seconds, for CI (writes nothing)
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import alkit
from alkit.loop.seeding import numpy_rng, torch_generator
from alkit.models import ReferenceCNN
from alkit.models.seeded import init_weights
from alkit.strategies import PoolPrediction, entropy_scores, margin_scores, top_k
from alkit.training.config import TrainConfig
from alkit.training.trainer import Normalizer, fit, predict_logits
from benchmarks.common import best_of, command, commit, machine, write_section


def baseline_logits(model: torch.nn.Module, x: np.ndarray, norm: Normalizer, batch: int = 128) -> np.ndarray:
    """What a user writes: eval mode, no_grad, NCHW float32, batch 128, one batch at a time."""
    model.eval()
    out = []
    mean = torch.tensor(norm.mean).view(1, -1, 1, 1)
    std = torch.tensor(norm.std).view(1, -1, 1, 1)
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i:i + batch]).permute(0, 3, 1, 2).float() / 255.0
            out.append(model((xb - mean) / std).numpy())
    return np.concatenate(out)


def int8_static(model: torch.nn.Module, calibration: torch.Tensor) -> torch.nn.Module:
    """Post-training static int8 quantisation (FX graph mode, x86 backend), calibrated on ``calibration``."""
    import copy

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"),
                          example_inputs=(calibration[:8],))
    with torch.inference_mode():
        for i in range(0, len(calibration), 250):
            prepared(calibration[i:i + 250])
    return convert_fx(prepared)


def macs_per_image(model: torch.nn.Module, shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass through the convolutions and dense layers."""
    macs = []

    def hook(mod: torch.nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        if isinstance(mod, torch.nn.Conv2d):
            macs.append(out[0].numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups)
        elif isinstance(mod, torch.nn.Linear):
            macs.append(mod.in_features * mod.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, shape[2], *shape[:2]))
    for h in handles:
        h.remove()
    return sum(macs)


def select(logits: np.ndarray, k: int, strategy: str) -> np.ndarray:
    pred = PoolPrediction(logits)
    scores = margin_scores(pred.probs) if strategy == "margin" else entropy_scores(log_probs=pred.log_probs)
    return top_k(scores, k, np.random.default_rng(0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=60_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, no BENCHMARKS.md update")
    args = ap.parse_args()
    if args.smoke:
        args.pool, args.repeats = 2_000, 1
    ds = alkit.load_dataset("fashion-mnist", progress=False)
    x = ds.x_train[: args.pool]
    norm = Normalizer(*ds.channel_stats())
    model = ReferenceCNN(ds.image_shape, 10)
    init_weights(model, torch_generator(0, 0, "init"))
    idx = numpy_rng(0, 0, "initial").choice(len(ds.y_train), 1000, replace=False)
    fit(model, ds.x_train, ds.y_train, idx, TrainConfig(epochs=1 if args.smoke else 5), norm, torch.device("cpu"),
        "fp32", numpy_rng(0, 0, "b"), torch_generator(0, 0, "d"))
    cpu = torch.device("cpu")
    k = min(1000, args.pool // 2)
    def jit_frozen() -> torch.nn.Module:
        with torch.inference_mode():
            return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model.eval(), torch.zeros(
                256, ds.image_shape[2], *ds.image_shape[:2]))))

    t0 = time.perf_counter()
    frozen = jit_frozen()
    predict_logits(frozen, x[:256], None, norm, cpu, "fp32", 256)
    freeze_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    quantized = int8_static(model, norm(ds.x_train[np.sort(idx)], cpu))
    predict_logits(quantized, x[:256], None, norm, cpu, "fp32", 256)
    quantize_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = torch.compile(model)
    predict_logits(compiled, x[:256], None, norm, cpu, "fp32", 256)
    compile_seconds = time.perf_counter() - t0
    variants = {
        "baseline: eager fp32 model(x), batch 128": lambda: baseline_logits(model, x, norm, 128),
        "baseline loop, batch 1024": lambda: baseline_logits(model, x, norm, 1024),
        "alkit predict_logits (default path: inference_mode, batch 256)":
            lambda: predict_logits(model, x, None, norm, cpu, "fp32", 256),
        "alkit predict_logits, batch 1024": lambda: predict_logits(model, x, None, norm, cpu, "fp32", 1024),
        "alkit predict_logits, channels-last model": lambda: predict_logits(
            model.to(memory_format=torch.channels_last), x, None, norm, cpu, "fp32", 256),
        "TorchScript frozen + optimize_for_inference, batch 256":
            lambda: predict_logits(frozen, x, None, norm, cpu, "fp32", 256),
        "torch.compile (inductor), batch 256": lambda: predict_logits(compiled, x, None, norm, cpu, "fp32", 256),
        "int8 static quantisation (x86 backend), batch 256":
            lambda: predict_logits(quantized, x, None, norm, cpu, "fp32", 256),
        "alkit predict_logits, bf16 autocast": lambda: predict_logits(model, x[: max(args.pool // 10, 500)], None,
                                                                      norm, cpu, "bf16", 1024),
    }
    rows, outputs = [], {}
    for name, fn in variants.items():
        seconds, outputs[name] = best_of(fn, args.repeats if "bf16" not in name else 1)
        n = max(args.pool // 10, 500) if "bf16" in name else args.pool
        rows.append((name, n / seconds))
    base_rate = rows[0][1]
    ref = outputs["baseline: eager fp32 model(x), batch 128"]
    t0 = time.perf_counter()
    ref_sel = {s: set(select(ref, k, s).tolist()) for s in ("margin", "entropy")}
    select_seconds = (time.perf_counter() - t0) / 2
    flop = 2 * macs_per_image(model, ds.image_shape)

    def overlap(name: str, strategy: str) -> str:
        if "bf16" in name:
            return "–"
        return f"{len(ref_sel[strategy] & set(select(outputs[name], k, strategy).tolist())) / k:.1%}"

    table = [f"| variant | images/s | vs baseline | GFLOP/s | top-{k} overlap, margin | entropy |",
             "|---|---|---|---|---|---|"]
    table += [f"| {name} | {rate:,.0f} | {rate / base_rate:.2f}x | {rate * flop / 1e9:.1f} | "
              f"{overlap(name, 'margin')} | {overlap(name, 'entropy')} |" for name, rate in rows]
    body = f"""## Pool scoring throughput

Command: `{command()}` · commit `{commit()}` · {time.strftime('%Y-%m-%d')}
Machine: {machine()}

Pool: the first {args.pool:,} Fashion-MNIST training images; the reference CNN trained 5 epochs on 1,000
labels; best of {args.repeats} runs per variant (bf16: one run on a tenth of the pool). Softmax +
scoring + top-{k} over the pool takes {select_seconds * 1000:.0f} ms per strategy.

{chr(10).join(table)}

GFLOP/s counts {flop / 1e6:.1f} MFLOP per image (2 x {flop // 2:,} multiply-accumulates in the convolutions and
dense layers). The overlap columns compare each variant's top-{k} selection with the eager fp32 baseline's
(selection fidelity; bf16 ran on a different subset).

One-off preparation per trained model: TorchScript freezing {freeze_seconds:.1f} s, int8 quantisation
{quantize_seconds:.1f} s (calibrated on the 1,000 labeled images), torch.compile {compile_seconds:.1f} s
(first call, including compilation).
"""
    print(body)
    if not args.smoke:
        write_section("scoring", body)


if __name__ == "__main__":
    main()
