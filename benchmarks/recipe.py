"""Training recipe: test macro-F1 of the reference CNN trained on a fixed random labeled set.

The label-efficiency targets depend on how well a round's model is trained, so each recipe
option is measured on its own: the same labeled images (a random draw of --labels from the
training set), the same initial weights and batch order, and one change at a time. A variant
is ``epochs:augment:schedule:batch[:lr[:weight_decay[:init]]]``, e.g. ``10:no:cosine:64:0.002`` or
``10:no:cosine:64:0.001:0:glorot``.

    python -m benchmarks.recipe --dataset fashion-mnist --labels 5000
    python -m benchmarks.recipe --dataset fashion-mnist --labels 5000 --seed 1 --tag init \
        --variants 10:no:cosine:64,10:no:cosine:64:0.001:0:glorot
    python -m benchmarks.recipe --smoke        # seconds, for CI (writes nothing)
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import alkit
from alkit.loop.seeding import numpy_rng, torch_generator
from alkit.metrics import classification_metrics
from alkit.models import ReferenceCNN
from alkit.models.seeded import init_weights
from alkit.training.config import TrainConfig
from alkit.training.inference import predict_logits
from alkit.training.trainer import Normalizer, fit
from benchmarks.common import command, commit, machine, write_section

CPU = torch.device("cpu")
VARIANTS = ("10:no:constant:128", "10:no:cosine:128", "10:no:constant:64", "10:no:cosine:64",
            "10:no:cosine:64:0.001:0:glorot", "10:no:cosine:64:0.002", "10:aug:cosine:64", "20:aug:cosine:64")


def section_name(dataset: str, labels: int, seed: int, tag: str = "") -> str:
    """The BENCHMARKS.md section of one study: ``recipe-<dataset>-<labels>[-<tag>][-seed<seed>]``."""
    return f"recipe-{dataset}-{labels}" + (f"-{tag}" if tag else "") + (f"-seed{seed}" if seed else "")


def parse_variant(text: str) -> TrainConfig:
    parts = text.split(":")
    if len(parts) < 4:
        raise SystemExit(f"variant '{text}': expected epochs:augment:schedule:batch[:lr[:weight_decay[:init]]]")
    lr = float(parts[4]) if len(parts) > 4 else 1e-3
    wd = float(parts[5]) if len(parts) > 5 else 0.0
    init = parts[6] if len(parts) > 6 else "torch"
    return TrainConfig(epochs=int(parts[0]), augment=parts[1] == "aug", lr_schedule=parts[2],
                       batch_size=int(parts[3]), lr=lr, weight_decay=wd, init=init).validate()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--labels", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--tag", default="", help="added to the BENCHMARKS.md section's name, so that several "
                    "studies on the same data and label count sit side by side")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    variants = args.variants.split(",")
    ds = alkit.load_dataset(args.dataset, progress=False)
    if args.smoke:
        args.labels, variants = 200, ["1:no:constant:64", "1:aug:cosine:64"]
        ds.x_test, ds.y_test = ds.x_test[:500], ds.y_test[:500]
    norm = Normalizer(*ds.channel_stats())
    labeled = np.sort(numpy_rng(args.seed, 0, "initial").choice(len(ds.y_train), args.labels, replace=False))
    rows = []
    for text in variants:
        cfg = parse_variant(text)
        model = ReferenceCNN(ds.image_shape, ds.num_classes)
        init_weights(model, torch_generator(args.seed, 0, "init"), cfg.init)
        t0 = time.perf_counter()
        fit(model, ds.x_train, ds.y_train, labeled, cfg, norm, CPU, "fp32", numpy_rng(args.seed, 0, "batches"),
            torch_generator(args.seed, 0, "dropout"))
        seconds = time.perf_counter() - t0
        pred = predict_logits(model, ds.x_test, None, norm, CPU, "fp32").argmax(1)
        met = classification_metrics(ds.y_test, pred, ds.num_classes)
        rows.append((text, cfg, met["f1_macro"], met["accuracy"], seconds))
        print(f"{text}: F1 {met['f1_macro']:.4f} acc {met['accuracy']:.4f} train {seconds:.0f}s", flush=True)
    table = ["| epochs | augment | lr schedule | batch | lr | weight decay | init | macro-F1 | accuracy | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {c.epochs} | {'yes' if c.augment else 'no'} | {c.lr_schedule} | {c.batch_size} | {c.lr:g} | "
              f"{c.weight_decay:g} | {c.init} | {f1:.4f} | {acc:.4f} | {s:.0f} |" for _, c, f1, acc, s in rows]
    body = f"""## Training recipe: {args.dataset}, {args.labels:,} labels

Command: `{command()}` · commit `{commit()}` · {time.strftime('%Y-%m-%d')}
Machine: {machine()}

The reference CNN trained once per variant on the same {args.labels:,} random {args.dataset} training
labels (seed {args.seed}: same images, initial weights and batch order), scored on the
{len(ds.y_test):,}-image test set. One seed: differences under about 0.5 points are within noise.
"train s" is wall time, comparable only between the rows of one run.

{chr(10).join(table)}
"""
    print(body)
    if not args.smoke:
        write_section(section_name(args.dataset, args.labels, args.seed, args.tag), body)


if __name__ == "__main__":
    main()
