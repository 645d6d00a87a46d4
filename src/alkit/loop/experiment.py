"""The experiment runner: datasets x strategies x seeds, round by round, resumable.

The runner owns the run folder: it validates the configuration against the store, lists
the units of work (:mod:`alkit.loop.units`), hands them to an executor
(:mod:`alkit.loop.executors`: this process, worker processes, or Ray), and is the only
writer of what they yield.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from alkit.data import Dataset
from alkit.errors import ConfigError, RunStoreError
from alkit.loop.config import ExperimentConfig, strategy_specs
from alkit.loop.executors import Executor, LocalExecutor, make_executor
from alkit.loop.oracle import Oracle
from alkit.loop.progress import progress_bar
from alkit.loop.run_folder import RunFolder
from alkit.loop.units import ModelSpec, Unit, UnitRunner, load_spec
from alkit.models.reference_cnn import check_input_shape
from alkit.storage.run_store import RunStore

__all__ = ["Experiment", "ModelSpec", "RunResult", "RunStore"]


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


class Experiment:
    def __init__(self, config: ExperimentConfig, out_dir: str | Path, *, model: ModelSpec = None,
                 datasets: dict[str, Dataset] | None = None, oracle_factory: Callable[[Dataset], Oracle] | None = None,
                 progress: bool = True, executor: Executor | None = None, embedder: Any = None) -> None:
        self.config = config.validate()
        self.out_dir = Path(out_dir)
        self.model_spec = model
        self.preloaded = datasets or {}
        self.oracle_factory = oracle_factory
        self.embedder = embedder
        self.progress = progress
        self.labels = [s.label for s in strategy_specs(self.config)]
        named = config.loop.embedder
        if named is not None and named.startswith("python:") and embedder is None:
            raise ConfigError(f"{config.source}: loop.embedder '{named}' was a Python object; pass it again "
                              "(alkit.run(..., embedder=...)) to resume this run")
        self.executor = executor or make_executor(
            config.executor, config.workers, ray_address=config.ray_address, cpus_per_unit=config.cpus_per_unit,
            gpus_per_unit=config.gpus_per_unit)
        self.loaded: dict[str, Dataset] = {}

    def load_datasets(self) -> dict[str, Dataset]:
        """Load every dataset of the grid and check that its pool can hold the budget, before any training."""
        loaded = {}
        for spec in self.config.datasets:
            ds = self.preloaded.get(spec.key) or load_spec(spec, self.progress)
            self.config.check_pool_size(spec.key, len(ds.y_train), self.config.source)
            if self.model_spec is None:
                check_input_shape(ds.image_shape, f"{self.config.source}: dataset '{spec.key}'")
            loaded[spec.key] = ds
        return loaded

    def units(self) -> list[Unit]:
        """Per (dataset, seed), or per (dataset, seed, strategy) with ``unit: strategy``; then the full-data ones."""
        per = self.labels if self.config.unit == "strategy" else [None]
        return [Unit(key, seed, strategy=label) for key in self.loaded for seed in self.config.seeds for label in per] \
            + [Unit(key, seed, True) for key in self.loaded for seed in self._full_data_seeds()]

    def _runner(self) -> UnitRunner:
        """The units' runner; refused before the run folder is touched if it cannot reach other processes."""
        datasets = {**self.preloaded, **(self.loaded if self.executor.driver_datasets else {})}
        runner = UnitRunner(self.config, model=self.model_spec, datasets=datasets, oracle_factory=self.oracle_factory,
                            embedder=self.embedder)
        if not isinstance(self.executor, LocalExecutor):
            try:  # what the user passed in; the datasets alkit loaded are plain arrays, no need to copy them
                pickle.dumps((self.model_spec, self.oracle_factory, self.embedder, self.preloaded))
            except (pickle.PicklingError, AttributeError, TypeError) as exc:
                where = "executor=ray" if self.config.executor == "ray" else f"workers={self.config.workers}"
                raise ConfigError(f"{where}: the model factory, oracle or preloaded datasets cannot be sent to "
                                  f"other processes ({exc}); pass a module-level function or an nn.Module, or run "
                                  "in one process (executor local, workers 1)") from None
        return runner

    def check_out_dir(self) -> None:
        """Refuse a run folder that would overwrite what a user owns: a file, or a non-empty folder that
        is not an alkit run folder."""
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise RunStoreError(f"{out}: is a file, not a run folder; choose another --out")
        if out.is_dir() and not (out / "runs.sqlite").is_file() and any(out.iterdir()):
            raise RunStoreError(f"{out}: this folder holds files but no runs.sqlite, so it is not an alkit run "
                                "folder; nothing was changed: choose an empty or new --out")

    def run(self) -> RunResult:
        self.check_out_dir()
        datasets = self.loaded = self.load_datasets()
        runner = self._runner()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with RunStore(self.out_dir / "runs.sqlite") as store:
            folder = RunFolder(self.out_dir, store, self.labels, self.config.train.warm_start)
            fingerprint = self.config.result_fingerprint()
            if store.check_config(fingerprint, extends=self.config.extends):
                self._reopen_rounds(store, datasets, folder)
                store.save_config(fingerprint)
            _write_config(self.config, self.out_dir / "config.yaml")  # only once the store has accepted it
            store.save_classes({key: list(ds.classes) for key, ds in datasets.items()})
            units = self.units()
            rounds = self.config.loop.n_rounds() + 1
            total = sum(1 if u.full_data else rounds * (1 if u.strategy else len(self.labels)) for u in units)
            with progress_bar(total, store.count(), self.progress) as bar:
                self.executor.run(runner, units, folder, bar)
            store.export_csv(self.out_dir / "rounds.csv")
            store.export_queries(self.out_dir / "queries.csv", {k: d.y_train for k, d in datasets.items()})
            rows, full = store.rounds(), store.full_data()
        return RunResult(self.out_dir, rows, full)

    def _full_data_seeds(self) -> list[int]:
        mode = self.config.full_data
        return [] if mode == "none" else self.config.seeds[:1] if mode == "first-seed" else list(self.config.seeds)

    def _reopen_rounds(self, store: RunStore, datasets: dict[str, Dataset], folder: RunFolder) -> None:
        """After an extension, drop each stored round from the first whose query the larger run changes.

        That is usually the old last round: it queried nothing, and now it queries. It is run
        again with the same (seed, round) randomness, so its metrics come back the same. Under warm
        start it may have to go back further (:meth:`RunFolder.first_round_to_rerun`).
        """
        loop = self.config.loop
        for key in datasets:
            for name in self.labels:
                for seed in self.config.seeds:
                    for row in store.rounds(key, name, seed):
                        if len(row["queried"]) != loop.query_size(row["round"], row["n_labeled"]):
                            store.drop_rounds(key, name, seed,
                                              folder.first_round_to_rerun(key, name, seed, row["round"]))
                            break



def _write_config(config: ExperimentConfig, path: Path) -> None:
    import yaml

    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    os.replace(tmp, path)
