"""The experiment runner: datasets x strategies x seeds, round by round, resumable.

Per (dataset, seed) every strategy starts from the same initial set and the same
initial weights (paired seeds). Per round, the model trained on a given labeled set is
trained once and its candidate-pool forward pass is computed once, then shared by all
strategies whose labeled set is identical (always the case in round 0), and one
forward pass serves all probability-based scoring of a strategy's round. With
``workers > 1`` the (dataset, seed) units run in worker processes (:mod:`alkit.loop.parallel`).
"""
from __future__ import annotations

import copy
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from alkit.data import Dataset, load_dataset
from alkit.errors import RunStoreError, StrategyError
from alkit.loop import parallel
from alkit.loop.config import DatasetSpec, ExperimentConfig, strategy_specs
from alkit.loop.oracle import Oracle, SimulatedOracle
from alkit.loop.pool import PoolState, initial_set
from alkit.loop.outputs import model_outputs
from alkit.loop.seeding import numpy_rng, torch_generator
from alkit.metrics import classification_metrics
from alkit.models import ReferenceCNN, resolve_device, resolve_precision
from alkit.models.seeded import init_weights
from alkit.storage.run_store import RunStore
from alkit.strategies import ModelOutputs, QueryContext, QueryStrategy
from alkit.training.inference import predict_logits
from alkit.training.trainer import Normalizer, fit

ModelSpec = Callable[[tuple[int, int, int], int], nn.Module] | nn.Module | None


@dataclass
class RunResult:
    """What a finished run returns: the per-round rows, the run folder and the report."""

    out_dir: Path
    rows: list[dict[str, Any]]
    full_data: list[dict[str, Any]]
    report_path: Path | None = None

    def to_pandas(self) -> Any:
        import pandas as pd  # optional

        return pd.DataFrame([{k: v for k, v in r.items() if k not in ("per_class", "confusion", "queried")}
                             for r in self.rows])


@dataclass
class _Trained:
    model: nn.Module
    metrics: dict[str, Any]
    train_seconds: float
    train_loss: float
    outputs: ModelOutputs


