"""Re-estimating BatchNorm's running statistics after training.

During training BatchNorm keeps an exponential average of each batch's mean and variance, and
evaluation uses that average. After few optimizer steps (tens of labels) the average still carries
its initial values, so evaluation normalises with the wrong statistics. Re-estimating them in one
pass without gradients, with dropout off as at evaluation, replaces the average by the exact mean
over the given images.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from alkit.training.trainer import Normalizer

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def recalibrate_batchnorm(model: nn.Module, x: np.ndarray, indices: np.ndarray, normalizer: "Normalizer",
                          device: torch.device, batch_size: int = 256) -> int:
    """Replace every BatchNorm layer's running mean and variance by their average over ``x[indices]``.

    Only the BatchNorm layers are in training mode during the pass, so dropout is off and the statistics
    are those evaluation sees. Returns the number of layers re-estimated (0: the model has none, or fewer
    than two images were given, and nothing changed).
    """
    layers = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    indices = np.sort(np.asarray(indices))
    if not layers or indices.size < 2:
        return 0
    was_training = model.training
    saved = [m.momentum for m in layers]
    model.to(device).eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch counts equally
        m.train()
    try:
        with torch.no_grad():
            starts = list(range(0, indices.size, batch_size))
            if indices.size - starts[-1] < 2 and len(starts) > 1:
                starts.pop()
            for i, start in enumerate(starts):
                stop = starts[i + 1] if i + 1 < len(starts) else indices.size
                model(normalizer(x[indices[start:stop]], device))
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum
        model.train(was_training)
    return len(layers)
