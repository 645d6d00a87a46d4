"""Randomness inside a model drawn from explicit generators, never the global RNG."""
from __future__ import annotations

import math

import torch
from torch import nn


class SeededDropout(nn.Module):
    """Inverted dropout whose masks come from ``self.generator`` when one is set.

    ``torch.nn.Dropout`` always draws from the global RNG; the trainer sets a
    per-round generator here so that dropout masks are reproducible on their own.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.generator is None:
            return nn.functional.dropout(x, self.p, training=True)
        if not same_device(self.generator.device, x.device):
            raise ValueError(f"SeededDropout: generator on {self.generator.device} but input on {x.device}; "
                             "create the generator on the model's device")
        return x * keep_mask(x, 1 - self.p, self.generator) / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def keep_mask(x: torch.Tensor, keep: float, generator: torch.Generator) -> torch.Tensor:
    """A 0/1 mask shaped like ``x``, in ``x``'s dtype, each entry 1 with probability ``keep``.

    Float32 uniforms compared with ``keep``: on a CPU about twice as fast as ``bernoulli_``, with the same
    distribution (BENCHMARKS.md, ``training-step-*`` and ``mc-dropout-*``). 4-D masks are drawn in channels-last
    order, the CPU's training layout, whatever ``x``'s layout, so NCHW and channels-last batches of the same
    images get the same masks.
    """
    layout = torch.channels_last if x.dim() == 4 else torch.contiguous_format
    draws = torch.empty(x.shape, dtype=torch.float32, device=x.device, memory_format=layout)
    return draws.uniform_(generator=generator).lt_(keep).to(x.dtype)


def same_device(a: torch.device, b: torch.device) -> bool:
    """True when ``a`` and ``b`` are one device; an index left out (``cuda``) means the current one (``cuda:0``)."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def set_dropout_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    for m in model.modules():
        if isinstance(m, SeededDropout):
            m.generator = generator


INIT_SCHEMES = ("torch", "glorot")


@torch.no_grad()
def init_weights(model: nn.Module, generator: torch.Generator, scheme: str = "torch") -> None:
    """Draw every conv and dense layer's weights from ``generator``; BN gets gamma 1 / beta 0.

    ``torch``: PyTorch's default, weights and biases uniform in +-1/sqrt(fan_in).
    ``glorot``: Keras' default, Glorot-uniform kernels and zero biases; the reference CNN scores
    lower with it (BENCHMARKS.md, sections ``recipe-fashion-mnist-5000-init*``).
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init scheme '{scheme}' is unknown; choose {', '.join(INIT_SCHEMES)}")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight
            receptive = w[0][0].numel() if w.dim() > 2 else 1
            fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
            if scheme == "glorot":
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                w.uniform_(-limit, limit, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            else:
                bound = 1.0 / math.sqrt(fan_in)
                w.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()
