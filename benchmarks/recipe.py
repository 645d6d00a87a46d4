"""Training recipe: test macro-F1 of the reference CNN trained on a fixed random labeled set.

The label-efficiency targets depend on how well a round's model is trained, so each recipe
option is measured on its own: the same labeled images (a random draw of --labels from the
training set), the same initial weights and batch order, and one change at a time. A variant
is ``epochs:augment:schedule:batch[:lr[:weight_decay[:init]]]``, e.g. ``10:no:cosine:64:0.002`` or
``10:no:cosine:64:0.001:0:glorot``, followed by any other training option as ``name=value``
(``10:aug:cosine:64:min_steps=1000``). With ``--seeds`` each variant trains once per seed on that seed's
labeled set and the table gives the mean and the seed-paired difference to the first variant.

    python -m benchmarks.recipe --dataset fashion-mnist --labels 5000
    python -m benchmarks.recipe --dataset fashion-mnist --labels 5000 --seed 1 --tag init \
        --variants 10:no:cosine:64,10:no:cosine:64:0.001:0:glorot
    python -m benchmarks.recipe --study low-budget --dataset fashion-mnist --seeds 0,1,2
    python -m benchmarks.recipe --study low-budget --min-steps 500 --augment no,yes --tag augment
    python -m benchmarks.recipe --labels 100 --seeds 0,1,2,3,4 --precision auto --tag levers \
        --variants 10:no:cosine:64,10:no:cosine:64:0.001:0.0005,10:aug:cosine:64:min_steps=1000
    python -m benchmarks.recipe --labels 100 --seeds 0,1,2,3,4 --precision auto --tag pseudo-labels \
        --variants 10:no:cosine:64,10:no:cosine:64:pseudo_labels=1000
    python -m benchmarks.recipe --smoke        # seconds, for CI (writes nothing)

``--study low-budget`` measures the training-length rule at 20 to 2,000 labels: each ``--min-steps``
value on the same labeled set, initial weights and batch order, in the engine's default precision, and
each trained model evaluated three ways: as trained, and after re-estimating BatchNorm's statistics
on the labeled images or on 2,000 unlabeled pool images. Finished cells are kept in
``runs/recipe-low-budget-<dataset>.jsonl``, so an interrupted study resumes.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import alkit
from alkit.errors import ConfigError
from alkit.loop.seeding import numpy_rng, torch_generator
from alkit.metrics import classification_metrics
from alkit.models import ReferenceCNN
from alkit.models.device import resolve_precision
from alkit.models.seeded import init_weights
from alkit.training.batchnorm import recalibrate_batchnorm
from alkit.training.config import TrainConfig
from alkit.training.inference import predict_logits
from alkit.training.self_training import fit_self_trained
from alkit.training.trainer import Normalizer, steps_per_epoch, training_epochs
from benchmarks.common import RESULTS, markdown_blocks, save_result, table

CPU = torch.device("cpu")
VARIANTS = ("10:no:constant:128", "10:no:cosine:128", "10:no:constant:64", "10:no:cosine:64",
            "10:no:cosine:64:0.001:0:glorot", "10:no:cosine:64:0.002", "10:aug:cosine:64", "20:aug:cosine:64")


def section_name(dataset: str, labels: int, seed: int, tag: str = "") -> str:
    """The BENCHMARKS.md section of one study: ``recipe-<dataset>-<labels>[-<tag>][-seed<seed>]``."""
    return f"recipe-{dataset}-{labels}" + (f"-{tag}" if tag else "") + (f"-seed{seed}" if seed else "")


def parse_variant(text: str) -> TrainConfig:
    parts = [p for p in text.split(":") if "=" not in p]
    options = dict(p.split("=", 1) for p in text.split(":") if "=" in p)
    if len(parts) < 4:
        raise SystemExit(f"variant '{text}': expected epochs:augment:schedule:batch[:lr[:weight_decay[:init]]]"
                         "[:name=value...]")
    lr = float(parts[4]) if len(parts) > 4 else 1e-3
    wd = float(parts[5]) if len(parts) > 5 else 0.0
    init = parts[6] if len(parts) > 6 else "torch"
    try:
        extra = {k: json.loads(v) for k, v in options.items()}
        return TrainConfig(epochs=int(parts[0]), augment=parts[1] == "aug", lr_schedule=parts[2],
                           batch_size=int(parts[3]), lr=lr, weight_decay=wd, init=init, **extra).validate()
    except (TypeError, ValueError, ConfigError) as exc:
        raise SystemExit(f"variant '{text}': {exc}") from None


LOW_BUDGET_LABELS = (20, 50, 100, 200, 500, 1000, 2000)
BN_MODES = ("as trained", "BN on labeled", "BN on pool")


def _evaluate(model, ds, norm: Normalizer) -> tuple[float, float]:
    pred = predict_logits(model, ds.x_test, None, norm, CPU, "fp32").argmax(1)
    met = classification_metrics(ds.y_test, pred, ds.num_classes)
    return met["f1_macro"], met["accuracy"]


def _trained(ds, norm: Normalizer, labeled: np.ndarray, cfg: TrainConfig, seed: int, precision: str
             ) -> tuple[ReferenceCNN, float]:
    """The reference CNN trained with ``cfg`` on ``labeled`` (seed's initial weights and batch order), as the engine
    trains a round (with self-training on the rest of the training set when ``cfg.pseudo_labels``), and the
    training's seconds."""
    model = ReferenceCNN(ds.image_shape, ds.num_classes)
    init_weights(model, torch_generator(seed, 0, "init"), cfg.init)
    t0 = time.perf_counter()
    known = np.full(len(ds.y_train), -1, dtype=np.int64)
    known[labeled] = ds.y_train[labeled]
    fit_self_trained(model, ds.x_train, known, labeled, np.flatnonzero(known < 0), cfg, norm, CPU, precision,
                     numpy_rng(seed, 0, "batches"), torch_generator(seed, 0, "dropout"))
    return model, time.perf_counter() - t0


def low_budget_cell(ds, norm: Normalizer, labels: int, seed: int, min_steps: int, augment: bool = False) -> dict:
    """Train once on ``labels`` random labels with ``min_steps`` (and ``augment``); F1 as trained and after BN
    re-estimation."""
    cfg = TrainConfig(min_steps=min_steps, augment=augment, bn_recalibration=False).validate()  # BN: below, per mode
    rng = numpy_rng(seed, 0, "initial")
    order = rng.permutation(len(ds.y_train))
    labeled, pool_sample = np.sort(order[:labels]), np.sort(order[labels:labels + 2000])
    precision = resolve_precision(cfg.precision, CPU)
    model, seconds = _trained(ds, norm, labeled, cfg, seed, precision)
    out = {"labels": labels, "seed": seed, "min_steps": min_steps, "augment": augment, "precision": precision,
           "train_s": seconds,
           "steps": training_epochs(labels, cfg) * steps_per_epoch(labels, cfg.batch_size)}
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    for mode, images in zip(BN_MODES, (None, labeled, pool_sample)):
        model.load_state_dict(trained)
        if images is not None:
            recalibrate_batchnorm(model, ds.x_train, images, norm, CPU)
        out[mode] = _evaluate(model, ds, norm)
    return out


def low_budget_study(args: argparse.Namespace) -> None:
    ds = alkit.load_dataset(args.dataset, progress=False)
    labels, steps = LOW_BUDGET_LABELS, [int(s) for s in args.min_steps.split(",")]
    seeds = [int(s) for s in (args.seeds or "0,1,2").split(",")]
    augments = [a == "yes" for a in args.augment.split(",")]
    key = f"recipe-low-budget-{args.dataset}" + (f"-{args.tag}" if args.tag else "")
    work = Path(f"runs/{key}.jsonl")
    if args.smoke:
        scratch = tempfile.TemporaryDirectory(prefix="alkit-recipe-smoke-")  # removed when the study returns
        labels, steps, seeds, work = (20,), [0, 20], [0], Path(scratch.name) / "cells.jsonl"
        augments = [False, True]
        ds.x_test, ds.y_test = ds.x_test[:500], ds.y_test[:500]
    norm = Normalizer(*ds.channel_stats())
    work.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in work.read_text().splitlines()] if work.exists() else []
    for c in done:
        c.setdefault("augment", False)  # cells stored before augmentation was a dimension of the study
    have = {(c["labels"], c["seed"], c["min_steps"], c["augment"]) for c in done}
    for seed in seeds:
        for n in labels:
            for m in steps:
                for aug in augments:
                    if (n, seed, m, aug) in have:
                        continue
                    cell = low_budget_cell(ds, norm, n, seed, m, aug)
                    done.append(cell)
                    with work.open("a") as f:
                        f.write(json.dumps(cell) + "\n")
                    print(f"{args.dataset} {n} labels seed {seed} min_steps {m} augment {aug}: "
                          + ", ".join(f"{k} {cell[k][0]:.4f}" for k in BN_MODES) + f" ({cell['train_s']:.0f} s)",
                          flush=True)
    cells = [c for c in done if c["labels"] in labels and c["min_steps"] in steps and c["seed"] in seeds
             and c["augment"] in augments]
    rows = []
    for n in labels:
        for m in steps:
            for aug in augments:
                group = [c for c in cells if c["labels"] == n and c["min_steps"] == m and c["augment"] == aug]
                if not group:
                    continue
                f1 = {k: [c[k][0] for c in group] for k in BN_MODES}
                rows.append([n, m, "yes" if aug else "no", group[0]["steps"], len(group)]
                            + [float(np.mean(f1[k])) for k in BN_MODES]
                            + [float(np.std(f1["BN on labeled"])), float(np.mean([c["train_s"] for c in group]))])
    columns = ["labels", "min_steps", "augment", "optimizer steps", "seeds", "macro-F1 as trained", "F1, BN on labeled",
               "F1, BN on pool", "sd (BN on labeled)", "train s"]
    formats = [",", None, None, ",", None, ".4f", ".4f", ".4f", ".4f", ".1f"]
    text = [f"The reference CNN trained on random {args.dataset} labels (seeds {seeds}: same images, initial weights "
            f"and batch order for every variant of a seed) with the default recipe ({TrainConfig().epochs} epochs, batch "
            f"{TrainConfig().batch_size}, cosine rate) and at least `min_steps` optimizer steps, in "
            f"{cells[0]['precision'] if cells else 'fp32'}; macro-F1 on the {len(ds.y_test):,}-image test set, mean over "
            "seeds. \"BN on labeled\" and \"BN on pool\" re-estimate BatchNorm's statistics after training, on the labeled "
            "images or on 2,000 unlabeled training images, with dropout off. `augment`: random shifts of up to 2 "
            "pixels and horizontal flips of each training batch (`--augment`)."]
    metrics = {"cells": [{"labels": r[0], "min_steps": r[1], "augment": r[2] == "yes", "f1": r[5],
                          "f1_bn_labeled": r[6], "f1_bn_pool": r[7]} for r in rows]}
    print(text[0])
    for r in rows:
        print(r)
    if not args.smoke:
        title = f"Training length at 20 to 2,000 labels: {args.dataset}" + (f", {args.tag}" if args.tag else "")
        save_result(key, "recipe", title,
                    [*text, table(columns, rows, formats)], metrics)


