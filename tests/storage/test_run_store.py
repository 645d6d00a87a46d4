"""The SQLite run store: configuration checks on resume."""
from pathlib import Path

import pytest

from alkit.errors import RunStoreError
from alkit.storage.run_store import RunStore, config_diff


def test_config_diff_names_nested_settings() -> None:
    old = {"seeds": [0], "train": {"epochs": 2, "lr": 0.1}, "loop": {"query": 5}}
    new = {"seeds": [0, 1], "train": {"epochs": 2, "lr": 0.2}, "loop": {"query": 5}, "out": "x"}
    assert config_diff(old, new) == ["out", "seeds", "train.lr"]
    assert config_diff(old, old) == []


OLD = {"bn_recalibration": False, "scoring": "fp32", "class_balance": "none", "pseudo_labels": 0}  # what folders made before these fields ran with


def test_a_run_folder_from_before_lr_schedule_resumes_with_constant_lr_and_glorot(tmp_path: Path) -> None:
    config = {"train": {"epochs": 2, "lr_schedule": "constant", "init": "glorot", **OLD}, "seeds": [0]}
    legacy = {"train": {"epochs": 2}, "seeds": [0]}
    with RunStore(tmp_path / "runs.sqlite") as store:
        store.check_config(legacy)
        store.check_config(config)
        with pytest.raises(RunStoreError, match=r"differs in: train.lr_schedule"):
            store.check_config({"train": {"epochs": 2, "lr_schedule": "cosine", "init": "glorot", **OLD}, "seeds": [0]})
        with pytest.raises(RunStoreError, match=r"differs in: train.init\)"):
            store.check_config({"train": {"epochs": 2, "lr_schedule": "constant", "init": "torch", **OLD}, "seeds": [0]})


def test_a_run_folder_from_before_init_resumes_with_glorot(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.sqlite") as store:
        store.check_config({"train": {"lr_schedule": "cosine"}})
        store.check_config({"train": {"lr_schedule": "cosine", "init": "glorot", **OLD}})
        with pytest.raises(RunStoreError, match=r"differs in: train.init\)"):
            store.check_config({"train": {"lr_schedule": "cosine", "init": "torch", **OLD}})


def test_a_run_folder_from_before_the_training_rule_names_the_fields_to_set(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.sqlite") as store:
        store.check_config({"train": {"lr_schedule": "cosine", "init": "torch", "min_steps": 0}})
        with pytest.raises(RunStoreError, match=r"differs in: train.bn_recalibration, train.min_steps, train.scoring"):
            store.check_config({"train": {"lr_schedule": "cosine", "init": "torch", "min_steps": None,
                                          "bn_recalibration": True, "scoring": "auto", "class_balance": "none",
                                          "pseudo_labels": 0}})
        store.check_config({"train": {"lr_schedule": "cosine", "init": "torch", "min_steps": 0, **OLD}})


def test_a_run_folder_from_before_class_balance_resumes_with_plain_cross_entropy(tmp_path: Path) -> None:
    before = {"lr_schedule": "cosine", "init": "torch", "bn_recalibration": True, "scoring": "auto"}
    with RunStore(tmp_path / "runs.sqlite") as store:
        store.check_config({"train": before})
        store.check_config({"train": {**before, "class_balance": "none", "pseudo_labels": 0}})
        with pytest.raises(RunStoreError, match=r"differs in: train.class_balance\)"):
            store.check_config({"train": {**before, "class_balance": "reweight", "pseudo_labels": 0}})


def test_a_run_folder_from_before_self_training_resumes_without_pseudo_labels(tmp_path: Path) -> None:
    before = {"lr_schedule": "cosine", "init": "torch", "bn_recalibration": True, "scoring": "auto",
              "class_balance": "none"}
    with RunStore(tmp_path / "runs.sqlite") as store:
        store.check_config({"train": before})
        store.check_config({"train": {**before, "pseudo_labels": 0}})
        with pytest.raises(RunStoreError, match=r"differs in: train.pseudo_labels\)"):
            store.check_config({"train": {**before, "pseudo_labels": 1000}})


def test_a_label_free_folder_from_before_versioned_embedders_resumes_only_on_unscaled_pca(tmp_path: Path) -> None:
    def loop(initial_set: str, embedder: str | None) -> dict:
        return {"loop": {"initial_set": initial_set, "embedder": embedder}, "seeds": [0]}

    with RunStore(tmp_path / "typiclust.sqlite") as store:
        store.check_config(loop("typiclust", None))  # as stored when None meant PCA without unit rows
        with pytest.raises(RunStoreError, match=r"differs in: loop.embedder\); its label-free initial sets were chosen "
                                                r"on unscaled PCA rows.*--embedder pca-raw"):
            store.check_config(loop("typiclust", "pca-unit"))
        store.check_config(loop("typiclust", "pca-raw"))
    with RunStore(tmp_path / "random.sqlite") as store:
        store.check_config(loop("random", None))  # no embedder in use: nothing to resolve
        store.check_config(loop("random", None))
    with RunStore(tmp_path / "today.sqlite") as store:
        store.check_config(loop("probcover", "pca-unit"))
        with pytest.raises(RunStoreError, match=r"differs in: loop.embedder\); use a new"):
            store.check_config(loop("probcover", "pca-raw"))


def test_a_store_from_before_the_scoring_column_gains_it(tmp_path: Path) -> None:
    import sqlite3

    import numpy as np

    path = tmp_path / "runs.sqlite"
    with RunStore(path):
        pass
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE rounds DROP COLUMN scoring")
    db.commit()
    db.close()
    with RunStore(path) as store:
        row = {"dataset": "d", "strategy": "margin", "seed": 0, "round": 0, "n_labeled": 10, "scoring": "fp32"}
        store.commit_round(row, np.array([1, 2]))
        assert store.rounds()[0]["scoring"] == "fp32"


def test_an_extension_is_stored_only_when_the_caller_saves_it(tmp_path: Path) -> None:
    old, new = {"loop": {"rounds": 2}}, {"loop": {"rounds": 4}}
    grows = lambda stored: stored["loop"]["rounds"] <= 4  # noqa: E731
    with RunStore(tmp_path / "runs.sqlite") as store:
        store.check_config(old)
        assert store.check_config(new, extends=grows) is True
        assert store.config() == old
        assert store.check_config(new, extends=grows) is True
        store.save_config(new)
        assert store.config() == new and store.check_config(new, extends=grows) is False
        with pytest.raises(RunStoreError, match="loop.rounds"):
            store.check_config({"loop": {"rounds": 9}}, extends=lambda stored: False)
