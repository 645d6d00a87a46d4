from pathlib import Path

import numpy as np
import pytest

from alkit.errors import ConfigError, StrategyError
from alkit.loop.config import ExperimentConfig, LoopConfig, config_from_dict, load_config
from alkit.loop.oracle import Oracle, SimulatedOracle
from alkit.loop.pool import PoolState, initial_set
from alkit.loop.seeding import derive_seed, numpy_rng


def test_pool_speaks_dataset_indices_not_positions() -> None:
    pool = PoolState(10, np.array([0, 1, 2]))
    candidates = pool.unlabeled  # positions 0.. map to dataset indices 3..9
    assert candidates.tolist() == [3, 4, 5, 6, 7, 8, 9]
    chosen_positions = np.array([0, 1])
    pool.add(candidates[chosen_positions])
    assert pool.labeled.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(StrategyError, match=r"already-labeled samples \[0\]"):
        pool.add(np.array([0]))  # adding positions instead of indices is caught
    with pytest.raises(StrategyError, match="same sample twice"):
        pool.add(np.array([7, 7]))
    with pytest.raises(StrategyError, match="out of range"):
        pool.add(np.array([10]))


def test_candidate_subsample_is_unlabeled_and_reproducible() -> None:
    pool = PoolState(1000, np.arange(0, 1000, 2))
    a = pool.candidates(50, numpy_rng(0, 1, "candidates"))
    assert len(a) == 50 and not pool.is_labeled(a).any()
    assert a.tolist() == pool.candidates(50, numpy_rng(0, 1, "candidates")).tolist()
    assert len(pool.candidates(None, numpy_rng(0, 1, "c"))) == 500


def test_initial_sets() -> None:
    y = np.repeat(np.arange(4), [100, 100, 100, 3])
    bal = initial_set(y, 40, "balanced", np.random.default_rng(0))
    counts = np.bincount(y[bal]).tolist()
    assert counts[3] == 3 and min(counts[:3]) >= 10  # the small class gives all it has, the rest is filled
    assert np.bincount(y[initial_set(y, 8, "balanced", np.random.default_rng(0))]).tolist() == [2, 2, 2, 2]
    assert len(bal) == 40 and len(set(bal)) == 40
    rnd = initial_set(y, 40, "random", np.random.default_rng(0))
    assert len(set(rnd)) == 40 and rnd.tolist() == initial_set(y, 40, "random", np.random.default_rng(0)).tolist()


def test_seeds_depend_on_every_part_of_the_key() -> None:
    assert derive_seed(0, 1, "init") == derive_seed(0, 1, "init")
    assert len({derive_seed(0, 1, "init"), derive_seed(1, 1, "init"), derive_seed(0, 2, "init"),
                derive_seed(0, 1, "dropout")}) == 4


def test_simulated_oracle() -> None:
    oracle = SimulatedOracle(np.array([5, 6, 7]))
    assert isinstance(oracle, Oracle) and oracle.label(np.array([2, 0])).tolist() == [7, 5]


BASE = {"datasets": ["fashion-mnist"], "strategies": ["random", "margin"], "seeds": [0]}


@pytest.mark.parametrize("override, message", [
    ({"strategies": ["random", "bold"]}, "strategies: strategy 'bold' is unknown"),
    ({"strategies": ["bald:sample=3"]}, "strategies: strategy 'bald': .*its parameters are: samples"),
    ({"strategies": ["margin", {"name": "margin"}]}, r"strategies: \['margin'\] appear twice"),
    ({"datasets": ["mnist"]}, "datasets: dataset 'mnist' is unknown"),
    ({"loop": {"initial": -5}}, "loop.initial: -5 must be a non-negative integer"),
    ({"loop": {"query": 0, "rounds": 3}}, "loop.query: 0 labels per round with 3 rounds"),
    ({"loop": {"rounds": 2, "budget": 5000}}, "give rounds or budget, not both"),
    ({"loop": {"candidates": 10, "query": 100}}, r"loop.candidates: 10 is smaller than the largest query \(100\)"),
    ({"loop": {"candidates": 30, "schedule": "20x2,50x1"}}, r"loop.candidates: 30 is smaller than the largest query \(50\)"),
    ({"loop": {"schedule": "20x2,50"}}, "loop.schedule: '50' is not SIZExROUNDS with positive integers"),
    ({"loop": {"schedule": "0x3"}}, "loop.schedule: '0x3' is not SIZExROUNDS"),
    ({"loop": {"schedule": []}}, "loop.schedule: .* is not a schedule"),
    ({"loop": {"schedule": "20x9", "rounds": 3}}, "give schedule, or rounds or budget, not both"),
    ({"loop": {"initial_set": "greedy"}}, "loop.initial_set: 'greedy' is unknown"),
    ({"loop": {"epochs": 3}}, r"loop: unknown field\(s\) \['epochs'\]"),
    ({"train": {"epochs": 0}}, "train.epochs: 0 must be a positive integer"),
    ({"train": {"device": "tpu"}}, "train.device: 'tpu' is unknown"),
    ({"seeds": [-1]}, "seeds must be a non-empty list of non-negative integers"),
    ({"full_data": "some"}, "full_data 'some' is unknown"),
    ({"workers": 0}, "grid.yaml: workers must be an integer >= 1"),
    ({"workers": "4"}, "grid.yaml: workers: '4' is not an integer"),
    ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
])
def test_config_validation(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**BASE, **override}, where="grid.yaml")


