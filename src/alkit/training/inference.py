"""Forward passes over a pool: logits, penultimate-layer embeddings, and MC-dropout samples.

Embeddings are the input of the model's last ``nn.Linear`` (read by a forward hook), or
``model.embed(x)`` when the model defines ``embed`` and ``head`` (then ``head(embed(x))``
must equal ``model(x)``). MC-dropout passes keep BatchNorm in eval mode and switch only the
dropout layers on, drawing their masks from a generator passed in, never the global RNG. A model
that defines ``stem(x)`` and ``after_stem(h)`` (``after_stem(stem(x))`` equal to ``model(x)``, no
dropout in ``stem``) has its stem run once per batch instead of once per sample: the same samples,
for the cost of the layers after it.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from alkit.errors import StrategyError
from alkit.models.seeded import SeededDropout, set_dropout_generator
from alkit.training.trainer import Normalizer, autocast, channels_last_first, reproducible_kernels


DROPOUT_TYPES = (SeededDropout, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` in registration order: its input is the embedding."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise StrategyError(f"{type(model).__name__} has no nn.Linear layer to take embeddings from; "
                            "define embed(x) and head(z) methods on the model")
    return linears[-1]


class _Embedder:
    """Runs ``model`` and returns (logits, embeddings or None) for a batch."""

    def __init__(self, model: nn.Module, want: bool) -> None:
        self.model, self.want = model, want
        self.own = want and callable(getattr(model, "embed", None)) and callable(getattr(model, "head", None))
        self.captured: torch.Tensor | None = None
        self.hook = None
        if want and not self.own:
            self.hook = last_linear(model).register_forward_hook(self._capture)

    def _capture(self, _module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        self.captured = inputs[0]

    def __call__(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.own:
            z = self.model.embed(xb)
            return self.model.head(z).float(), z.float().flatten(1)
        logits = self.model(xb).float()
        if not self.want:
            return logits, None
        if self.captured is None:
            raise StrategyError(f"{type(self.model).__name__}: its last nn.Linear was not called in forward(); "
                                "define embed(x) and head(z) methods on the model")
        z, self.captured = self.captured.float().flatten(1), None
        return logits, z

    def close(self) -> None:
        if self.hook is not None:
            self.hook.remove()


def _batches(n: int, indices: np.ndarray | None, batch_size: int) -> Iterator[tuple[int, slice | np.ndarray]]:
    for start in range(0, n, batch_size):
        yield start, (slice(start, start + batch_size) if indices is None else indices[start:start + batch_size])


@torch.inference_mode()
def predict_outputs(model: nn.Module, x: np.ndarray, indices: np.ndarray | None, normalizer: Normalizer,
                    device: torch.device, precision: str = "fp32", batch_size: int = 256,
                    embeddings: bool = False, channels_last: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (float32, N x C) of ``x[indices]`` in eval mode, and with ``embeddings`` their N x D embeddings,
    from the same forward pass.

    ``channels_last`` (default: on a CPU) feeds the batches in channels-last layout, the layout the images are
    stored in: oneDNN's CPU convolutions run faster on it (BENCHMARKS.md, ``scoring-*``). A model whose forward
    fails on channels-last activations (``x.view`` after a convolution, say) is run on NCHW batches instead.
    """
    model.to(device).eval()
    n = len(x) if indices is None else len(indices)
    return channels_last_first(
        lambda layout: _predict_batches(model, x, indices, n, normalizer, device, precision, batch_size, embeddings,
                                        layout),
        device.type == "cpu" if channels_last is None else channels_last)


def _predict_batches(model: nn.Module, x: np.ndarray, indices: np.ndarray | None, n: int, normalizer: Normalizer,
                     device: torch.device, precision: str, batch_size: int,
                     embeddings: bool, channels_last: bool) -> tuple[np.ndarray, np.ndarray | None]:
    run = _Embedder(model, embeddings)
    logits_out: np.ndarray | None = None
    emb_out: np.ndarray | None = None
    try:
        for start, sel in _batches(n, indices, batch_size):
            xb = normalizer(x[sel], device, channels_last)
            with autocast(device, precision), reproducible_kernels(device):
                logits, z = run(xb)
            if logits_out is None:
                logits_out = np.empty((n, logits.shape[1]), dtype=np.float32)
            logits_out[start:start + len(logits)] = logits.cpu().numpy()
            if z is not None:
                if emb_out is None:
                    emb_out = np.empty((n, z.shape[1]), dtype=np.float32)
                emb_out[start:start + len(z)] = z.cpu().numpy()
    finally:
        run.close()
    if logits_out is None:
        logits_out = np.zeros((0, 0), dtype=np.float32)
        emb_out = np.zeros((0, 0), dtype=np.float32) if embeddings else None
    return logits_out, emb_out