class Experiment:
    def __init__(self, config: ExperimentConfig, out_dir: str | Path, *, model: ModelSpec = None,
                 datasets: dict[str, Dataset] | None = None, oracle_factory: Callable[[Dataset], Oracle] | None = None,
                 progress: bool = True) -> None:
        self.config = config.validate()
        self.out_dir = Path(out_dir)
        self.model_spec = model
        self.preloaded = datasets or {}
        self.custom_oracle = oracle_factory
        self.oracle_factory = oracle_factory or _simulated_oracle
        self.progress = progress
        self.device = resolve_device(config.train.device)
        self.precision = resolve_precision(config.train.precision, self.device)
        self.strategies: dict[str, QueryStrategy] = {s.label: s.build() for s in strategy_specs(self.config)}
        self.loaded: dict[str, Dataset] = {}
        self.normalizers: dict[str, Normalizer] = {}

    # ------------------------------------------------------------------------------------------
    def load_datasets(self) -> dict[str, Dataset]:
        """Load every dataset of the grid and check that its pool can hold the budget, before any training."""
        loaded = {}
        for spec in self.config.datasets:
            ds = self.preloaded.get(spec.key) or load_spec(spec, self.progress)
            self.config.check_pool_size(spec.key, len(ds.y_train))
            loaded[spec.key] = ds
        return loaded

    def run(self) -> RunResult:
        datasets = self.loaded = self.load_datasets()
        payload = parallel.worker_payload(self) if self.config.workers > 1 else None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with RunStore(self.out_dir / "runs.sqlite") as store:
            fingerprint = self.config.result_fingerprint()
            if store.check_config(fingerprint, extends=self.config.extends):
                self._reopen_rounds(store, datasets)
                store.save_config(fingerprint)
            _write_config(self.config, self.out_dir / "config.yaml")  # only once the store has accepted it
            tasks = [(key, seed, False) for key in datasets for seed in self.config.seeds] \
                + [(key, seed, True) for key in datasets for seed in self._full_data_seeds()]
            per_seed = len(self.strategies) * (self.config.loop.n_rounds() + 1)
            total = sum(1 if full_data else per_seed for _, _, full_data in tasks)
            with tqdm(total=total, initial=store.count(), desc="alkit", unit="round", disable=not self.progress,
                      dynamic_ncols=True) as bar:
                workers = min(self.config.workers, len(tasks))
                if workers > 1:
                    parallel.run_in_processes(self, payload, store, tasks, workers, bar)
                else:
                    for key, seed, full_data in tasks:
                        self.run_task(store, key, seed, full_data=full_data, bar=bar)
            store.export_csv(self.out_dir / "rounds.csv")
            store.export_queries(self.out_dir / "queries.csv", {k: d.y_train for k, d in datasets.items()})
            rows, full = store.rounds(), store.full_data()
        return RunResult(self.out_dir, rows, full)

    def run_task(self, store: RunStore, key: str, seed: int, *, full_data: bool, bar: tqdm | None = None) -> None:
        """One unit of work: every strategy's rounds for (dataset, seed), or that seed's full-data reference.

        Units share nothing but the store, so worker processes can run them in any order.
        """
        ds = self.loaded[key]
        if key not in self.normalizers:
            self.normalizers[key] = Normalizer(*ds.channel_stats())
        norm = self.normalizers[key]
        bar = bar if bar is not None else tqdm(disable=True)
        if full_data:
            self._full_data(store, key, ds, norm, seed, bar)
        else:
            self._run_seed(store, key, ds, norm, seed, bar)

    def _full_data_seeds(self) -> list[int]:
        mode = self.config.full_data
        return [] if mode == "none" else self.config.seeds[:1] if mode == "first-seed" else list(self.config.seeds)

    def _reopen_rounds(self, store: RunStore, datasets: dict[str, Dataset]) -> None:
        """After an extension, drop each stored round from the first whose query the larger run changes.

        That is usually the old last round: it queried nothing, and now it queries. It is run
        again with the same (seed, round) randomness, so its metrics come back the same.
        """
        loop = self.config.loop
        for key in datasets:
            for name in self.strategies:
                for seed in self.config.seeds:
                    for row in store.rounds(key, name, seed):
                        if len(row["queried"]) != loop.query_size(row["round"], row["n_labeled"]):
                            store.drop_rounds(key, name, seed, row["round"])
                            break

    # ------------------------------------------------------------------------------------------
    def _new_model(self, ds: Dataset, seed: int, round_: int) -> nn.Module:
        spec = self.model_spec
        if spec is None:
            model = ReferenceCNN(ds.image_shape, ds.num_classes)
        elif isinstance(spec, nn.Module):
            model = copy.deepcopy(spec)
        else:
            model = spec(ds.image_shape, ds.num_classes)
        init_weights(model, torch_generator(seed, round_, "init"), self.config.train.init)
        return model.to(self.device)

    def _train_eval(self, ds: Dataset, norm: Normalizer, labels: np.ndarray, labeled: np.ndarray, seed: int,
                    round_: int, start: nn.Module | None) -> _Trained:
        model = start if start is not None else self._new_model(ds, seed, round_)
        t0 = time.perf_counter()
        loss = fit(model, ds.x_train, labels, labeled, self.config.train, norm, self.device, self.precision,
                   numpy_rng(seed, round_, "batches"), torch_generator(seed, round_, "dropout", self.device))
        train_seconds = time.perf_counter() - t0
        logits = predict_logits(model, ds.x_test, None, norm, self.device, "fp32",
                                self.config.train.eval_batch_for(self.device))
        metrics = classification_metrics(ds.y_test, logits.argmax(1), ds.num_classes)
        outputs = model_outputs(model, ds.x_train, norm, self.device, self.config.train.eval_batch_for(self.device),
                                seed, round_)
        return _Trained(model, metrics, train_seconds, loss, outputs)

    def _run_seed(self, store: RunStore, key: str, ds: Dataset, norm: Normalizer, seed: int, bar: tqdm) -> None:
        loop, n_rounds = self.config.loop, self.config.loop.n_rounds()
        oracle = self.oracle_factory(ds)
        init = store.initial_set(key, seed)
        if init is None:
            init = initial_set(ds.y_train, loop.initial, loop.initial_set, numpy_rng(seed, 0, "initial"))
            store.save_initial_set(key, seed, init)
        pools, labels, next_round, models = {}, {}, {}, {}
        for name in self.strategies:
            done = store.rounds(key, name, seed)
            pool = PoolState(len(ds.y_train), init)
            lab = np.full(len(ds.y_train), -1, dtype=np.int64)
            lab[init] = oracle.label(init)
            for row in done:
                if len(row["queried"]):
                    pool.add(row["queried"])
                    lab[row["queried"]] = oracle.label(row["queried"])
            pools[name], labels[name], next_round[name] = pool, lab, len(done)
            models[name] = self._load_checkpoint(ds, key, name, seed, len(done) - 1) if done else None
        for r in range(n_rounds + 1):
            shared: dict[str, _Trained] = {}
            for name, strategy in self.strategies.items():
                if next_round[name] > r:
                    continue
                bar.set_description(f"{key} seed {seed} {name} round {r}/{n_rounds}")
                pool = pools[name]
                labeled = pool.labeled
                reuse = hashlib.sha1(labeled.tobytes()).hexdigest() if (r == 0 or not self.config.train.warm_start) else None
                trained = shared.get(reuse) if reuse else None
                if trained is None:
                    bar.set_postfix_str("train")
                    start = copy.deepcopy(models[name]) if self.config.train.warm_start and models[name] is not None else None
                    trained = self._train_eval(ds, norm, labels[name], labeled, seed, r, start)
                    if reuse:
                        shared[reuse] = trained
                queried = np.zeros(0, dtype=np.int64)
                select_seconds, score_seconds, n_candidates = 0.0, 0.0, 0
                if r < n_rounds:
                    candidates = pool.candidates(loop.candidates, numpy_rng(seed, r, "candidates"))
                    n_candidates = len(candidates)
                    k = loop.query_size(r, pool.n_labeled)
                    outputs = trained.outputs if strategy.requires else None
                    known = labels[name].view()
                    known.flags.writeable = False
                    ctx = QueryContext(candidates, labeled, known, ds.num_classes, r, numpy_rng(seed, r, "ties"),
                                       outputs)
                    computed = trained.outputs.seconds
                    if outputs is not None:
                        bar.set_postfix_str("score")
                        outputs.prefetch(candidates, strategy.requires)
                    bar.set_postfix_str("select")
                    t0, before = time.perf_counter(), trained.outputs.seconds
                    queried = np.asarray(strategy.query(ctx, k), dtype=np.int64)
                    # model outputs computed lazily inside query count as scoring, not selection;
                    # outputs shared with an earlier strategy of the round are charged to that one only
                    select_seconds = time.perf_counter() - t0 - (trained.outputs.seconds - before)
                    score_seconds = trained.outputs.seconds - computed
                    if pool.is_labeled(queried).any():
                        raise RunStoreError(f"strategy '{name}' returned already-labeled samples")
                    if not np.isin(queried, candidates).all():
                        raise StrategyError(f"strategy '{name}' returned indices that are not candidates (positions "
                                            "instead of dataset indices?); return entries of ctx.candidates")
                    labels[name][queried] = oracle.label(queried)
                row = {"dataset": key, "strategy": name, "seed": seed, "round": r, "n_labeled": len(labeled),
                       **trained.metrics,
                       "train_seconds": trained.train_seconds, "score_seconds": score_seconds,
                       "select_seconds": select_seconds, "train_loss": trained.train_loss,
                       "precision_used": self.precision, "n_candidates": n_candidates,
                       "query_hist": np.bincount(labels[name][queried], minlength=ds.num_classes).tolist()}
                if self.config.train.warm_start:
                    self._save_checkpoint(trained.model, key, name, seed, r)
                store.commit_round(row, queried)
                if len(queried):
                    pool.add(queried)
                models[name] = trained.model
                next_round[name] = r + 1
                bar.update(1)

    def _full_data(self, store: RunStore, key: str, ds: Dataset, norm: Normalizer, seed: int, bar: tqdm) -> None:
        if any(row["seed"] == seed for row in store.full_data(key)):
            return
        bar.set_description(f"{key} seed {seed} full-data reference ({len(ds.y_train)} labels)")
        bar.set_postfix_str("train")
        trained = self._train_eval(ds, norm, ds.y_train, np.arange(len(ds.y_train)), seed, 0, None)
        store.save_full_data({"dataset": key, "seed": seed, "n_labeled": len(ds.y_train), **trained.metrics,
                              "train_seconds": trained.train_seconds})
        bar.update(1)

    # -- warm-start checkpoints ------------------------------------------------------------
    def _checkpoint_path(self, key: str, strategy: str, seed: int, round_: int) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{key}-{strategy}-{seed}")
        return self.out_dir / "checkpoints" / f"{safe}-r{round_}.pt"

    def _save_checkpoint(self, model: nn.Module, key: str, strategy: str, seed: int, round_: int) -> None:
        path = self._checkpoint_path(key, strategy, seed, round_)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
        old = self._checkpoint_path(key, strategy, seed, round_ - 1)
        if old.exists():
            old.unlink()

    def _load_checkpoint(self, ds: Dataset, key: str, strategy: str, seed: int, round_: int) -> nn.Module | None:
        if not self.config.train.warm_start:
            return None
        path = self._checkpoint_path(key, strategy, seed, round_)
        if not path.exists():
            raise RunStoreError(f"{path}: warm-start checkpoint of the last committed round is missing; "
                                "start a new run folder")
        model = self._new_model(ds, seed, 0)
        model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        return model


def _simulated_oracle(ds: Dataset) -> Oracle:
    return SimulatedOracle(ds.y_train)


def load_spec(spec: DatasetSpec, progress: bool) -> Dataset:
    options = dict(spec.options)
    options.setdefault("progress", progress)
    if spec.data_dir is not None:
        options["path"] = spec.data_dir
    return load_dataset(spec.name, imbalance=spec.imbalance, **options)


def _write_config(config: ExperimentConfig, path: Path) -> None:
    import yaml

    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    os.replace(tmp, path)