def test_schedule_sets_the_rounds_and_their_sizes() -> None:
    loop = LoopConfig(initial=20, schedule=["20x3", "100X2"]).validate()
    assert loop.schedule == "20x3,100x2" and loop.query == 20
    assert loop.n_rounds() == 5 and loop.final_labels() == 280
    assert loop.query_sizes() == [20, 20, 20, 100, 100]
    assert [loop.query_size(r, n) for r, n in ((0, 20), (3, 80), (4, 180), (5, 280))] == [20, 100, 100, 0]
    assert loop.describe_queries() == "3 rounds x 20, 2 rounds x 100"
    assert LoopConfig(initial=10, query=30, budget=100).validate().query_sizes() == [30, 30, 30]
    assert LoopConfig(initial=10, query=30, budget=95).validate().query_sizes() == [30, 30, 25]


@pytest.mark.parametrize("old, new, grows", [
    ({"rounds": 2}, {"rounds": 3}, True),
    ({"rounds": 0}, {"schedule": "30x1,10x2"}, True),  # the initial set alone grows into any schedule
    ({"rounds": 3}, {"rounds": 2}, False),
    ({"budget": 95}, {"budget": 130}, True),            # the partial last round is run again, larger
    ({"rounds": 2}, {"schedule": "30x2,10x2"}, True),  # same query sizes, then more rounds
    ({"schedule": "30x2"}, {"schedule": "30x2,100x1"}, True),
    ({"schedule": "30x2,100x1"}, {"schedule": "30x2"}, False),
    ({"schedule": "30x2"}, {"schedule": "20x1,30x2"}, False),
    ({"rounds": 2}, {"query": 20, "rounds": 3}, False),
])
def test_which_loop_changes_extend_a_run(old: dict, new: dict, grows: bool) -> None:
    def config(loop: dict) -> ExperimentConfig:
        return config_from_dict({**BASE, "loop": {"initial": 40, "query": 30, **loop}})
    assert config(new).extends(config(old).result_fingerprint()) is grows


@pytest.mark.parametrize("initial_set, embedder, recorded", [
    ("typiclust", None, "pca-unit"), ("probcover", "pca", "pca-unit"), ("typiclust", "pca-raw", "pca-raw"),
    ("typiclust", "python:my.embed", "python:my.embed"), ("random", None, None),
])
def test_the_fingerprint_records_the_default_embedder_by_its_version(initial_set: str, embedder: str | None,
                                                                     recorded: str | None) -> None:
    cfg = config_from_dict({**BASE, "loop": {"initial_set": initial_set, "embedder": embedder}})
    assert cfg.result_fingerprint()["loop"]["embedder"] == recorded
    assert cfg.loop.embedder == embedder  # the config the user reads keeps what they wrote


def test_budget_larger_than_pool() -> None:
    cfg = config_from_dict({**BASE, "loop": {"initial": 1000, "query": 1000, "rounds": 9}})
    cfg.check_pool_size("tiny", 10000)  # exactly fits
    with pytest.raises(ConfigError, match="budget of 10000 labels .* exceeds the 3000 training images of tiny"):
        cfg.check_pool_size("tiny", 3000)


def test_yaml_and_toml_files(tmp_path: Path) -> None:
    y = tmp_path / "g.yaml"
    y.write_text("datasets: [fashion-mnist]\nstrategies: random,entropy\nseeds: [0, 1]\nloop: {budget: 3000}\n")
    cfg = load_config(y)
    assert cfg.strategies == ["random", "entropy"] and cfg.loop.n_rounds() == 2 and cfg.workers == 1
    y.write_text("datasets: [fashion-mnist]\nstrategies: [random]\nworkers: 3\n")
    cfg = load_config(y)
    assert cfg.workers == 3 and "workers" not in cfg.result_fingerprint()
    t = tmp_path / "g.toml"
    t.write_text('datasets = [{name = "cifar10", imbalance = "step:10"}]\nstrategies = ["margin"]\n[train]\nepochs = 3\n')
    cfg = load_config(t)
    assert cfg.datasets[0].key == "cifar10[step:10]" and cfg.train.epochs == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="missing.yaml: cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_are_valid() -> None:
    folder = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(folder.glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        load_config(f)
