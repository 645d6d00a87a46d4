"""The Python API, mirroring the CLI: ``alkit.run(...)`` and ``alkit.demo(...)``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from alkit.loop.config import DatasetSpec, ExperimentConfig, LoopConfig
from alkit.loop.experiment import Experiment, ModelSpec, RunResult
from alkit.reporting.report import write_report
from alkit.training.config import TrainConfig

DEMO = dict(dataset="fashion-mnist", strategies=("random", "margin"), seeds=(0,), initial=500, query=500,
            rounds=4, candidates=10_000, epochs=8, batch_size=128, full_data="none")


def run(dataset: str | Sequence[str] = "fashion-mnist", strategies: Sequence[str] = ("random", "margin"),
        seeds: Sequence[int] = (0,), *, initial: int = 1000, query: int = 1000, rounds: int | None = None,
        budget: int | None = None, schedule: str | None = None, candidates: int | None = None,
        initial_set: str = "random", embedder: Any = None,
        epochs: int = 10, min_steps: int | None = None, bn_recalibration: bool = True, scoring: str = "auto",
        batch_size: int = 64, lr: float = 1e-3, lr_schedule: str = "cosine",
        init: str = "torch",
        weight_decay: float = 0.0, augment: bool = False, pseudo_labels: int = 0, class_balance: str = "none",
        device: str = "auto",
        precision: str = "auto", warm_start: bool = True, warm_epochs: int | None = None,
        imbalance: Any = None, data_dir: str | None = None, image_size: tuple[int, int] | None = None,
        full_data: str = "first-seed",
        out: str | Path = "runs/alkit", model: ModelSpec = None, workers: int = 1, executor: str = "local",
        ray_address: str | None = None, cpus_per_unit: float = 1.0, gpus_per_unit: float = 0.0, unit: str = "seed",
        progress: bool = True, report: bool = True) -> RunResult:
    """Run active learning on a grid of datasets x strategies x seeds and write a report.

    Returns a :class:`RunResult` whose ``rows`` hold one dict per (dataset, strategy,
    seed, round); ``result.to_pandas()`` gives a DataFrame if pandas is installed.
    Re-running with the same arguments and ``out`` resumes an interrupted run.
    ``model`` is any ``torch.nn.Module`` (copied and re-initialised each round) or a
    factory ``(input_shape, num_classes) -> Module``; the default is the reference CNN.
    ``schedule`` gives query sizes that change between rounds, e.g. ``"20x9,100x3"`` (9 rounds of 20
    labels, then 3 of 100), instead of ``query`` with ``rounds`` or ``budget``.
    ``initial_set`` ``typiclust`` or ``probcover`` picks the first labels without labels, on embeddings
    from ``embedder``: ``"pca"`` (default), ``"module:function"``, or a callable / ``nn.Module`` mapping
    uint8 N x H x W x C images (a Module gets float NCHW in [0, 1]) to N x D.
    ``min_steps`` (unset: 50 x ``epochs``) and ``bn_recalibration`` are the low-budget training rule;
    ``warm_start`` trains each round after the first from the last round's model (the default; False
    retrains from fresh weights), for ``warm_epochs`` (unset: 30% of ``epochs``); ``scoring`` chooses
    two-stage or fp32 pool scoring; ``class_balance`` (``reweight`` or ``logit-adjust``) makes the loss
    count rare labeled classes more, for imbalanced data; ``pseudo_labels`` > 0 self-trains each round on that many
    confident pseudo-labels per class from the unlabeled pool (:class:`alkit.training.config.TrainConfig`).
    ``workers > 1`` runs seeds in that many spawned processes (same results at equal threads per
    process); call it under ``if __name__ == "__main__":`` and give a module-level factory, as
    with a DataLoader's workers. ``executor="ray"`` runs the units as Ray tasks, on a local Ray (started
    with this machine's CPUs) or the cluster at ``ray_address``, with ``cpus_per_unit`` and
    ``gpus_per_unit`` resources each; only this process writes the run folder. A unit of work is one seed
    with all its strategies (``unit="seed"``, which trains round 0 once for them all), or one strategy of
    one seed (``unit="strategy"``: seeds x strategies units, for more workers than seeds, e.g. on a GPU).
    """
    names = [dataset] if isinstance(dataset, str) else list(dataset)
    config = ExperimentConfig(
        datasets=[DatasetSpec(name=n, data_dir=data_dir, imbalance=imbalance,
                              options={"image_size": list(image_size)} if image_size else {}) for n in names],
        strategies=list(strategies), seeds=[int(s) for s in seeds],
        loop=LoopConfig(initial=initial, query=query, rounds=rounds, budget=budget, schedule=schedule,
                        candidates=candidates, initial_set=initial_set, embedder=embedder_name(embedder)),
        train=TrainConfig(epochs=epochs, min_steps=min_steps, bn_recalibration=bn_recalibration, scoring=scoring,
                          batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                          init=init,
                          weight_decay=weight_decay, augment=augment, pseudo_labels=pseudo_labels,
                          class_balance=class_balance, device=device,
                          precision=precision, warm_start=warm_start, warm_epochs=warm_epochs),
        full_data=full_data, out=str(out), workers=workers, executor=executor, ray_address=ray_address,
        cpus_per_unit=cpus_per_unit, gpus_per_unit=gpus_per_unit, unit=unit)
    return run_config(config, model=model, progress=progress, report=report,
                      embedder=None if isinstance(embedder, str) else embedder)


def embedder_name(embedder: Any) -> str | None:
    """How an embedder is named in the config (and so in the run's fingerprint)."""
    if embedder is None or isinstance(embedder, str):
        return embedder
    named = embedder if hasattr(embedder, "__qualname__") else type(embedder)
    return f"python:{named.__module__}.{named.__qualname__}"


def run_config(config: ExperimentConfig, *, model: ModelSpec = None, progress: bool = True,
               report: bool = True, embedder: Any = None) -> RunResult:
    """Run a validated :class:`ExperimentConfig` (e.g. from :func:`alkit.loop.config.load_config`)."""
    out = Path(config.out or "runs/alkit")
    experiment = Experiment(config, out, model=model, progress=progress, embedder=embedder)
    result = experiment.run()
    if report:
        classes = {key: ds.classes for key, ds in experiment.loaded.items()}
        result.report_path = write_report(out, classes)
    return result


def demo(out: str | Path = "runs/demo", progress: bool = True, **overrides: Any) -> RunResult:
    """The README's main job: Fashion-MNIST, random vs margin, one seed, 500 -> 2,500 labels."""
    return run(**{**DEMO, **overrides}, out=out, progress=progress)
