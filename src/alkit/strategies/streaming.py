"""Scoring pools larger than memory: batches stream through the model and a running top-k.

Memory stays O(batch + k) whatever the pool size, so a memmapped pool of millions of
images can be ranked without holding its logits.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from alkit.strategies.base import PoolPrediction, ScoreBasedStrategy
from alkit.training.inference import predict_logits
from alkit.training.trainer import Normalizer


def streaming_query(strategy: ScoreBasedStrategy, model: nn.Module, x: np.ndarray, k: int, normalizer: Normalizer,
                    device: torch.device, precision: str = "fp32", batch_size: int = 256,
                    chunk: int = 16_384, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best dataset indices of ``x[indices]`` (all of ``x`` if None) and their scores, best first.

    Ties are broken by dataset index (lower first), so the result does not depend on ``chunk``.
    """
    n = len(x) if indices is None else len(indices)
    best_idx = np.zeros(0, dtype=np.int64)
    best_score = np.zeros(0, dtype=np.float64)
    for start in range(0, n, chunk):
        ids = np.arange(start, min(start + chunk, n)) if indices is None else indices[start:start + chunk]
        logits = predict_logits(model, x, ids, normalizer, device, precision, batch_size)
        scores = strategy.score(PoolPrediction(logits))
        cand_idx = np.concatenate([best_idx, ids.astype(np.int64)])
        cand_score = np.concatenate([best_score, scores.astype(np.float64)])
        if len(cand_idx) > k:
            keep = np.argpartition(-cand_score, k - 1)[:k] if k > 0 else np.zeros(0, dtype=np.int64)
            cand_idx, cand_score = cand_idx[keep], cand_score[keep]
        best_idx, best_score = cand_idx, cand_score
    order = np.lexsort((best_idx, -best_score))
    return best_idx[order], best_score[order]
