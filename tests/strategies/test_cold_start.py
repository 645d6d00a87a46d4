"""Label-free initial sets: TypiClust and ProbCover on hand-made point sets, and in a run."""
from pathlib import Path

import numpy as np
import pytest

import alkit
from alkit.errors import ConfigError
from alkit.strategies.cold_start import (ball_graph, choose_delta, knn_mean_distance, load_embedder, pca_embedder,
                                         probcover, typiclust)


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three far-apart blobs of 40 points; each blob's point nearest its centre is the most typical."""
    g = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    z = np.concatenate([c + g.normal(size=(40, 2)) for c in centres])
    return z, np.repeat(np.arange(3), 40), centres


def test_knn_mean_distance_and_ball_graph_match_brute_force() -> None:
    z = np.random.default_rng(1).normal(size=(30, 3))
    d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(knn_mean_distance(z, 4, chunk=7), np.sort(d, 1)[:, :4].mean(1), rtol=1e-9)
    np.fill_diagonal(d, 0)
    for row, ball in zip(d, ball_graph(z, 1.0, chunk=4)):
        assert ball.tolist() == np.flatnonzero(row <= 1.0).tolist()


def test_typiclust_takes_the_most_typical_point_of_each_cluster() -> None:
    z, blob, _ = _blobs()
    chosen = typiclust(z, 3, np.random.default_rng(0), knn=10)
    assert sorted(blob[chosen].tolist()) == [0, 1, 2]  # one per cluster
    for i in chosen:
        members = np.flatnonzero(blob == blob[i])
        typicality = 1 / knn_mean_distance(z[members], 10)
        assert i == members[np.argmax(typicality)]
    assert typiclust(z, 3, np.random.default_rng(0), knn=10).tolist() == chosen.tolist()


def test_probcover_is_greedy_max_coverage() -> None:
    z = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [10.0]])
    chosen = probcover(z, 3, np.random.default_rng(0), delta=0.15)
    assert chosen[0] == 1 and chosen[1] in (3, 4) and chosen[2] == 5  # 3 covered, then 2, then 1
    assert len(probcover(z, 6, np.random.default_rng(0), delta=0.15)) == 6  # past full coverage: random fill


def test_probcover_delta_keeps_balls_pure() -> None:
    z, blob, _ = _blobs()
    delta = choose_delta(z, 3, np.random.default_rng(0))
    assert 0 < delta < 19  # never spans two blobs
    chosen = probcover(z, 3, np.random.default_rng(0), delta=delta)
    assert sorted(blob[chosen].tolist()) == [0, 1, 2]


def test_pca_embedder_is_label_free_and_small() -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(100, 8, 8, 1), dtype=np.uint8)
    z = pca_embedder(x, dim=10)
    assert z.shape == (100, 10) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    raw = pca_embedder(x, dim=10, normalise=False)
    np.testing.assert_allclose(z, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    x = np.random.default_rng(1).integers(0, 256, size=(80, 8, 8, 1), dtype=np.uint8)
    for name in (None, "pca", "pca-unit"):
        np.testing.assert_array_equal(load_embedder(name)(x), pca_embedder(x))
    np.testing.assert_array_equal(load_embedder("pca-raw")(x), pca_embedder(x, normalise=False))
    with pytest.raises(ConfigError, match="embedder 'pca2': give pca, pca-unit, pca-raw or module:function"):
        load_embedder("pca2")


def test_typiclust_on_the_default_embedder_groups_images_by_pattern_not_contrast() -> None:
    """Two patterns (left half lit, right half lit), each at faint and strong contrast: on unnormalised PCA the
    strong images lie far out and make up clusters of their own; scaled to unit length, each pattern is one cluster
    whatever its contrast, so two picks take one image of each pattern."""
    rng = np.random.default_rng(0)
    x = np.zeros((200, 8, 8, 1), np.float32)
    pattern = np.arange(200) % 2
    x[pattern == 0, :, :4] = 1.0
    x[pattern == 1, :, 4:] = 1.0
    strength = np.where(np.arange(200) % 4 < 2, 40.0, 250.0)
    x = np.clip(x * strength[:, None, None, None] + rng.normal(0, 3, x.shape), 0, 255).astype(np.uint8)
    z = pca_embedder(x, dim=5)
    for seed in range(5):  # unnormalised, k-means splits by contrast for some of these seeds
        assert sorted(pattern[typiclust(z, 2, np.random.default_rng(seed))]) == [0, 1], seed


def _pixels(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float32)


@pytest.mark.parametrize("kind", ["typiclust", "probcover"])
def test_label_free_initial_set_in_a_run_is_shared_by_every_strategy(kind: str, small_npz: Path,
                                                                      tmp_path: Path) -> None:
    res = alkit.run("npz", ["random", "margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / kind,
                    initial=20, query=20, rounds=1, epochs=1, min_steps=0, initial_set=kind, full_data="none", progress=False,
                    report=False)
    assert {r["n_labeled"] for r in res.rows if r["round"] == 0} == {20}
    from alkit.storage.run_store import RunStore

    with RunStore(tmp_path / kind / "runs.sqlite") as store:
        init = store.initial_set("npz", 0)
        assert store.config()["loop"]["initial_set"] == kind
    y = np.load(small_npz)["y_train"]
    assert len(set(y[init].tolist())) >= 6  # typical, diverse picks cover most of the 10 classes
    own = alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / f"{kind}-own",
                    initial=20, query=20, rounds=1, epochs=1, min_steps=0, initial_set=kind, embedder=_pixels, full_data="none",
                    progress=False, report=False)
    assert own.rows[0]["n_labeled"] == 20