def variants_study(args: argparse.Namespace) -> None:
    """Each variant on the same random labeled set per seed; one seed's table, or with several the seed-paired one."""
    variants = args.variants.split(",")
    if args.smoke:
        args.labels, variants = 200, ["1:no:constant:64", "1:aug:cosine:64"]
    configs = [parse_variant(text) for text in variants]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    ds = alkit.load_dataset(args.dataset, progress=False)
    if args.smoke:
        ds.x_test, ds.y_test = ds.x_test[:500], ds.y_test[:500]
    norm = Normalizer(*ds.channel_stats())
    precision = resolve_precision(args.precision, CPU)
    cells: dict[tuple[str, int], tuple[float, float, float]] = {}
    for seed in seeds:
        labeled = np.sort(numpy_rng(seed, 0, "initial").choice(len(ds.y_train), args.labels, replace=False))
        for text, cfg in zip(variants, configs):
            model, seconds = _trained(ds, norm, labeled, cfg, seed, precision)
            f1, acc = _evaluate(model, ds, norm)
            cells[text, seed] = f1, acc, seconds
            print(f"{text} seed {seed}: F1 {f1:.4f} acc {acc:.4f} train {seconds:.0f}s", flush=True)
    if len(seeds) > 1:
        _paired_variants(args, ds, variants, seeds, precision, cells)
        return
    rows = [(text, cfg, *cells[text, seeds[0]]) for text, cfg in zip(variants, configs)]
    table = ["| epochs | augment | lr schedule | batch | lr | weight decay | init | macro-F1 | accuracy | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {c.epochs} | {'yes' if c.augment else 'no'} | {c.lr_schedule} | {c.batch_size} | {c.lr:g} | "
              f"{c.weight_decay:g} | {c.init} | {f1:.4f} | {acc:.4f} | {s:.0f} |" for _, c, f1, acc, s in rows]
    body = f"""The reference CNN trained once per variant on the same {args.labels:,} random {args.dataset} training
labels (seed {args.seed}: same images, initial weights and batch order), scored on the
{len(ds.y_test):,}-image test set. One seed: differences under about 0.5 points are within noise.
"train s" is wall time, comparable only between the rows of one run.

{chr(10).join(table)}
"""
    print(body)
    if not args.smoke:
        save_result(section_name(args.dataset, args.labels, args.seed, args.tag), "recipe",
                    f"Training recipe: {args.dataset}, {args.labels:,} labels" + (f", {args.tag}" if args.tag else "")
                    + (f" (seed {args.seed})" if args.seed else ""), markdown_blocks(body),
                    {"variants": {text: {"f1": f1, "accuracy": acc} for text, _, f1, acc, _ in rows}})


