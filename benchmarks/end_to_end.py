"""End to end: one standard active-learning run with alkit vs a plain eager-fp32 loop.

The standard run: Fashion-MNIST, 1,000 random initial labels, +1,000 per round up to 10,000,
one strategy (margin), one seed (``--seeds`` runs several), the reference CNN with the default
recipe (Adam 1e-3 with a cosine schedule, 10 epochs, batch 64). The plain loop is what a user writes
by hand with that recipe, retraining from scratch each round: the pool converted to float once,
``model(x)`` in batches of 128 under ``no_grad``, softmax, margin and a sort. Both report
wall time split into train / score / select, and the test macro-F1 at every budget. Each round the
plain loop's pool is also scored by alkit's ``predict_logits`` on the same model, which separates the
cost of alkit's scoring code from differences between the two runs' models and machine load.

    python -m benchmarks.end_to_end --seeds 0,1,2   # alkit's default path, from scratch, in fp32; plain loop
    python -m benchmarks.end_to_end --arms default --device cuda --precision bf16   # alkit in bf16 on a GPU
    python -m benchmarks.end_to_end --smoke         # seconds, for CI (writes nothing)

``--arms`` lists alkit's runs: ``default`` (alkit's defaults; ``--precision``, auto unless given),
``scratch`` (the default path retraining every round from fresh weights, ``--no-warm-start``), ``fp32``
(scratch in fp32: the plain loop's recipe), and ``warm-N`` (every round after the first continues
from the last model for N epochs, ``--warm-epochs N``). ``--device`` sets every loop's device; the plain
loop always runs in fp32.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import alkit
from alkit.metrics import classification_metrics
from alkit.models import ReferenceCNN
from alkit.models.device import resolve_device, resolve_precision
from alkit.training.inference import predict_logits
from alkit.training.config import TrainConfig
from alkit.training.trainer import Normalizer
from benchmarks.common import cap_words, device_key, markdown_blocks, save_result


def plain_loop(ds, initial: int, query: int, rounds: int, epochs: int, batch: int, lr: float, seed: int,
               candidates: int | None = None, device: torch.device = torch.device("cpu")) -> dict[str, object]:
    """A hand-written pool-based loop with margin sampling; returns timings and F1 per budget."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean = ds.x_train.mean() / 255.0
    std = ds.x_train.std() / 255.0
    x = ((torch.from_numpy(ds.x_train).to(device).permute(0, 3, 1, 2).float() / 255.0) - mean) / std
    x_test = ((torch.from_numpy(ds.x_test).to(device).permute(0, 3, 1, 2).float() / 255.0) - mean) / std
    y = torch.from_numpy(ds.y_train).to(device)
    labeled = rng.choice(len(y), initial, replace=False)
    times = {"train": 0.0, "score": 0.0, "select": 0.0, "score_alkit_code": 0.0}
    norm = Normalizer(*ds.channel_stats())
    f1 = {}
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        model = ReferenceCNN(ds.image_shape, ds.num_classes).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * (len(labeled) // batch + (len(labeled) % batch > 1))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        model.train()
        for _ in range(epochs):
            order = rng.permutation(labeled)
            for i in range(0, len(order), batch):
                b = torch.from_numpy(order[i:i + batch]).to(device)
                if len(b) < 2:
                    continue
                loss = nn.functional.cross_entropy(model(x[b]), y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times["train"] += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(x_test[i:i + 128]) for i in range(0, len(x_test), 128)]).argmax(1).cpu().numpy()
        f1[len(labeled)] = classification_metrics(ds.y_test, pred, ds.num_classes)["f1_macro"]
        if r == rounds:
            break
        t0 = time.perf_counter()
        pool = np.setdiff1d(np.arange(len(y)), labeled)
        if candidates:
            pool = rng.choice(pool, min(candidates, len(pool)), replace=False)
        with torch.no_grad():
            pool_t = torch.from_numpy(pool).to(device)
            logits = torch.cat([model(x[pool_t[i:i + 128]]) for i in range(0, len(pool), 128)]).cpu()
        times["score"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        predict_logits(model, ds.x_train, pool, norm, device, "fp32")
        times["score_alkit_code"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        top2 = torch.softmax(logits, 1).topk(2, 1).values
        chosen = pool[np.argsort((top2[:, 0] - top2[:, 1]).numpy(), kind="stable")[:query]]
        labeled = np.concatenate([labeled, chosen])
        times["select"] += time.perf_counter() - t0
    return {"times": times, "f1": f1}


def arm_options(arm: str, precision: str) -> dict[str, object]:
    """``alkit.run`` options of an alkit arm: ``default``, ``scratch``, ``fp32`` or ``warm-N``."""
    if arm == "default":
        return {"precision": precision}
    if arm == "scratch":
        return {"precision": precision, "warm_start": False}
    if arm == "fp32":
        return {"precision": "fp32", "warm_start": False}
    if arm.startswith("warm-") and arm[5:].isdigit() and int(arm[5:]) > 0:
        return {"precision": precision, "warm_start": True, "warm_epochs": int(arm[5:])}
    raise SystemExit(f"--arms: '{arm}' is not default, scratch, fp32 or warm-N")


def is_default_path(options: dict[str, object]) -> bool:
    """True when an arm's ``alkit.run`` options are alkit's defaults for the standard run (10 epochs)."""
    defaults = TrainConfig(epochs=10)
    warm = bool(options.get("warm_start", defaults.warm_start))
    return (set(options) <= {"precision", "warm_start", "warm_epochs"} and options.get("precision", "auto") == "auto"
            and warm == defaults.warm_start
            and (not warm or options.get("warm_epochs") in (None, defaults.warm_round_epochs())))


def default_arm(metrics: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The arm of an end-to-end result that ran today's default path, by its recorded options (results
    written before arms recorded options ran an earlier default: none of theirs)."""
    for name, arm in metrics.get("arms", {}).items():
        if "options" in arm and is_default_path(arm["options"]):
            return name, arm
    return None


def alkit_loop(initial: int, query: int, rounds: int, epochs: int, batch: int, lr: float, seed: int,
               candidates: int | None, out: Path, device: str = "cpu", **options: object) -> dict[str, object]:
    result = alkit.run("fashion-mnist", ["margin"], [seed], initial=initial, query=query, rounds=rounds,
                       candidates=candidates, epochs=epochs, batch_size=batch, lr=lr, full_data="none",
                       device=device, out=out, progress=False, report=False, **options)
    rows = [r for r in result.rows if r["strategy"] == "margin"]
    times = {k: sum(float(r[f"{k}_seconds"] or 0.0) for r in rows) for k in ("train", "score", "select")}
    return {"times": times, "f1": {int(r["n_labeled"]): float(r["f1_macro"]) for r in rows}}


def _mean_curve(curves: list[dict[int, float]]) -> dict[int, float]:
    return {n: float(np.mean([c[n] for c in curves])) for n in curves[0]}


def _shortfall(plain: dict[int, float], arm: dict[int, float]) -> float:
    """The largest F1 gap under the plain loop at any budget, in points (> 0 means under)."""
    return max(plain[n] - arm[n] for n in plain) * 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds; each runs every arm and the plain loop "
                                                 "(default: 0)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda, for both loops (default: cpu)")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="alkit's precision (default: auto, alkit's default path); the plain loop is always fp32")
    ap.add_argument("--arms", default="default,scratch,fp32",
                    help="alkit's runs, each against the same plain loop (default: default,scratch,fp32)")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    device = resolve_device(args.device)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = {f"alkit {a}": arm_options(a, args.precision) for a in args.arms.split(",")}
    initial, query, rounds, epochs, batch, lr, candidates = 1000, 1000, 9, 10, 64, 1e-3, None
    ds = alkit.load_dataset("fashion-mnist", progress=False)
    if args.smoke:
        initial, query, rounds, epochs, candidates = 60, 60, 1, 1, 600
        ds.x_test, ds.y_test = ds.x_test[:500], ds.y_test[:500]
        for options in arms.values():
            options["min_steps"] = 0
    per_seed: dict[str, list[dict[str, object]]] = {name: [] for name in [*arms, "plain"]}
    for seed in seeds:
        for name, options in arms.items():
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                r = alkit_loop(initial, query, rounds, epochs, batch, lr, seed, candidates, Path(tmp) / "run",
                               str(device), **options)
                r["wall"] = time.perf_counter() - t0
            per_seed[name].append(r)
        t0 = time.perf_counter()
        r = plain_loop(ds, initial, query, rounds, epochs, batch, lr, seed, candidates, device)
        r["wall"] = time.perf_counter() - t0 - r["times"]["score_alkit_code"]
        per_seed["plain"].append(r)
    final = initial + rounds * query
    plain_runs = per_seed["plain"]
    plain_wall = sum(r["wall"] for r in plain_runs)
    plain_f1 = _mean_curve([r["f1"] for r in plain_runs])
    arm_metrics = {}
    table = ["| loop | wall s | vs plain | train s | score s | select s | F1 @final | largest F1 shortfall vs plain, "
             "points | worst seed's shortfall | F1 at each budget |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in per_seed.items():
        wall = sum(r["wall"] for r in runs)
        t = {k: sum(r["times"][k] for r in runs) for k in ("train", "score", "select")}
        f1 = _mean_curve([r["f1"] for r in runs])
        curve = ", ".join(f"{v:.3f}" for _, v in sorted(f1.items()))
        shortfall = _shortfall(plain_f1, f1)
        worst = max(_shortfall(p["f1"], r["f1"]) for p, r in zip(plain_runs, runs))
        if name != "plain":
            arm_metrics[name] = {"wall_s": round(wall, 1), "largest_f1_shortfall_pts": round(shortfall, 1),
                                 "worst_seed_shortfall_pts": round(worst, 1), "options": arms[name],
                                 "f1": {str(n): round(v, 4) for n, v in sorted(f1.items())},
                                 "f1_per_seed": [{str(n): round(v, 4) for n, v in sorted(r["f1"].items())}
                                                 for r in runs]}
        table.append(f"| {name} | {wall:.0f} | {wall / plain_wall:.2f}x | {t['train']:.0f} | "
                     f"{t['score']:.0f} | {t['select']:.1f} | {f1.get(final, float('nan')):.4f} | "
                     f"{'–' if name == 'plain' else f'{shortfall:+.1f}'} | "
                     f"{'–' if name == 'plain' else f'{worst:+.1f}'} | {curve} |")
    used = resolve_precision(args.precision, device)
    score_own = sum(r["times"]["score"] for r in plain_runs)
    score_alkit = sum(r["times"]["score_alkit_code"] for r in plain_runs)
    seed_words = (f"seed {seeds[0]}" if len(seeds) == 1
                  else f"seeds {', '.join(map(str, seeds))} (times summed, F1 averaged)")
    warm_epochs = TrainConfig(epochs=epochs).warm_round_epochs()
    body = f"""Fashion-MNIST, margin, {seed_words}, {initial:,} → {final:,} labels by {query:,}, {epochs} epochs,
batch {batch}, Adam {lr:g} with a cosine schedule, the whole unlabeled pool scored each round. alkit's wall time
includes loading the data and writing the run folder; the plain loop's starts from the loaded arrays. Device:
{device}; alkit's default arm trains in {used} (`--precision {args.precision}`) and continues each round after
the first from the last round's model (warm start, {warm_epochs} epochs); `scratch` retrains every round from
fresh weights (`--no-warm-start`), `fp32` does so in fp32, and `warm-N` arms warm-start with N epochs; the
plain loop retrains from scratch in fp32.
The target: wall time at most 0.5x the plain loop's, F1 at most 0.3 points under it at every budget
(shortfall > 0 means under; with several seeds, the seed-mean curves are compared, and the worst single
seed's shortfall is shown beside it).

{chr(10).join(table)}

Scoring code on the same models: the plain loop's pools took {score_own:.0f} s with its own
`model(x)` loop and {score_alkit:.0f} s with alkit's `predict_logits` (same models, same rounds,
not counted in the plain loop's wall time).
"""
    print(body)
    metrics: dict[str, object] = {"device": device.type, "precision": used, "rounds": (rounds + 1) * len(seeds),
                                  "seeds": seeds, "plain_wall_s": round(plain_wall, 1), "arms": arm_metrics}
    found = default_arm(metrics) if used == resolve_precision("auto", device) else None
    if found:
        metrics.update(default_path=True, default_arm=found[0], alkit_wall_s=found[1]["wall_s"],
                       largest_f1_shortfall_pts=found[1]["largest_f1_shortfall_pts"])
    if not args.smoke:
        save_result(device_key("end-to-end", device) + f"-{used}", "end_to_end",
                    f"End to end: the standard run on {device.type.upper()}, alkit in {used}{cap_words()}",
                    markdown_blocks(body), metrics)


if __name__ == "__main__":
    main()
