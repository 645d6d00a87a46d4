"""Self-training on confident pseudo-labels: the unlabeled pool as training data (``TrainConfig.pseudo_labels``).

After a round's model is trained on the labeled images, it labels the unlabeled pool; the images it is most
confident about, up to ``pseudo_labels`` per predicted class, join the labeled ones with their predicted class,
and the model is trained again from the same starting weights (the high-confidence step of CEAL, Wang et al.,
2016; pseudo-labels as in Lee, 2013). Pseudo-labels live only inside this training: they are not stored, the
images stay in the pool, and strategies score the retrained model. The pass over the pool runs in training's
precision: it is part of training, and a selection's scores stay fp32.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from alkit.training.config import TrainConfig
from alkit.training.inference import predict_logits
from alkit.training.trainer import Normalizer, fit


def confident_pseudo_labels(logits: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``logits`` (N x C) and predicted classes of the ``per_class`` most confident rows per predicted
    class (highest softmax probability; ties by position), in position order. Classes predicted fewer times give
    all their rows, so the set stays as balanced as the predictions allow."""
    if per_class <= 0 or len(logits) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=1).numpy()
    predicted, confidence = probs.argmax(1), probs.max(1)
    chosen = [rows[np.argsort(-confidence[rows], kind="stable")[:per_class]]
              for c in range(logits.shape[1]) if len(rows := np.flatnonzero(predicted == c))]
    positions = np.sort(np.concatenate(chosen))
    return positions.astype(np.int64), predicted[positions].astype(np.int64)


def fit_self_trained(model: nn.Module, x: np.ndarray, y: np.ndarray, labeled: np.ndarray, unlabeled: np.ndarray,
                     cfg: TrainConfig, normalizer: Normalizer, device: torch.device, precision: str,
                     batch_rng: np.random.Generator, torch_gen: torch.Generator) -> tuple[float, int]:
    """Train ``model`` in place on ``x[labeled]`` (:func:`alkit.training.trainer.fit`) and, if
    ``cfg.pseudo_labels`` and ``unlabeled`` are non-empty, again from its starting weights on those images plus the
    confident pseudo-labels of ``x[unlabeled]``. Returns the last training's mean loss and the number of
    pseudo-labels used. ``y`` is not modified; the generators continue into the second training."""
    if not cfg.pseudo_labels or len(unlabeled) == 0:
        return fit(model, x, y, labeled, cfg, normalizer, device, precision, batch_rng, torch_gen), 0
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fit(model, x, y, labeled, cfg, normalizer, device, precision, batch_rng, torch_gen)
    unlabeled = np.asarray(unlabeled, dtype=np.int64)
    logits = predict_logits(model, x, unlabeled, normalizer, device, precision,
                            cfg.eval_batch_for(device, model, tuple(x.shape[1:]), precision))
    positions, classes = confident_pseudo_labels(logits, cfg.pseudo_labels)
    picked = unlabeled[positions]
    targets = np.array(y, dtype=np.int64, copy=True)
    targets[picked] = classes
    model.load_state_dict(start)
    loss = fit(model, x, targets, np.sort(np.concatenate([np.asarray(labeled, dtype=np.int64), picked])), cfg,
               normalizer, device, precision, batch_rng, torch_gen)
    return loss, len(picked)
