"""The ``alkit`` command line. Every user error prints one line and exits with status 2."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from alkit import __version__
from alkit.errors import AlkitError, ConfigError


def _shape(text: str) -> tuple[int, int, int]:
    try:
        h, w, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not HxWxC, e.g. 32x32x3") from None
    return h, w, c


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not WxH, e.g. 64x64") from None
    return w, h


def _add_run_options(p: argparse.ArgumentParser) -> None:
    from alkit.data import dataset_names
    from alkit.strategies import strategy_names

    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="fashion-mnist",
                   help=f"dataset name(s), comma-separated: {', '.join(dataset_names())} (default: fashion-mnist)")
    g.add_argument("--data-dir", help="local dataset folder or file (the only place looked at when given); "
                                      "the image root for 'folder', the file for 'npz'")
    g.add_argument("--imbalance", help="imbalance protocol for the training set, e.g. step:10 or exponential:100")
    g.add_argument("--image-size", type=_size, help="folder datasets: resize every image to WxH, e.g. 64x64 "
                                                   "(default: keep the size, which must then be the same for all)")
    g = p.add_argument_group("active learning")
    g.add_argument("--strategies", default="random,margin",
                   help=f"comma-separated: {', '.join(strategy_names())}, or module:Class; parameters follow as "
                        ":key=value, e.g. bald:samples=10,class-balanced:base=margin (default: random,margin)")
    g.add_argument("--seeds", type=_int_list, default=[0], help="comma-separated seeds, paired across strategies (default: 0)")
    g.add_argument("--initial", type=int, default=1000, help="size of the initial labeled set (default: 1000)")
    g.add_argument("--query", type=int, default=1000, help="labels added per round (default: 1000)")
    g.add_argument("--rounds", type=int, help="query rounds after the initial set (default: 9)")
    g.add_argument("--budget", type=int, help="total labels, instead of --rounds")
    g.add_argument("--schedule", help="query sizes that change between rounds, as SIZExROUNDS items: 20x9,100x3 is "
                                      "9 rounds of 20 labels, then 3 of 100 (instead of --query, --rounds, --budget)")
    g.add_argument("--candidates", type=int,
                   help="score only a random subsample of this many unlabeled images per round (default: the whole pool)")
    g.add_argument("--initial-set", choices=["random", "balanced", "typiclust", "probcover"], default="random",
                   help="how the initial labeled set is drawn: random, balanced (equal per class; reads the labels), "
                        "or label-free typiclust / probcover on --embedder embeddings (default: random)")
    g.add_argument("--embedder", help="for typiclust / probcover: pca (PCA of the standardised pixels, each row "
                                      "scaled to unit length; the default), pca-raw (the rows unscaled, the "
                                      "default before unit rows) or module:function mapping uint8 "
                                      "N x H x W x C images to N x D")
    g.add_argument("--full-data", choices=["none", "first-seed", "all-seeds"], default="first-seed",
                   help="train the full-data reference model (default: first-seed)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=10, help="epochs per round (default: 10)")
    g.add_argument("--min-steps", type=int, default=None,
                   help="train at least this many optimizer steps per round, adding epochs as needed; on a few "
                        "dozen labels an epoch is one step (default: 50 x --epochs; 0: exactly --epochs)")
    g.add_argument("--bn-recalibration", action=argparse.BooleanOptionalAction, default=True,
                   help="after training, re-estimate BatchNorm's statistics on the labeled images (default: on)")
    g.add_argument("--scoring", choices=["auto", "fp32", "two-stage"], default="auto",
                   help="score-based strategies: two-stage (a bf16 pass over the pool, fp32 rescoring of the "
                        "shortlist that can reach the top k; fp32's selection) or fp32 (default: auto, two-stage "
                        "where bf16 is native)")
    g.add_argument("--batch-size", type=int, default=64, help="(default: 64)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 0.001)")
    g.add_argument("--lr-schedule", choices=["constant", "cosine"], default="cosine",
                   help="cosine anneals the learning rate to 0 over each round's training (default: cosine)")
    g.add_argument("--init", choices=["torch", "glorot"], default="torch",
                   help="fresh weights: PyTorch's default or Keras' Glorot-uniform (default: torch)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="(default: 0)")
    g.add_argument("--augment", action="store_true", help="random shifts and flips on training batches")
    g.add_argument("--pseudo-labels", type=int, default=0, metavar="N",
                   help="self-training: after each round's training, the model's most confident unlabeled images, up "
                        "to this many per predicted class, join the labeled ones with their predicted class and the "
                        "model trains again (a pool pass and a second training per round; default: 0, off)")
    g.add_argument("--class-balance", choices=["none", "reweight", "logit-adjust"], default="none",
                   help="for imbalanced data: weigh each labeled image by its class's rarity (reweight) or add the "
                        "labeled class prior's log to the logits in the loss (logit-adjust) (default: none)")
    g.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=True,
                   help="every round after the first continues from the last round's model; --no-warm-start "
                        "retrains each round from fresh weights, as the label-efficiency protocol does (default: on)")
    g.add_argument("--warm-epochs", type=int, default=None,
                   help="epochs of a warm-started round (default: 30%% of --epochs, at least 1: 3 of 10)")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda (default: auto)")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="training precision; auto: fp32 on a GPU, bf16 on a CPU with native bf16, else fp32; "
                        "scoring is always fp32 (default: auto)")
    p.add_argument("--out", default="runs/alkit",
                   help="run folder; the same command with the same folder resumes, and more --rounds, "
                        "--seeds or strategies extend it (default: runs/alkit)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes that run seeds (and the full-data reference) in parallel, writing to the same "
                        "run folder; with --unit strategy, (seed, strategy) pairs. Each gets an equal share of the "
                        "CPU threads (results equal a one-process run with that many threads); on a GPU they share "
                        "it (default: 1)")
    _add_executor_options(p)
    p.add_argument("--no-report", action="store_true", help="skip writing the HTML/Markdown report")


def _add_executor_options(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    g = p.add_argument_group("where units run (not part of the results)")
    g.add_argument("--executor", choices=["local", "processes", "ray"], default="local" if defaults else None,
                   help="local: this process; processes: --workers processes on this machine; ray: Ray tasks on a "
                        "local or remote cluster (pip install 'alkit[ray]') (default: local, or processes when "
                        "--workers > 1)")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (auto, or HEAD:6379); default: start a local Ray with this machine's CPUs")
    g.add_argument("--cpus-per-unit", type=float, default=1.0 if defaults else None,
                   help="Ray: CPUs (and torch threads) per unit (default: 1)")
    g.add_argument("--gpus-per-unit", type=float, default=0.0 if defaults else None,
                   help="Ray: GPUs per unit; fractions share a GPU, e.g. 0.25 runs 4 units on one (default: 0)")
    g.add_argument("--unit", choices=["seed", "strategy"], default="seed" if defaults else None,
                   help="what one unit of parallel work is: seed (every strategy of a seed; round 0 is trained "
                        "once for them all) or strategy (one strategy of one seed: seeds x strategies units, to "
                        "keep more workers busy, each training its own round 0) (default: seed)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alkit", description="Pool-based active learning on images: query strategies, active-vs-passive "
                                  "benchmarks with paired seeds, and a labeling app.")
    parser.add_argument("--version", action="version", version=f"alkit {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add = sub.add_parser

    def add_parser(name: str, **kw: object) -> argparse.ArgumentParser:
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("datasets", help="list datasets, where each was found, sizes and class counts")
    p.add_argument("--data-dir", help="look only here")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("fetch", help="download a dataset into the cache, or import a local copy")
    p.add_argument("name", choices=["fashion-mnist", "cifar10"])
    p.add_argument("--source", help="a local archive to validate and copy into the cache instead of downloading")

    p = sub.add_parser("model", help="print the reference CNN's Keras-style summary")
    p.add_argument("--input-shape", type=_shape, default=(32, 32, 3), help="HxWxC (default: 32x32x3)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default: 10)")

    p = sub.add_parser("run", help="run active learning on datasets x strategies x seeds")
    _add_run_options(p)

    p = sub.add_parser("experiment", help="run a grid described by a YAML or TOML config file")
    p.add_argument("config", help="path to the config file (see configs/)")
    p.add_argument("--out", help="run folder (overrides the config's 'out')")
    p.add_argument("--workers", type=int, help="parallel worker processes (overrides the config's 'workers')")
    _add_executor_options(p, defaults=False)
    p.add_argument("--no-report", action="store_true")

    p = sub.add_parser("report", help="(re)write the HTML and Markdown report of a run folder")
    p.add_argument("run_dir")

    p = sub.add_parser("demo", help="the quick start: Fashion-MNIST, random vs margin, 500 -> 2,500 labels, 1 seed")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")

    from alkit.app.cli import add_label_parser

    add_label_parser(sub)
    return parser


def _cmd_datasets(args: argparse.Namespace) -> int:
    from alkit.data import dataset_names, describe

    infos = [describe(n, Path(args.data_dir) if args.data_dir else None) for n in dataset_names()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for info in infos:
        print(f"{info['name']}: {info['description']}")
        found = info.get("found")
        print(f"  found: {found if found else 'no local copy (alkit fetch ' + info['name'].split('-imb')[0] + ')'}")
        if "error" in info:
            print(f"  error: {info['error']}")
        if "train" in info:
            h, w, c = info["shape"]
            print(f"  train: {info['train']:,}  test: {info['test']:,}  image: {h}x{w}x{c}")
            print("  train per class: " + ", ".join(f"{k} {v:,}" for k, v in info["train_counts"].items()))
            print("  test per class:  " + ", ".join(f"{k} {v:,}" for k, v in info["test_counts"].items()))
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from alkit.data import cifar10, fashion_mnist

    if args.name == "cifar10":
        path = cifar10.fetch(Path(args.source) if args.source else None, progress=not args.quiet)
    else:
        if args.source:
            raise ConfigError("fetch fashion-mnist: --source is not supported; pass --data-dir FOLDER to commands instead")
        path = fashion_mnist.fetch(progress=not args.quiet)["train_images"].parent
    print(f"{args.name}: ready at {path}")
    return 0


def _cmd_model(args: argparse.Namespace) -> int:
    from alkit.models import ReferenceCNN, summary

    try:
        model = ReferenceCNN(args.input_shape, args.classes)
    except ValueError as exc:
        raise ConfigError(f"--input-shape: {exc}") from None
    print(summary(model, args.input_shape))
    return 0


def _finish(result: object) -> int:
    from alkit.reporting.terminal import print_summary

    out = result.out_dir
    if result.rows:
        print_summary(result.rows, result.full_data)
    print(f"rounds: {out / 'rounds.csv'}")
    if getattr(result, "report_path", None):
        print(f"report: {result.report_path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import alkit
    from alkit.loop.config import split_strategies

    result = alkit.run(
        dataset=[d.strip() for d in args.dataset.split(",") if d.strip()],
        strategies=split_strategies(args.strategies), seeds=args.seeds,
        initial=args.initial, query=args.query, rounds=args.rounds, budget=args.budget, schedule=args.schedule,
        candidates=args.candidates,
        initial_set=args.initial_set, embedder=args.embedder, epochs=args.epochs, min_steps=args.min_steps,
        bn_recalibration=args.bn_recalibration, scoring=args.scoring, batch_size=args.batch_size, lr=args.lr,
        lr_schedule=args.lr_schedule, init=args.init, weight_decay=args.weight_decay, augment=args.augment,
        pseudo_labels=args.pseudo_labels, class_balance=args.class_balance, device=args.device,
        precision=args.precision,
        warm_start=args.warm_start, warm_epochs=args.warm_epochs, imbalance=args.imbalance, data_dir=args.data_dir,
        image_size=args.image_size,
        full_data=args.full_data,
        out=args.out, workers=args.workers, executor=args.executor, ray_address=args.ray_address,
        cpus_per_unit=args.cpus_per_unit, gpus_per_unit=args.gpus_per_unit, unit=args.unit, progress=not args.quiet,
        report=not args.no_report)
    return _finish(result)


def _cmd_experiment(args: argparse.Namespace) -> int:
    import alkit
    from alkit.loop.config import load_config

    config = load_config(args.config)
    if args.out:
        config.out = args.out
    overrides = {k: getattr(args, k) for k in ("workers", "executor", "ray_address", "cpus_per_unit", "gpus_per_unit",
                                               "unit")
                 if getattr(args, k) is not None}
    if overrides:
        for k, v in overrides.items():
            setattr(config, k, v)
        config.validate(" ".join(f"--{k.replace('_', '-')} {v}" for k, v in overrides.items()))
    return _finish(alkit.run_config(config, progress=not args.quiet, report=not args.no_report))


def _cmd_report(args: argparse.Namespace) -> int:
    from alkit.reporting.report import write_report

    print(f"report: {write_report(args.run_dir)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import alkit

    return _finish(alkit.demo(out=args.out, progress=not args.quiet))


COMMANDS = {"datasets": _cmd_datasets, "fetch": _cmd_fetch, "model": _cmd_model, "run": _cmd_run,
            "experiment": _cmd_experiment, "report": _cmd_report, "demo": _cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    handler = COMMANDS.get(args.command) or getattr(args, "handler", None)
    try:
        return int(handler(args) or 0)
    except AlkitError as exc:
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"alkit: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alkit: interrupted; finished rounds are saved, run the same command again to resume", file=sys.stderr)
        return 130
