"""Models: the reference CNN, device and precision selection, and the summary table."""
from __future__ import annotations

from typing import Callable

from torch import nn

from alkit.models.device import resolve_device, resolve_precision
from alkit.models.reference_cnn import ReferenceCNN
from alkit.models.summary import count_parameters, summary

ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]


def reference_cnn(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return ReferenceCNN(input_shape, num_classes)


__all__ = ["ModelFactory", "ReferenceCNN", "count_parameters", "reference_cnn", "resolve_device",
           "resolve_precision", "summary"]
