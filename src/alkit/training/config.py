"""Training options, shared by the CLI, config files and the Python API."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from alkit.errors import ConfigError
from alkit.models.device import DEVICES, PRECISIONS, cpu_has_native_bf16
from alkit.models.seeded import INIT_SCHEMES
from alkit.validation import check_field_types

LR_SCHEDULES = ("constant", "cosine")
SCORINGS = ("auto", "fp32", "two-stage")
CLASS_BALANCES = ("none", "reweight", "logit-adjust")
STEPS_PER_EPOCH_FLOOR = 50
WARM_EPOCHS_FRACTION = 0.3
BN_RECALIBRATION_IMAGES = 10_000


@dataclass
class TrainConfig:
    """How the model is trained each round.

    ``precision``: training's; ``auto`` is fp32 on a GPU and bf16 autocast on a CPU that runs
    bf16 natively (see ``resolve_precision``); the precision used is recorded with every round.
    The pool and the test set are always scored in fp32: bf16 logits reorder near-ties, so a bf16
    margin top-k is not fp32's (BENCHMARKS.md, ``scoring-*``).
    ``eval_batch_size``: images per scoring batch; unset, 1024 on a GPU and, on a CPU, sized so that the model's
    largest activation fits in the L3 cache (:mod:`alkit.training.scoring_batch`).
    ``warm_start``: every round after the first continues from the previous round's model instead of
    retraining from scratch (the default; off, every round retrains from fresh weights, as the
    label-efficiency protocol of BENCHMARKS.md does).
    ``warm_epochs``: the epochs of a warm-started round (the step floor follows them); unset,
    ``WARM_EPOCHS_FRACTION`` of ``epochs``, at least 1 (3 of the default 10). Chosen by measurement on
    the standard run: the same F1 in a fraction of the time (BENCHMARKS.md, ``end-to-end-*``).
    ``lr_schedule``: ``constant`` keeps ``lr``; ``cosine`` anneals it per step from ``lr``
    to 0 over the round's training, which lets a round end at a well-converged model.
    ``init``: how fresh weights are drawn, ``torch`` (PyTorch's default) or ``glorot`` (Keras').
    ``min_steps``: run extra epochs until at least this many optimizer steps were taken. On a few
    dozen labels an epoch is one or two steps, too few to train at all. Unset, it is
    ``STEPS_PER_EPOCH_FLOOR`` x ``epochs`` (500 for the default 10 epochs): an epoch counts as at
    least that many steps, so the rule changes nothing from about 3,200 labels up (batch 64) and
    ``epochs`` still sets how long training is. 0 keeps exactly ``epochs``. Chosen by measurement at
    20 to 2,000 labels (BENCHMARKS.md, ``recipe-low-budget-*``).
    ``scoring``: how score-based strategies score the pool: ``fp32``, or ``two-stage`` (a bf16 pass over
    every candidate, then fp32 rescoring of the shortlist that can reach the top k; the selection is
    fp32's, :mod:`alkit.strategies.two_stage`). ``auto`` is two-stage where bf16 runs natively (a GPU, or a
    CPU with AVX512-BF16 or AMX) and fp32 elsewhere (see ``cheap_scoring_precision``).
    ``bn_recalibration``: after training, re-estimate BatchNorm's running statistics on the labeled
    images (up to ``BN_RECALIBRATION_IMAGES``, an even stride through them), with dropout off, as
    evaluation sees them (:func:`alkit.training.batchnorm.recalibrate_batchnorm`).
    ``class_balance``: how the loss treats classes that are rare among the labeled images, for
    imbalanced data evaluated by macro figures. ``none``: plain cross-entropy. ``reweight``: each image
    weighs n / (C x n_c) for its class c (scikit-learn's ``class_weight="balanced"``). ``logit-adjust``:
    the loss adds log n_c / n to the logits (the logit-adjusted loss of Menon et al., 2021), so the
    trained logits are those of a model for balanced classes. n_c counts the round's labeled images,
    plus one, so a class not labeled yet stays finite (:func:`alkit.training.trainer.class_balance_terms`).
    ``pseudo_labels``: self-training on the unlabeled pool. After training, the model's most confident unlabeled
    images, up to this many per predicted class, join the labeled ones with their predicted class and the round's
    model trains again from the same starting weights; 0 (the default) is off. It costs a pass over the pool and a
    second, longer training per round (:mod:`alkit.training.self_training`; measured in BENCHMARKS.md,
    ``recipe-fashion-mnist-*-pseudo-labels``).
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    augment: bool = False
    device: str = "auto"
    precision: str = "auto"
    warm_start: bool = True
    warm_epochs: int | None = None
    eval_batch_size: int | None = None
    min_steps: int | None = None
    lr_schedule: str = "cosine"
    init: str = "torch"
    bn_recalibration: bool = True
    scoring: str = "auto"
    class_balance: str = "none"
    pseudo_labels: int = 0

    def validate(self) -> TrainConfig:
        check_field_types(self, "train.")
        for name in ("epochs", "warm_epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name}: {getattr(self, name)} must be a positive integer")
        if self.warm_epochs is not None and not self.warm_start:
            raise ConfigError(f"train.warm_epochs: {self.warm_epochs} is set but train.warm_start is off; turn "
                              "warm_start on (drop --no-warm-start) or leave warm_epochs out")
        if self.pseudo_labels < 0:
            raise ConfigError(f"train.pseudo_labels: {self.pseudo_labels} must be >= 0 (images per class; 0 is off)")
        if self.min_steps is not None and self.min_steps < 0:
            raise ConfigError(f"train.min_steps: {self.min_steps} must be >= 0")
        if not self.lr > 0:
            raise ConfigError(f"train.lr: {self.lr} must be > 0")
        if self.scoring not in SCORINGS:
            raise ConfigError(f"train.scoring: '{self.scoring}' is unknown; choose {', '.join(SCORINGS)}")
        if self.class_balance not in CLASS_BALANCES:
            raise ConfigError(f"train.class_balance: '{self.class_balance}' is unknown; choose "
                              f"{', '.join(CLASS_BALANCES)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"train.lr_schedule: '{self.lr_schedule}' is unknown; choose {', '.join(LR_SCHEDULES)}")
        if self.init not in INIT_SCHEMES:
            raise ConfigError(f"train.init: '{self.init}' is unknown; choose {', '.join(INIT_SCHEMES)}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay: {self.weight_decay} must be >= 0")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"train.device: '{self.device}' is unknown; choose auto, cpu or cuda")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision: '{self.precision}' is unknown; choose {', '.join(PRECISIONS)}")
        return self

    def warm_round_epochs(self) -> int:
        """The epochs of a warm-started round: ``warm_epochs``, or the ``WARM_EPOCHS_FRACTION`` rule."""
        return self.warm_epochs or max(1, round(WARM_EPOCHS_FRACTION * self.epochs))

    def for_warm_round(self) -> TrainConfig:
        """The configuration a warm-started round trains with: its epochs in place of ``epochs``."""
        return dataclasses.replace(self, epochs=self.warm_round_epochs())

    def step_floor(self) -> int:
        """The fewest optimizer steps a round's training takes (the ``min_steps`` rule)."""
        return STEPS_PER_EPOCH_FLOOR * self.epochs if self.min_steps is None else self.min_steps

    def cheap_scoring_precision(self, device: torch.device) -> str | None:
        """The precision of two-stage scoring's cheap pass on ``device``, or None for plain fp32 scoring."""
        if self.scoring == "fp32":
            return None
        if self.scoring == "two-stage" or device.type == "cuda" or cpu_has_native_bf16():
            return "bf16"
        return None

    def eval_batch_for(self, device: torch.device, model: torch.nn.Module | None = None,
                       image_shape: tuple[int, int, int] | None = None, precision: str = "fp32") -> int:
        """The scoring batch: ``eval_batch_size`` if set; else 1024 on a GPU, where the larger batch measured
        faster with identical selections (BENCHMARKS.md, ``scoring-cuda``); on a CPU, the cache-sized batch of
        :func:`alkit.training.scoring_batch.cpu_scoring_batch` for ``model`` on ``image_shape`` images at
        ``precision``, or 128 without them."""
        if self.eval_batch_size:
            return self.eval_batch_size
        if device.type == "cuda":
            return 1024
        if model is None or image_shape is None:
            return 128
        from alkit.training.scoring_batch import cpu_scoring_batch

        return cpu_scoring_batch(model, image_shape, precision)
