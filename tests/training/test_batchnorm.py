"""Re-estimating BatchNorm's statistics: exact means over the given images, dropout off, state restored."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from alkit.models.reference_cnn import ReferenceCNN
from alkit.models.seeded import SeededDropout, init_weights
from alkit.training.batchnorm import recalibrate_batchnorm
from alkit.training.config import TrainConfig
from alkit.training.trainer import Normalizer, fit

CPU = torch.device("cpu")
NORM = Normalizer(np.array([0.5], np.float32), np.array([0.25], np.float32))


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 6, 6, 1)).astype(np.uint8)


class _Net(nn.Module):
    """Dropout before the BatchNorm layer, so dropout being on would change the statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = SeededDropout(0.5)
        self.bn = nn.BatchNorm1d(36, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.drop(x.flatten(1)))


def test_statistics_are_the_mean_over_the_given_images_with_dropout_off() -> None:
    x = _images(50)
    net = _Net().train()
    chosen = np.arange(7, 47)
    assert recalibrate_batchnorm(net, x, chosen, NORM, CPU, batch_size=16) == 1
    inputs = NORM(x[chosen], CPU).flatten(1)
    batches = [inputs[i:i + 16] for i in range(0, 40, 16)]
    torch.testing.assert_close(net.bn.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))
    torch.testing.assert_close(net.bn.running_var, torch.stack([b.var(0) for b in batches]).mean(0))
    assert net.training and net.bn.momentum == 0.1  # mode and momentum restored


def test_a_last_single_image_batch_joins_the_previous_one_and_no_bn_means_no_change() -> None:
    x = _images(17)
    net = _Net()
    assert recalibrate_batchnorm(net, x, np.arange(17), NORM, CPU, batch_size=16) == 1  # 16 + 1 would fail in BN
    plain = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
    assert recalibrate_batchnorm(plain, x, np.arange(17), NORM, CPU) == 0
    assert recalibrate_batchnorm(_Net(), x, np.arange(1), NORM, CPU) == 0


def test_fit_recalibrates_by_default_and_only_when_asked() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 16, 16, 1)).astype(np.uint8)
    y = rng.integers(0, 4, 40)
    stats = {}
    for on in (True, False):
        model = ReferenceCNN((16, 16, 1), 4)
        init_weights(model, torch.Generator().manual_seed(0))
        fit(model, x, y, np.arange(40), TrainConfig(epochs=1, min_steps=3, bn_recalibration=on), NORM, CPU, "fp32",
            np.random.default_rng(0), torch.Generator().manual_seed(0))
        stats[on] = model.features[2].running_mean.clone()
    assert TrainConfig().bn_recalibration
    assert not torch.allclose(stats[True], stats[False])
    reference = ReferenceCNN((16, 16, 1), 4)
    init_weights(reference, torch.Generator().manual_seed(0))
    fit(reference, x, y, np.arange(40), TrainConfig(epochs=1, min_steps=3, bn_recalibration=False), NORM, CPU, "fp32",
        np.random.default_rng(0), torch.Generator().manual_seed(0))
    recalibrate_batchnorm(reference, x, np.arange(40), NORM, CPU)
    torch.testing.assert_close(reference.features[2].running_mean, stats[True])
