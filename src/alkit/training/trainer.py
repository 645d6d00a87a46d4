"""Fitting a classifier on the labeled images and predicting on the pool.

Images stay uint8 N x H x W x C in memory (or a memmap) and are converted batch by
batch, so pools larger than RAM stream through. Randomness comes only from the
generators passed in.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from alkit.models.seeded import set_dropout_generator
from alkit.training.config import TrainConfig


@dataclass(frozen=True)
class Normalizer:
    """Maps uint8 NHWC batches to standardized float NCHW tensors on a device."""

    mean: np.ndarray
    std: np.ndarray

    def __call__(self, batch: np.ndarray, device: torch.device, channels_last: bool = False) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=True)
        t = t.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.as_tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std, device=device).view(1, -1, 1, 1)
        t = (t - mean) / std
        return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()


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
    """Random shifts by up to ``pad`` pixels and horizontal flips, drawn from ``generator``."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=generator, device=generator.device) < 0.5
    x = torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def _batches(indices: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(indices), size):
        yield indices[start:start + size]


def build_optimizer(model: nn.Module, cfg: TrainConfig, total_steps: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """Adam with ``cfg``'s learning rate and weight decay, and the per-step schedule (None if constant)."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.lr_schedule == "cosine":
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    return opt, None


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, indices: np.ndarray, cfg: TrainConfig,
        normalizer: Normalizer, device: torch.device, precision: str,
        batch_rng: np.random.Generator, torch_gen: torch.Generator) -> float:
    """Train ``model`` in place with Adam on ``x[indices]``; return the last epoch's mean loss."""
    model.to(device).train()
    set_dropout_generator(model, torch_gen)
    loss_fn = nn.CrossEntropyLoss()
    labels = torch.as_tensor(y, dtype=torch.long)
    last = float("nan")
    steps_per_epoch = max(1, sum(1 for b in range(0, len(indices), cfg.batch_size) if len(indices) - b >= 2))
    epochs = max(cfg.epochs, -(-cfg.min_steps // steps_per_epoch))
    opt, schedule = build_optimizer(model, cfg, epochs * steps_per_epoch)
    with reproducible_kernels(device):
        for _ in range(epochs):
            order = batch_rng.permutation(indices)
            total, count = torch.zeros((), device=device), 0
            for batch in _batches(order, cfg.batch_size):
                if len(batch) < 2:  # BatchNorm needs two samples
                    continue
                sorted_batch = np.sort(batch)
                xb = normalizer(x[sorted_batch], device)
                yb = labels[sorted_batch].to(device)
                if cfg.augment:
                    xb = augment_batch(xb, torch_gen)
                with autocast(device, precision):
                    loss = loss_fn(model(xb).float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if schedule is not None:
                    schedule.step()
                total += loss.detach() * len(batch)  # stays on the device: no GPU sync per step
                count += len(batch)
            last = float(total) / max(count, 1)
    set_dropout_generator(model, None)
    return last


@torch.inference_mode()
def predict_logits(model: nn.Module, x: np.ndarray, indices: np.ndarray | None, normalizer: Normalizer,
                   device: torch.device, precision: str, batch_size: int = 256) -> np.ndarray:
    """Logits (float32, N x classes) for ``x[indices]`` (all of ``x`` if None), in eval mode."""
    model.to(device).eval()
    n = len(x) if indices is None else len(indices)
    out: np.ndarray | None = None
    for start in range(0, n, batch_size):
        sel = slice(start, start + batch_size) if indices is None else indices[start:start + batch_size]
        xb = normalizer(x[sel], device)
        with autocast(device, precision), reproducible_kernels(device):
            logits = model(xb).float()
        if out is None:
            out = np.empty((n, logits.shape[1]), dtype=np.float32)
        out[start:start + len(logits)] = logits.cpu().numpy()
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
