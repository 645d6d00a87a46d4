"""Units of work of an experiment, and the records they produce.

A unit is one (dataset, seed): every strategy's rounds, or that seed's full-data reference; with
``unit: strategy`` in the config, one (dataset, seed, strategy), so that more units run side by side.
:meth:`UnitRunner.run` takes what the run folder already holds for the unit (a
:class:`Resume`) and yields records, an initial set, each committed round, the full-data
row, which only the driver writes to the run store. So a unit runs the same in this
process, in a worker process or on a Ray node, and touches no file.

Per (dataset, seed) every strategy starts from the same initial set and the same initial
weights (paired seeds). Per round, the model trained on a given labeled set is trained once,
and its outputs (logits, embeddings, MC-dropout samples) are computed once, then shared by
all strategies of the unit whose labeled set is identical (always the case in round 0). A
per-strategy unit trains its own round 0 from the same initial set, weights and batch order, so
on a CPU its rounds equal those of a per-seed unit bit for bit.
"""
from __future__ import annotations

import copy
import hashlib
import io
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from alkit.data import Dataset, load_dataset
from alkit.errors import RunStoreError, StrategyError
from alkit.loop.config import DatasetSpec, ExperimentConfig, strategy_specs
from alkit.loop.oracle import Oracle, SimulatedOracle
from alkit.loop.outputs import round_outputs
from alkit.loop.pool import PoolState, initial_set
from alkit.loop.seeding import numpy_rng, torch_generator
from alkit.metrics import classification_metrics
from alkit.models import ReferenceCNN, resolve_device, resolve_precision
from alkit.models.seeded import init_weights
from alkit.strategies import ModelOutputs, QueryContext, QueryStrategy
from alkit.strategies.cold_start import COLD_START, cold_start_set, load_embedder
from alkit.training.inference import predict_logits
from alkit.training.self_training import fit_self_trained
from alkit.training.trainer import Normalizer

ModelSpec = Callable[[tuple[int, int, int], int], nn.Module] | nn.Module | None


@dataclass(frozen=True)
class Unit:
    dataset: str
    seed: int
    full_data: bool = False
    strategy: str | None = None  # one strategy label, or None for every strategy of the seed


@dataclass
class Resume:
    """What the run folder holds for a unit: its initial set, committed rounds per strategy label (with
    their queried indices), the last round's warm-start weights per label, and whether the full-data row exists."""

    initial: np.ndarray | None = None
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checkpoints: dict[str, bytes] = field(default_factory=dict)
    full_done: bool = False


@dataclass
class InitialSet:
    dataset: str
    seed: int
    indices: np.ndarray


@dataclass
class Round:
    row: dict[str, Any]
    queried: np.ndarray
    checkpoint: bytes | None = None  # the model's state_dict (torch.save) when warm-starting


@dataclass
class FullData:
    row: dict[str, Any]


Record = InitialSet | Round | FullData
Progress = Callable[[str, str], None]  # (description, phase)


@dataclass
class _Trained:
    model: nn.Module
    metrics: dict[str, Any]
    train_seconds: float
    train_loss: float
    outputs: ModelOutputs


def _simulated_oracle(ds: Dataset) -> Oracle:
    return SimulatedOracle(ds.y_train)


def load_spec(spec: DatasetSpec, progress: bool) -> Dataset:
    options = dict(spec.options)
    options.setdefault("progress", progress)
    if spec.data_dir is not None:
        options["path"] = spec.data_dir
    return load_dataset(spec.name, imbalance=spec.imbalance, **options)


def state_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