def _paired_variants(args: argparse.Namespace, ds, variants: list[str], seeds: list[int], precision: str,
                     cells: dict[tuple[str, int], tuple[float, float, float]], results: Path = RESULTS) -> None:
    from scipy import stats

    first = np.array([cells[variants[0], s][0] for s in seeds])
    rows, metrics = [], {}
    for text in variants:
        f1 = np.array([cells[text, s][0] for s in seeds])
        diff = (f1 - first) * 100
        p = float(stats.ttest_rel(f1, first).pvalue) if np.any(diff) else None
        is_first = text == variants[0]
        rows.append([f"`{text}`", float(f1.mean()), float(f1.std()), None if is_first else float(diff.mean()), p,
                     None if is_first else f"{int((diff > 0).sum())} of {len(seeds)}",
                     float(np.mean([cells[text, s][2] for s in seeds]))])
        metrics[text] = {"f1": float(f1.mean()), "f1_per_seed": f1.tolist(),
                         "delta_pts": None if is_first else float(diff.mean()), "p": p}
    text = [f"The reference CNN trained once per variant and seed on {args.labels:,} random {args.dataset} training "
            f"labels (seeds {seeds}: per seed the same images, initial weights and batch order for every variant), in "
            f"{precision}, with BatchNorm re-estimated on the labeled images as the engine does; macro-F1 on the "
            f"{len(ds.y_test):,}-image test set. A variant is epochs:augment:schedule:batch[:lr[:weight decay[:init]]] "
            "and other training options as name=value; the difference is to the first variant, paired by seed "
            "(p: paired t-test). \"train s\" is wall time, comparable only between the rows of one run."]
    columns = ["variant", "macro-F1 (mean)", "sd", "vs first, points", "p", "seeds ahead", "train s"]
    formats = [None, ".4f", ".4f", "+.2f", ".3f", None, ".1f"]
    print(text[0])
    for r in rows:
        print(r)
    if not args.smoke:
        save_result(section_name(args.dataset, args.labels, 0, args.tag), "recipe",
                    f"Training recipe: {args.dataset}, {args.labels:,} labels" + (f", {args.tag}" if args.tag else "")
                    + f", {len(seeds)} seeds", [*text, table(columns, rows, formats)],
                    {"seeds": seeds, "labels": args.labels, "precision": precision, "variants": metrics},
                    results=results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--labels", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--tag", default="", help="added to the BENCHMARKS.md section's name, so that several "
                    "studies on the same data and label count sit side by side")
    ap.add_argument("--study", choices=["variants", "low-budget"], default="variants")
    ap.add_argument("--seeds", default=None, help="the seeds (low-budget study: default 0,1,2; variants study: "
                    "default --seed alone, and with several a seed-paired table)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "auto", "bf16"],
                    help="variants study: training's precision (auto: the engine's default; the study used fp32)")
    ap.add_argument("--min-steps", default="0,250,500", help="low-budget study: the min_steps values")
    ap.add_argument("--augment", default="no", help="low-budget study: no, yes or no,yes (random shifts and flips)")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.study == "low-budget":
        low_budget_study(args)
        return
    variants_study(args)


if __name__ == "__main__":
    main()
