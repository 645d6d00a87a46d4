"""The Ray executor on a real local Ray cluster (one per module): same results, retries, driver SIGKILL."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

import alkit
from alkit.errors import StrategyError
from alkit.strategies import ScoreBasedStrategy
from alkit.strategies.scores import margin_scores
from tests.conftest import REPO
from tests.loop.test_experiment import FAST, _assert_same_results, kill_mid_run_then_resume

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class DieOnce(ScoreBasedStrategy):
    """Margin, but the first call anywhere kills its worker process (as an out-of-memory kill would)."""

    name = "die-once"

    def __init__(self, marker: str = "") -> None:
        self.marker = marker

    def score(self, prediction):  # type: ignore[no-untyped-def]
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("died once")
            os._exit(1)
        return margin_scores(prediction.probs)


class Broken(ScoreBasedStrategy):
    """Fails with a real error, appending a line to ``marker`` at each attempt."""

    name = "broken"

    def __init__(self, marker: str = "") -> None:
        self.marker = marker

    def score(self, prediction):  # type: ignore[no-untyped-def]
        with open(self.marker, "a") as f:
            f.write("attempt\n")
        raise StrategyError("broken strategy: a real bug, not a lost worker")


def _one_thread_run(**kw) -> alkit.api.RunResult:  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray unit gets cpus_per_unit=1 thread; float sums depend on the count
    try:
        return alkit.run(**kw)
    finally:
        torch.set_num_threads(threads)


def test_ray_grid_equals_the_one_process_run_row_for_row(cluster: str, small_npz: Path, tmp_path: Path) -> None:
    grid = dict(dataset="npz", strategies=["random", "margin", "bald:samples=3"], seeds=[0, 1],
                data_dir=str(small_npz), **{**FAST, "full_data": "first-seed"})
    one = _one_thread_run(out=tmp_path / "one", **grid)
    res = alkit.run(out=tmp_path / "ray", executor="ray", cpus_per_unit=1, **grid)
    _assert_same_results(tmp_path / "one" / "rounds.csv", tmp_path / "ray" / "rounds.csv")
    assert len(res.rows) == 3 * 2 * 4 and len(res.full_data) == 1
    assert abs(one.full_data[0]["f1_macro"] - res.full_data[0]["f1_macro"]) <= 1e-6
    # one Ray task per (seed, strategy): the same rows again
    alkit.run(out=tmp_path / "per-strategy", executor="ray", cpus_per_unit=1, unit="strategy", **grid)
    _assert_same_results(tmp_path / "one" / "rounds.csv", tmp_path / "per-strategy" / "rounds.csv")


def test_a_killed_worker_is_retried_and_its_rounds_come_out_identical(cluster: str, small_npz: Path,
                                                                      tmp_path: Path) -> None:
    marker = tmp_path / "died"
    grid = dict(dataset="npz", strategies=["random", f"tests.loop.test_ray:DieOnce:marker={marker}"], seeds=[0, 1],
                data_dir=str(small_npz), **FAST)
    marker.write_text("reference run: do not die")
    _one_thread_run(out=tmp_path / "ref", **grid)
    marker.unlink()
    alkit.run(out=tmp_path / "ray", executor="ray", **grid)
    assert marker.read_text() == "died once"  # a worker really died, and the run still finished
    _assert_same_results(tmp_path / "ref" / "rounds.csv", tmp_path / "ray" / "rounds.csv")


def test_a_real_error_stops_the_run_without_retrying(cluster: str, small_npz: Path, tmp_path: Path) -> None:
    marker = tmp_path / "attempts"
    with pytest.raises(StrategyError, match="broken strategy: a real bug"):
        alkit.run("npz", [f"tests.loop.test_ray:Broken:marker={marker}"], seeds=[0], data_dir=str(small_npz),
                  out=tmp_path / "b", executor="ray", **FAST)
    assert marker.read_text() == "attempt\n"  # raised once and reported, not retried as a lost worker is


def test_driver_sigkill_then_rerun_resumes_to_the_uninterrupted_result(cluster: str, small_npz: Path,
                                                                        tmp_path: Path) -> None:
    args = [sys.executable, "-m", "alkit", "run", "--dataset", "npz", "--data-dir", str(small_npz),
            "--strategies", "random,margin,badge", "--seeds", "0,1", "--initial", "40", "--query", "30",
            "--rounds", "4", "--epochs", "3", "--min-steps", "0", "--batch-size", "32", "--full-data", "none", "--no-report", "-q",
            "--executor", "ray", "--ray-address", cluster]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    kill_mid_run_then_resume(args, env, tmp_path, 6, 30)


def test_ray_is_not_imported_unless_chosen(small_npz: Path, tmp_path: Path) -> None:
    code = ("import sys, alkit; alkit.run('npz', ['margin'], seeds=[0], data_dir=sys.argv[1], out=sys.argv[2], "
            "initial=40, query=30, rounds=1, epochs=1, min_steps=0, full_data='none', progress=False, report=False); "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(small_npz), str(tmp_path / "r")], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"
    assert np.load(small_npz)["x_train"].shape[0] == 400
