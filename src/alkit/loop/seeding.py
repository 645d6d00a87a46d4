"""All randomness derives from (seed, round, purpose) through explicit generators.

Two calls with the same key get identical streams, and the key never depends on
the strategy, so paired runs share initial sets, initial weights and batch orders
(common random numbers), and any round can be recomputed on its own.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(seed: int, round_: int, purpose: str) -> int:
    digest = hashlib.sha256(f"{seed}/{round_}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def numpy_rng(seed: int, round_: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, round_, purpose))


def torch_generator(seed: int, round_: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, round_, purpose))
    return g
