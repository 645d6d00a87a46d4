from __future__ import annotations

import numpy as np
import pytest
import torch

import alkit.training.self_training as self_training
from alkit.errors import ConfigError
from alkit.training.config import TrainConfig
from alkit.training.inference import predict_logits
from alkit.training.self_training import confident_pseudo_labels, fit_self_trained
from alkit.training.trainer import Normalizer
from tests.training.test_trainer import CPU, _model, _quadrant_data

NORM = Normalizer(np.array([0.3], np.float32), np.array([0.3], np.float32))


def test_confident_pseudo_labels_take_the_most_confident_per_predicted_class() -> None:
    logits = np.array([[2.0, 0.0, 0.0],   # class 0, confident
                       [0.5, 0.0, 0.0],   # class 0, less so
                       [3.0, 0.0, 0.0],   # class 0, most confident
                       [0.0, 1.0, 0.0],   # class 1, the only one
                       [0.0, 0.0, 0.2],   # class 2
                       [0.0, 0.0, 0.2]],  # class 2, tied with the row above: the earlier position wins
                      dtype=np.float32)
    positions, classes = confident_pseudo_labels(logits, 2)
    assert positions.tolist() == [0, 2, 3, 4, 5]
    assert classes.tolist() == [0, 0, 1, 2, 2]
    positions, classes = confident_pseudo_labels(logits, 1)
    assert positions.tolist() == [2, 3, 4] and classes.tolist() == [0, 1, 2]
    assert confident_pseudo_labels(logits, 0)[0].size == 0
    assert confident_pseudo_labels(np.zeros((0, 3), np.float32), 5)[0].size == 0


def test_pseudo_labels_must_be_a_count() -> None:
    with pytest.raises(ConfigError, match="train.pseudo_labels: -1 must be >= 0"):
        TrainConfig(pseudo_labels=-1).validate()
    with pytest.raises(ConfigError, match="train.pseudo_labels"):
        TrainConfig(pseudo_labels=1.5).validate()


def _run(cfg: TrainConfig, x, y, labeled, unlabeled, seed: int = 0):
    model = _model()
    out = fit_self_trained(model, x, y, labeled, unlabeled, cfg, NORM, CPU, "fp32", np.random.default_rng(seed),
                           torch.Generator().manual_seed(seed))
    return model, out


def test_off_it_is_plain_fit_and_without_a_pool_too() -> None:
    x, y = _quadrant_data(64)
    labeled, unlabeled = np.arange(16), np.arange(16, 64)
    cfg = TrainConfig(epochs=2, batch_size=8, min_steps=0)
    plain, (_, n_off) = _run(cfg, x, y, labeled, unlabeled)
    empty, (_, n_empty) = _run(TrainConfig(epochs=2, batch_size=8, min_steps=0, pseudo_labels=5), x, y, labeled,
                               np.zeros(0, np.int64))
    assert n_off == n_empty == 0
    for a, b in zip(plain.state_dict().values(), empty.state_dict().values()):
        assert torch.equal(a, b)


def test_retrains_from_the_start_on_labeled_plus_predicted_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _quadrant_data(208)
    labeled, unlabeled = np.arange(8), np.arange(8, 208)
    y_known = y.copy()
    y_known[unlabeled] = -1  # as the loop passes them: a pseudo-label must come from the model, never from y
    trainings = []
    real_fit = self_training.fit

    def recording_fit(model, x_, y_, indices, *args, **kwargs):
        trainings.append((next(model.parameters()).detach().clone(), np.array(indices), y_[indices].copy()))
        return real_fit(model, x_, y_, indices, *args, **kwargs)

    monkeypatch.setattr(self_training, "fit", recording_fit)
    cfg = TrainConfig(epochs=3, batch_size=16, min_steps=60, pseudo_labels=10)
    model, (loss, n) = _run(cfg, x, y_known, labeled, unlabeled)
    assert (y_known[unlabeled] == -1).all() and np.isfinite(loss)
    assert len(trainings) == 2
    (start1, idx1, _), (start2, idx2, targets2) = trainings
    assert torch.equal(start1, start2)  # the second training starts where the first did
    assert idx1.tolist() == labeled.tolist()
    pseudo = np.setdiff1d(idx2, labeled)
    assert len(pseudo) == n and 0 < n <= 40 and np.isin(labeled, idx2).all() and np.isin(pseudo, unlabeled).all()
    assert (targets2 >= 0).all()
    per_class = np.bincount(targets2[np.isin(idx2, pseudo)], minlength=4)
    assert per_class.max() <= 10
    # on this easy task the teacher's confident picks are right: the pseudo-labels are the true classes
    assert (targets2[np.isin(idx2, pseudo)] == y[pseudo]).mean() >= 0.9
    xt, yt = _quadrant_data(128, seed=1)
    assert (predict_logits(model, xt, None, NORM, CPU, "fp32").argmax(1) == yt).mean() > 0.8


def test_reproducible_from_its_generators() -> None:
    x, y = _quadrant_data(96)
    cfg = TrainConfig(epochs=2, batch_size=16, min_steps=20, pseudo_labels=8)
    a, (_, na) = _run(cfg, x, y, np.arange(12), np.arange(12, 96), seed=5)
    b, (_, nb) = _run(cfg, x, y, np.arange(12), np.arange(12, 96), seed=5)
    assert na == nb
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
