"""The study's reference CNN, a layer-for-layer PyTorch port of its Keras model.

Conv(32)+ReLU, BN, Conv(32)+ReLU, BN, MaxPool 2, Dropout .25, Conv(64)+ReLU, BN,
Conv(64)+ReLU, BN, Dropout .25, Flatten, Dense 512+ReLU, BN, Dropout .5, Dense(classes).
Convolutions are 3x3 with Keras' default 'valid' padding. At 32x32x3 with 10 classes it has
3,349,418 trainable parameters and 1,408 BN running statistics, exactly as the Keras model.
The loop draws the weights with :func:`alkit.models.seeded.init_weights`: PyTorch's default
scheme unless ``init: glorot`` asks for Keras' (worse here: BENCHMARKS.md, ``recipe-fashion-mnist-5000-init``).

One deliberate difference: BN running statistics update with momentum 0.1 (PyTorch's
default) instead of Keras' 0.01 (``momentum=0.99`` in Keras' convention). With a few
hundred optimizer steps, as on 1,000 labels, Keras' rate leaves the running statistics
near their initial values and test accuracy near chance. Pass ``bn_momentum=0.01`` for Keras' rate.
"""
from __future__ import annotations

import torch
from torch import nn

from alkit.errors import DatasetError
from alkit.models.seeded import SeededDropout


def _conv_out(size: int, n_convs: int) -> int:
    return size - 2 * n_convs


def check_input_shape(shape: tuple[int, int, int], where: str) -> None:
    """Refuse images too small for the reference CNN (two 3x3 convolutions, a 2x2 pool, two more)."""
    h, w, _ = shape
    if _conv_out(_conv_out(h, 2) // 2, 2) < 1 or _conv_out(_conv_out(w, 2) // 2, 2) < 1:
        raise DatasetError(f"{where}: images are {h}x{w}, too small for the reference CNN (it needs at least "
                           "14x14); resize them (--image-size for a folder) or pass your own model")


class ReferenceCNN(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int] = (32, 32, 3), num_classes: int = 10,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        h, w, c = input_shape
        fh, fw = _conv_out(_conv_out(h, 2) // 2, 2), _conv_out(_conv_out(w, 2) // 2, 2)
        if fh < 1 or fw < 1:
            raise ValueError(f"input shape {input_shape} is too small for the reference CNN (needs at least 14x14)")
        self.input_shape = (h, w, c)
        self.num_classes = num_classes
        bn = dict(eps=1e-3, momentum=bn_momentum)
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3), nn.ReLU(), nn.BatchNorm2d(32, **bn),
            nn.Conv2d(32, 32, 3), nn.ReLU(), nn.BatchNorm2d(32, **bn),
            nn.MaxPool2d(2), SeededDropout(0.25),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.BatchNorm2d(64, **bn),
            nn.Conv2d(64, 64, 3), nn.ReLU(), nn.BatchNorm2d(64, **bn),
            SeededDropout(0.25),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * fh * fw, 512), nn.ReLU(), nn.BatchNorm1d(512, **bn), SeededDropout(0.5),
            nn.Linear(512, num_classes),
        )

    STEM_LAYERS = 7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The layers before the first dropout: MC-dropout runs them once per batch, not once per sample."""
        return self.features[:self.STEM_LAYERS](x)

    def after_stem(self, h: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features[self.STEM_LAYERS:](h))