def predict_logits(model: nn.Module, x: np.ndarray, indices: np.ndarray | None, normalizer: Normalizer,
                   device: torch.device, precision: str, batch_size: int = 256) -> np.ndarray:
    """Logits (float32, N x classes) for ``x[indices]`` (all of ``x`` if None), in eval mode."""
    return predict_outputs(model, x, indices, normalizer, device, precision, batch_size)[0]


def has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, DROPOUT_TYPES) and getattr(m, "p", 0) > 0 for m in model.modules())


Layers = Callable[[torch.Tensor], torch.Tensor]


def _mc_split(model: nn.Module) -> tuple[Layers, Layers]:
    """The deterministic stem and the stochastic rest of an MC-dropout pass (identity and the model by default)."""
    stem, rest = getattr(model, "stem", None), getattr(model, "after_stem", None)
    if callable(stem) and callable(rest):
        return stem, rest
    return (lambda xb: xb), model


def _stem_without_dropout(model: nn.Module, stem: Layers, xb: torch.Tensor) -> torch.Tensor:
    """``stem(xb)``, refusing a stem that runs a dropout layer: its samples would all share one mask."""
    ran: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _inp: ran.append(mod))
             for m in model.modules() if isinstance(m, DROPOUT_TYPES)]
    try:
        h = stem(xb)
    finally:
        for hook in hooks:
            hook.remove()
    if ran:
        raise StrategyError(f"{type(model).__name__}.stem() runs a dropout layer ({type(ran[0]).__name__}); "
                            "MC-dropout runs the stem once per batch, so move the dropout into after_stem()")
    return h


@contextlib.contextmanager
def _mc_mode(model: nn.Module, generator: torch.Generator, seed: int) -> Iterator[None]:
    """Eval mode with only the dropout layers training; SeededDropout draws from ``generator``, plain
    ``nn.Dropout`` from the global RNG forked and seeded for the duration (restored afterwards)."""
    model.eval()
    drops = [m for m in model.modules() if isinstance(m, DROPOUT_TYPES)]
    devices = [generator.device] if generator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for m in drops:
            m.train()
        set_dropout_generator(model, generator)
        try:
            yield
        finally:
            set_dropout_generator(model, None)
            for m in drops:
                m.eval()


@torch.inference_mode()
def mc_dropout_logits(model: nn.Module, x: np.ndarray, indices: np.ndarray | None, normalizer: Normalizer,
                      device: torch.device, samples: int, generator: torch.Generator, seed: int,
                      batch_size: int = 256) -> np.ndarray:
    """``samples`` stochastic forward passes with dropout on and BatchNorm in eval mode: float32 N x C x T.

    Masks come from ``generator`` (and ``seed`` for plain ``nn.Dropout``), so the same generator state gives
    the same samples. Batches are channels-last on a CPU, as in :func:`predict_outputs`. Raises
    :class:`StrategyError` for a model without dropout.
    """
    if samples < 1:
        raise StrategyError(f"MC-dropout samples={samples} must be >= 1")
    if not has_dropout(model):
        raise StrategyError(f"{type(model).__name__} has no dropout layer with p > 0, so MC-dropout samples "
                            "would all be equal; use a model with dropout, or a strategy that needs no MC samples")
    model.to(device)
    n = len(x) if indices is None else len(indices)
    state = generator.get_state()
    return channels_last_first(
        lambda layout: _mc_batches(model, x, indices, n, normalizer, device, samples, generator, seed, batch_size,
                                   layout),
        device.type == "cpu", lambda: generator.set_state(state))


def _mc_batches(model: nn.Module, x: np.ndarray, indices: np.ndarray | None, n: int, normalizer: Normalizer,
                device: torch.device, samples: int, generator: torch.Generator, seed: int, batch_size: int,
                channels_last: bool) -> np.ndarray:
    out: np.ndarray | None = None
    stem, rest = _mc_split(model)
    with _mc_mode(model, generator, seed):
        for start, sel in _batches(n, indices, batch_size):
            xb = normalizer(x[sel], device, channels_last)
            with reproducible_kernels(device):
                h = stem(xb) if start else _stem_without_dropout(model, stem, xb)
                draws = torch.stack([rest(h).float() for _ in range(samples)], dim=2)
            if out is None:
                out = np.empty((n, draws.shape[1], samples), dtype=np.float32)
            out[start:start + len(draws)] = draws.cpu().numpy()
    return out if out is not None else np.zeros((0, 0, samples), dtype=np.float32)
