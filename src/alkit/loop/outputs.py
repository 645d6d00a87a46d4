"""A trained model's lazy outputs on a set of images, keyed by the (seed, round) that trained it.

Shared by the experiment loop and the labeling app, so both give strategies the same numbers:
fp32 logits and embeddings, and MC-dropout samples from the (seed, round, "mc") generator.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from alkit.loop.seeding import derive_seed, torch_generator
from alkit.strategies import ModelOutputs
from alkit.training.config import TrainConfig
from alkit.training.inference import mc_dropout_logits, predict_outputs
from alkit.training.trainer import Normalizer


def model_outputs(model: nn.Module, x: np.ndarray, normalizer: Normalizer, device: torch.device, batch_size: int,
                  seed: int, round_: int, cheap_precision: str | None = None,
                  cheap_batch_size: int | None = None) -> ModelOutputs:
    """Outputs of ``model`` on rows of ``x``, computed on first use; with ``cheap_precision`` (``bf16``) a
    cheap logits pass for two-stage scoring as well, in batches of ``cheap_batch_size`` (default ``batch_size``)."""

    def forward(idx: np.ndarray, embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return predict_outputs(model, x, idx, normalizer, device, "fp32", batch_size, embeddings)

    def mc(idx: np.ndarray, samples: int) -> np.ndarray:
        return mc_dropout_logits(model, x, idx, normalizer, device, samples,
                                 torch_generator(seed, round_, "mc", device), derive_seed(seed, round_, "mc"),
                                 batch_size)

    def cheap(idx: np.ndarray) -> np.ndarray:
        return predict_outputs(model, x, idx, normalizer, device, cheap_precision, cheap_batch_size or batch_size)[0]

    return ModelOutputs(forward, mc, cheap if cheap_precision else None)


def round_outputs(model: nn.Module, x: np.ndarray, normalizer: Normalizer, device: torch.device, train: TrainConfig,
                  image_shape: tuple[int, int, int], seed: int, round_: int, batch_size: int | None = None
                  ) -> ModelOutputs:
    """A round's outputs as the loop makes them: scoring batches from ``train`` (``batch_size`` if already known),
    and two-stage's cheap pass, at its own batch, where ``train.scoring`` gives one on ``device``."""
    cheap = train.cheap_scoring_precision(device)
    batch = batch_size or train.eval_batch_for(device, model, image_shape)
    return model_outputs(model, x, normalizer, device, batch, seed, round_, cheap,
                         train.eval_batch_for(device, model, image_shape, cheap) if cheap else None)
