"""Worker processes (workers > 1): the same results as one process, and clear refusals."""
from pathlib import Path

import pytest
import torch
from torch import nn

import alkit
from alkit.errors import ConfigError
from alkit.loop.config import DatasetSpec, ExperimentConfig
from alkit.loop.experiment import Experiment
from alkit.storage.run_store import RunStore
from tests.loop.test_experiment import FAST, _assert_same_results


def _tiny_factory(shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], n_classes))


def test_worker_processes_give_the_one_process_results_and_extend_a_run(small_npz: Path, tmp_path: Path) -> None:
    # Each worker gets threads // workers CPU threads; float sums depend on the thread count,
    # so the one-process run uses the workers' count (1) to be comparable bit for bit.
    grid = dict(strategies=["random", "margin"], data_dir=str(small_npz), model=_tiny_factory,
                **{**FAST, "full_data": "first-seed"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alkit.run("npz", seeds=[0, 1, 2], out=tmp_path / "one", workers=1, **grid)
        alkit.run("npz", seeds=[0], out=tmp_path / "par", workers=1, **grid)
        res = alkit.run("npz", seeds=[0, 1, 2], out=tmp_path / "par", workers=3, **grid)
    finally:
        torch.set_num_threads(threads)
    _assert_same_results(tmp_path / "one" / "rounds.csv", tmp_path / "par" / "rounds.csv")
    assert len(res.rows) == 2 * 3 * 4 and len(res.full_data) == 1
    one = RunStore(tmp_path / "one" / "runs.sqlite").full_data()
    assert abs(one[0]["f1_macro"] - res.full_data[0]["f1_macro"]) <= 1e-6


def test_workers_refuse_what_cannot_reach_a_process_and_bad_counts(small_npz: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workers=2: the model factory.*module-level function"):
        alkit.run("npz", seeds=[0, 1], data_dir=str(small_npz), out=tmp_path / "r", workers=2,
                  model=lambda shape, n: _tiny_factory(shape, n), **FAST)
    assert not (tmp_path / "r").exists()
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match=r"workers must be an integer >= 1|workers: 1.5 is not an integer"):
            alkit.run("npz", seeds=[0], data_dir=str(small_npz), out=tmp_path / "bad", workers=bad, **FAST)


def _failing_factory(shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    raise RuntimeError("factory failed in a worker")


def _dying_factory(shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    import os

    os._exit(3)


def test_a_worker_error_reaches_the_caller_and_a_dead_worker_is_named(small_npz: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="factory failed in a worker"):
        alkit.run("npz", seeds=[0, 1], data_dir=str(small_npz), out=tmp_path / "err", workers=2,
                  model=_failing_factory, **FAST)
    with pytest.raises(alkit.errors.RunStoreError, match="a worker process died .* run the same command again"):
        alkit.run("npz", seeds=[0, 1], data_dir=str(small_npz), out=tmp_path / "dead", workers=2,
                  model=_dying_factory, **FAST)


def test_per_strategy_units_give_the_per_seed_results_in_worker_processes(small_npz: Path, tmp_path: Path) -> None:
    # unit="strategy": each (seed, strategy) trains its own round 0, from the same initial set, weights and batches
    grid = dict(strategies=["random", "margin", "coreset"], seeds=[0, 1], data_dir=str(small_npz), model=_tiny_factory,
                **FAST)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alkit.run("npz", out=tmp_path / "seed", **grid)
        res = alkit.run("npz", out=tmp_path / "strategy", unit="strategy", workers=3, **grid)
    finally:
        torch.set_num_threads(threads)
    _assert_same_results(tmp_path / "seed" / "rounds.csv", tmp_path / "strategy" / "rounds.csv")
    assert (tmp_path / "seed" / "queries.csv").read_text() == (tmp_path / "strategy" / "queries.csv").read_text()
    assert len(res.rows) == 3 * 2 * 4
    with pytest.raises(ConfigError, match="unit 'round' is unknown"):
        alkit.run("npz", out=tmp_path / "bad", unit="round", **grid)


@pytest.mark.parametrize("unit, expected", [("seed", [(0, None), (1, None)]),
                                            ("strategy", [(0, "random"), (0, "margin"), (1, "random"), (1, "margin")])])
def test_the_units_of_work_are_seeds_or_seed_strategy_pairs(unit: str, expected: list, tmp_path: Path) -> None:
    config = ExperimentConfig(datasets=[DatasetSpec("fashion-mnist")], strategies=["random", "margin"], seeds=[0, 1],
                              unit=unit)
    exp = Experiment(config, tmp_path / "r", progress=False)
    exp.loaded = {"fashion-mnist": None}
    assert [(u.seed, u.strategy) for u in exp.units() if not u.full_data] == expected
