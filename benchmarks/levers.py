"""alkit's speed levers, each with the patch that turns it back to what alkit did before it.

The benchmarks time alkit with a lever off beside alkit as it is, in the same run, so that each lever's
gain is a ratio measured on one machine at one time.
"""
from __future__ import annotations

import contextlib
from typing import Callable
from unittest import mock

import torch

from alkit.models import seeded
from alkit.training import trainer


def bernoulli_mask(x: torch.Tensor, keep: float, generator: torch.Generator) -> torch.Tensor:
    """Dropout's keep mask as alkit drew it before ``keep_mask``: ``bernoulli_`` in ``x``'s dtype."""
    return torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(keep, generator=generator)


LEVERS: dict[str, tuple[str, Callable[[], contextlib.AbstractContextManager]]] = {
    # lever -> (row suffix with it off, the patch that turns it off)
    "adam": (", PyTorch's default Adam (not fused)",
             lambda: mock.patch.object(trainer, "fused_adam_applies", lambda params: False)),
    "masks": (", bernoulli_ dropout masks", lambda: mock.patch.object(seeded, "keep_mask", bernoulli_mask)),
}


def levers_off(off: tuple[str, ...]) -> contextlib.ExitStack:
    """A context in which the levers named in ``off`` act as before them."""
    stack = contextlib.ExitStack()
    for lever in off:
        stack.enter_context(LEVERS[lever][1]())
    return stack


def suffix(off: tuple[str, ...]) -> str:
    """The row-name suffix that says which levers are off."""
    return "".join(LEVERS[lever][0] for lever in off)
