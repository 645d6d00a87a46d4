"""Choosing the scoring batch on a CPU from the model's activation size and the CPU's last-level cache.

Inference on a CPU slows down sharply once a batch's largest activation no longer fits in the cache, and
the cliff came at the same activation bytes in fp32 and in bf16 (BENCHMARKS.md, ``scoring-*``, the batch sweep). So the
batch is the largest multiple of 32 whose largest activation takes at most ``CACHE_SHARE`` of the L3,
measured per model, image shape and precision.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

CACHE_SHARE = 0.4
UNKNOWN_L3_BYTES = 16 * 2**20
BATCH_RANGE = (32, 1024)
_L3_PATH = Path("/sys/devices/system/cpu/cpu0/cache/index3/size")


def l3_cache_bytes(path: Path = _L3_PATH) -> int | None:
    """The CPU's L3 cache size from sysfs (``32768K``), or None where it is not reported."""
    try:
        text = path.read_text().strip().upper()
    except OSError:
        return None
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    try:
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (ValueError, IndexError):
        return None


@torch.inference_mode()
def largest_activation_bytes(model: nn.Module, image_shape: tuple[int, int, int], precision: str) -> int:
    """Bytes of the largest output of any layer of ``model`` for one ``image_shape`` (H, W, C) image."""
    largest = 0

    def hook(_m: nn.Module, _inp: tuple, out: object) -> None:
        nonlocal largest
        if isinstance(out, torch.Tensor):
            largest = max(largest, out.numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    h, w, c = image_shape
    try:
        model.eval()(torch.zeros(1, c, h, w, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return largest * (2 if precision == "bf16" else 4)


def cpu_scoring_batch(model: nn.Module, image_shape: tuple[int, int, int], precision: str,
                      l3_bytes: int | None = None) -> int:
    """The scoring batch for ``model`` on this CPU: the largest activation fills at most ``CACHE_SHARE`` of the
    L3 (``l3_bytes``, read from sysfs when not given; ``UNKNOWN_L3_BYTES`` where unknown)."""
    cache = l3_bytes if l3_bytes is not None else (l3_cache_bytes() or UNKNOWN_L3_BYTES)
    per_image = max(1, largest_activation_bytes(model, image_shape, precision))
    batch = int(CACHE_SHARE * cache // per_image) // 32 * 32
    return max(BATCH_RANGE[0], min(BATCH_RANGE[1], batch))
