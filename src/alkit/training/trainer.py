"""Fitting a classifier on the labeled images (predictions are in :mod:`alkit.training.inference`).

Images stay uint8 N x H x W x C in memory (or a memmap) and are converted batch by
batch, so pools larger than RAM stream through. Randomness comes only from the
generators passed in.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch
from torch import nn

from alkit.errors import ConfigError
from alkit.models.seeded import set_dropout_generator
from alkit.training.batchnorm import recalibrate_batchnorm
from alkit.training.config import BN_RECALIBRATION_IMAGES, CLASS_BALANCES, TrainConfig

T = TypeVar("T")


@dataclass(frozen=True)
class Normalizer:
    """Maps uint8 NHWC batches to standardized float NCHW tensors on a device."""

    mean: np.ndarray
    std: np.ndarray
    _on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __call__(self, batch: np.ndarray, device: torch.device, channels_last: bool = False) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=True)
        if t.device not in self._on_device:  # mean and std cross to the device once, not per batch
            self._on_device[t.device] = (torch.as_tensor(self.mean, device=t.device).view(1, -1, 1, 1),
                                         torch.as_tensor(self.std, device=t.device).view(1, -1, 1, 1))
        mean, std = self._on_device[t.device]
        t = (t.permute(0, 3, 1, 2).float().div_(255.0) - mean) / std
        return in_layout(t, channels_last)


def in_layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``t`` (N x C x H x W) with channels-last strides, or with plain NCHW strides.

    Not ``.contiguous(memory_format=...)``: with one channel both layouts pass as contiguous, so it would keep
    whichever strides ``t`` has, and convolutions follow the strides. NCHW strides are what a model's
    ``x.view`` needs; channels-last is what oneDNN runs fastest on a CPU.
    """
    _, c, h, w = t.shape
    strides = (c * h * w, 1, w * c, c) if channels_last else (c * h * w, h * w, w, 1)
    if t.stride() == strides:
        return t
    return t.clone(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def reproducible_kernels(device: torch.device) -> Iterator[None]:
    """On CUDA, cuDNN's deterministic algorithms (no autotuning), so a seeded run repeats bit for bit."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random shifts by up to ``pad`` pixels and horizontal flips, drawn from ``generator``.

    The shifted windows are two gathers (rows, then columns) on the batch's device: no per-image loop and no
    copy of the draws to the host, so a GPU step never waits for the CPU here."""
    n, c, h, w = x.shape
    dev = x.device
    flip = torch.rand(n, generator=generator, device=generator.device) < 0.5
    x = torch.where(flip.to(dev).view(-1, 1, 1, 1), x.flip(3), x)
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).to(dev)
    rows = (dy[:, None] + torch.arange(h, device=dev)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    cols = (dx[:, None] + torch.arange(w, device=dev)).view(n, 1, 1, w).expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def _batches(indices: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Consecutive batches of ``indices``, each sorted (faster reads from a memmap); a last single one is
    dropped, since BatchNorm needs two samples."""
    for start in range(0, len(indices), size):
        if len(indices) - start >= 2:
            yield np.sort(indices[start:start + size])


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``n`` labeled images (a last batch of one is dropped); at least 1."""
    return max(1, n // batch_size + (n % batch_size >= 2))


def training_epochs(n: int, cfg: TrainConfig) -> int:
    """Epochs ``fit`` runs on ``n`` labeled images: ``cfg.epochs``, or more to reach the step floor."""
    return max(cfg.epochs, -(-cfg.step_floor() // steps_per_epoch(n, cfg.batch_size)))


RESIDENT_BYTES = 2**30


class _LabeledSet:
    """Serves training batches. On a GPU the labeled images (up to ``RESIDENT_BYTES`` as float32) are copied
    there and standardised once per round, and each epoch's batch positions cross in one transfer: a step then
    launches one gather instead of a host-to-device copy and the standardising kernels."""

    def __init__(self, x: np.ndarray, labels: torch.Tensor, indices: np.ndarray, normalizer: Normalizer,
                 device: torch.device, resident: bool | None = None, channels_last: bool = False) -> None:
        self.x, self.labels, self.normalizer, self.device = x, labels, normalizer, device
        self.channels_last = channels_last  # read per batch: ``fit`` turns it off for a model that fails on it
        self.sorted = np.sort(indices)
        self.resident: tuple[torch.Tensor, torch.Tensor] | None = None
        if resident is None:
            resident = device.type == "cuda" and 4 * self.sorted.size * int(np.prod(x.shape[1:])) <= RESIDENT_BYTES
        if resident:
            self.resident = (normalizer(x[self.sorted], device, channels_last), labels[self.sorted].to(device))

    def epoch(self, order: np.ndarray, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = list(_batches(order, batch_size))
        if self.resident is None:
            for b in batches:
                yield self.normalizer(self.x[b], self.device, self.channels_last), self.labels[b].to(self.device)
            return
        if not batches:
            return
        positions = torch.from_numpy(np.searchsorted(self.sorted, np.concatenate(batches))).to(self.device)
        start = 0
        for b in batches:
            pos = positions[start:start + len(b)]
            start += len(b)
            yield in_layout(self.resident[0][pos], self.channels_last), self.resident[1][pos]


FUSED_ADAM_DEVICES = ("cpu", "cuda")


def fused_adam_applies(params: list[torch.Tensor]) -> bool:
    """Whether PyTorch's fused Adam can update ``params``: floating-point tensors on a CPU or a GPU.

    Fused Adam updates every parameter in one kernel per step, where the default runs several passes per
    parameter tensor (on a CPU) or several multi-tensor launches (on a GPU); the update rule is the same.
    """
    return all(p.is_floating_point() and p.device.type in FUSED_ADAM_DEVICES for p in params)


def build_optimizer(model: nn.Module, cfg: TrainConfig, total_steps: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """Adam with ``cfg``'s learning rate and weight decay, fused where it applies, and the per-step
    schedule (None if constant)."""
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                           fused=True if fused_adam_applies(params) else None)
    if cfg.lr_schedule == "cosine":
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    return opt, None


def class_balance_terms(labels: np.ndarray, num_classes: int, mode: str
                        ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The loss's per-class weights and logit offsets under ``mode`` (``TrainConfig.class_balance``).

    From the labeled images' ``labels``, counted with one added per class: ``reweight`` gives weights
    n / (C x n_c) and no offsets, ``logit-adjust`` offsets log(n_c / n) and no weights, ``none`` neither.
    """
    if mode == "none":
        return None, None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64) + 1.0
    if counts.size > num_classes:
        raise ConfigError(f"train.class_balance: class labels up to {counts.size - 1} for a model with {num_classes} "
                          "outputs; give a model with one output per class")
    if mode == "reweight":
        return torch.tensor(counts.sum() / (num_classes * counts), dtype=torch.float32), None
    if mode == "logit-adjust":
        return None, torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32)
    raise ConfigError(f"train.class_balance: '{mode}' is unknown; choose {', '.join(CLASS_BALANCES)}")


def channels_last_first(run: Callable[[bool], T], channels_last: bool, before_retry: Callable[[], None] = lambda: None
                         ) -> T:
    """``run(channels_last)``; where channels-last batches make the model raise, ``before_retry()`` and then
    ``run(False)``, on NCHW batches. Training and inference both go through it."""
    try:
        return run(channels_last)
    except RuntimeError:
        if not channels_last:
            raise
    before_retry()
    return run(False)


def _first_step_on_a_layout_that_works(model: nn.Module, data: _LabeledSet, torch_gen: torch.Generator,
                                       loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                                       xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Forward and backward on the channels-last batch ``xb``; where the model raises on it, the state the
    failed try changed (buffers such as BatchNorm's statistics, the generator's draws, gradients) is put back,
    ``data`` switches to NCHW batches, and the step runs again on ``xb`` in NCHW."""
    buffers = [b.clone() for b in model.buffers()]
    generator_state = torch_gen.get_state()

    def step(channels_last: bool) -> torch.Tensor:
        data.channels_last = channels_last
        loss = loss_of(in_layout(xb, channels_last), yb)
        loss.backward()
        return loss

    def restore() -> None:
        with torch.no_grad():
            for saved, b in zip(buffers, model.buffers()):
                b.copy_(saved)
        torch_gen.set_state(generator_state)
        for p in model.parameters():
            p.grad = None

    return channels_last_first(step, True, restore)


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, indices: np.ndarray, cfg: TrainConfig,
        normalizer: Normalizer, device: torch.device, precision: str,
        batch_rng: np.random.Generator, torch_gen: torch.Generator, channels_last: bool | None = None) -> float:
    """Train ``model`` in place with Adam on ``x[indices]``; return the last epoch's mean loss.

    ``channels_last`` (default: on a CPU, where oneDNN's convolutions run fastest on it) feeds the batches in
    channels-last layout. A model that raises on the first such batch (a ``x.view`` after a convolution) gets
    its BatchNorm statistics and the generator's state back and trains from that batch on NCHW batches, so
    it trains as if it had been given them from the start.
    """
    model.to(device).train()
    set_dropout_generator(model, torch_gen)
    labels = torch.as_tensor(y, dtype=torch.long)
    terms: tuple[torch.Tensor | None, ...] | None = None  # the loss's (weight, offset), set at the first batch
    last = float("nan")
    epochs = training_epochs(len(indices), cfg)
    opt, schedule = build_optimizer(model, cfg, epochs * steps_per_epoch(len(indices), cfg.batch_size))
    data = _LabeledSet(x, labels, indices, normalizer, device,
                       channels_last=device.type == "cpu" if channels_last is None else channels_last)
    layout_checked = not data.channels_last

    def loss_of(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        nonlocal terms
        if cfg.augment:
            xb = in_layout(augment_batch(xb, torch_gen), data.channels_last)
        with autocast(device, precision):
            logits = model(xb).float()
            if terms is None:  # the class count is the model's output width
                terms = tuple(None if t is None else t.to(device) for t in
                              class_balance_terms(y[indices], logits.shape[1], cfg.class_balance))
            weight, offset = terms
            return nn.functional.cross_entropy(logits if offset is None else logits + offset, yb, weight=weight)

    with reproducible_kernels(device):
        for _ in range(epochs):
            total, count = torch.zeros((), device=device), 0
            for xb, yb in data.epoch(batch_rng.permutation(indices), cfg.batch_size):
                opt.zero_grad(set_to_none=True)
                if layout_checked:
                    loss = loss_of(xb, yb)
                    loss.backward()
                else:
                    loss = _first_step_on_a_layout_that_works(model, data, torch_gen, loss_of, xb, yb)
                    layout_checked = True
                opt.step()
                if schedule is not None:
                    schedule.step()
                total += loss.detach() * len(yb)  # stays on the device: no GPU sync per step
                count += len(yb)
            last = float(total) / max(count, 1)
    set_dropout_generator(model, None)
    if cfg.bn_recalibration:
        step = -(-len(indices) // BN_RECALIBRATION_IMAGES)
        with reproducible_kernels(device):
            recalibrate_batchnorm(model, x, np.sort(indices)[::step], normalizer, device, batch_size=256)
    return last