class UnitRunner:
    """Runs units of one experiment. Picklable (for worker processes and Ray) when its model factory,
    oracle factory and datasets are; datasets not given are loaded from their spec where the unit runs."""

    def __init__(self, config: ExperimentConfig, *, model: ModelSpec = None, datasets: dict[str, Dataset] | None = None,
                 oracle_factory: Callable[[Dataset], Oracle] | None = None, embedder: Any = None) -> None:
        self.config = config
        self.model_spec = model
        self.embedder = embedder  # a callable or nn.Module given in Python (config.loop.embedder names it)
        self.datasets = dict(datasets or {})
        self.oracle_factory = oracle_factory or _simulated_oracle
        self._normalizers: dict[str, Normalizer] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_normalizers": {}}

    @property
    def device(self) -> torch.device:
        return resolve_device(self.config.train.device)

    def strategies(self) -> dict[str, QueryStrategy]:
        return {s.label: s.build() for s in strategy_specs(self.config)}

    def dataset(self, key: str) -> Dataset:
        if key not in self.datasets:
            spec = next(s for s in self.config.datasets if s.key == key)
            self.datasets[key] = load_spec(spec, False)
        return self.datasets[key]

    def run(self, unit: Unit, resume: Resume, progress: Progress | None = None) -> Iterator[Record]:
        """The unit's records, in order; rounds already in ``resume`` are not run again."""
        ds = self.dataset(unit.dataset)
        if unit.dataset not in self._normalizers:
            self._normalizers[unit.dataset] = Normalizer(*ds.channel_stats())
        norm = self._normalizers[unit.dataset]
        say = progress or (lambda _d, _p: None)
        device = self.device
        precision = resolve_precision(self.config.train.precision, device)
        if unit.full_data:
            if not resume.full_done:
                say(f"{unit.dataset} seed {unit.seed} full-data reference ({len(ds.y_train)} labels)", "train")
                trained = self._train_eval(ds, norm, ds.y_train, np.arange(len(ds.y_train)), unit.seed, 0, None,
                                           device, precision)
                yield FullData({"dataset": unit.dataset, "seed": unit.seed, "n_labeled": len(ds.y_train),
                                **trained.metrics, "train_seconds": trained.train_seconds})
            return
        yield from self._run_seed(unit, ds, norm, resume, say, device, precision)

    # ------------------------------------------------------------------------------------------
    def _new_model(self, ds: Dataset, seed: int, round_: int, device: torch.device) -> nn.Module:
        spec = self.model_spec
        if spec is None:
            model = ReferenceCNN(ds.image_shape, ds.num_classes)
        elif isinstance(spec, nn.Module):
            model = copy.deepcopy(spec)
        else:
            model = spec(ds.image_shape, ds.num_classes)
        init_weights(model, torch_generator(seed, round_, "init"), self.config.train.init)
        return model.to(device)

    def _train_eval(self, ds: Dataset, norm: Normalizer, labels: np.ndarray, labeled: np.ndarray, seed: int,
                    round_: int, start: nn.Module | None, device: torch.device, precision: str) -> _Trained:
        model = start if start is not None else self._new_model(ds, seed, round_, device)
        t0 = time.perf_counter()
        cfg = self.config.train.for_warm_round() if start is not None else self.config.train
        loss, _ = fit_self_trained(model, ds.x_train, labels, labeled, np.flatnonzero(labels < 0), cfg, norm, device,
                                   precision, numpy_rng(seed, round_, "batches"),
                                   torch_generator(seed, round_, "dropout", device))
        train_seconds = time.perf_counter() - t0
        train = self.config.train
        batch = train.eval_batch_for(device, model, ds.image_shape)
        logits = predict_logits(model, ds.x_test, None, norm, device, "fp32", batch)
        metrics = classification_metrics(ds.y_test, logits.argmax(1), ds.num_classes)
        outputs = round_outputs(model, ds.x_train, norm, device, train, ds.image_shape, seed, round_, batch)
        return _Trained(model, metrics, train_seconds, loss, outputs)

    def _warm_model(self, ds: Dataset, seed: int, state: bytes | None, label: str,
                    device: torch.device) -> nn.Module | None:
        if not self.config.train.warm_start:
            return None
        if state is None:
            raise RunStoreError(f"strategy '{label}' seed {seed}: the warm-start checkpoint of the last committed "
                                "round is missing; start a new run folder")
        model = self._new_model(ds, seed, 0, device)
        model.load_state_dict(torch.load(io.BytesIO(state), map_location=device, weights_only=True))
        return model

    def _run_seed(self, unit: Unit, ds: Dataset, norm: Normalizer, resume: Resume, say: Progress,
                  device: torch.device, precision: str) -> Iterator[Record]:
        key, seed = unit.dataset, unit.seed
        loop, n_rounds = self.config.loop, self.config.loop.n_rounds()
        strategies = {label: s for label, s in self.strategies().items() if unit.strategy in (None, label)}
        oracle = self.oracle_factory(ds)
        init = resume.initial
        if init is None:
            rng = numpy_rng(seed, 0, "initial")
            if loop.initial_set in COLD_START:  # label-free: shared by every strategy of the seed, like the others
                say(f"{key} seed {seed}: {loop.initial_set} initial set", "embed")
                init = cold_start_set(loop.initial_set, ds.x_train, loop.initial, rng,
                                      load_embedder(self.embedder or loop.embedder), ds.num_classes)
            else:
                init = initial_set(ds.y_train, loop.initial, loop.initial_set, rng)
            yield InitialSet(key, seed, init)
        pools, labels, next_round, models = {}, {}, {}, {}
        for name in strategies:
            done = resume.rounds.get(name, [])
            pool = PoolState(len(ds.y_train), init)
            lab = np.full(len(ds.y_train), -1, dtype=np.int64)
            lab[init] = oracle.label(init)
            for row in done:
                if len(row["queried"]):
                    pool.add(row["queried"])
                    lab[row["queried"]] = oracle.label(row["queried"])
            pools[name], labels[name], next_round[name] = pool, lab, len(done)
            models[name] = self._warm_model(ds, seed, resume.checkpoints.get(name), name, device) if done else None
        warm = self.config.train.warm_start
        for r in range(n_rounds + 1):
            shared: dict[str, _Trained] = {}
            for name, strategy in strategies.items():
                if next_round[name] > r:
                    continue
                desc = f"{key} seed {seed} {name} round {r}/{n_rounds}"
                pool = pools[name]
                labeled = pool.labeled
                reuse = hashlib.sha1(labeled.tobytes()).hexdigest() if (r == 0 or not warm) else None
                trained = shared.get(reuse) if reuse else None
                train_seconds = 0.0  # a model shared with an earlier strategy of the round was charged to it
                if trained is None:
                    say(desc, "train")
                    start = copy.deepcopy(models[name]) if warm and models[name] is not None else None
                    trained = self._train_eval(ds, norm, labels[name], labeled, seed, r, start, device, precision)
                    train_seconds = trained.train_seconds
                    if reuse:
                        shared[reuse] = trained
                queried = np.zeros(0, dtype=np.int64)
                select_seconds, score_seconds, n_candidates, scoring = 0.0, 0.0, 0, ""
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
                        say(desc, "score")
                        outputs.prefetch(candidates, strategy.needs(ctx))
                    say(desc, "select")
                    t0, before = time.perf_counter(), trained.outputs.seconds
                    logged = len(trained.outputs.scoring_log)
                    queried = np.asarray(strategy.query(ctx, k), dtype=np.int64)
                    scoring = "; ".join(r.describe() for r in trained.outputs.scoring_log[logged:]) or "fp32"
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
                       "train_seconds": train_seconds, "score_seconds": score_seconds,
                       "select_seconds": select_seconds, "train_loss": trained.train_loss,
                       "precision_used": precision, "n_candidates": n_candidates, "scoring": scoring,
                       "query_hist": np.bincount(labels[name][queried], minlength=ds.num_classes).tolist()}
                yield Round(row, queried, state_bytes(trained.model) if warm else None)
                if len(queried):
                    pool.add(queried)
                models[name] = trained.model
                next_round[name] = r + 1
