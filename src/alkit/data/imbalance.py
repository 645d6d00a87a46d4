"""Deterministic class-imbalance protocols applied to a training set.

* ``step``: the minority classes (default: the first half, 0-4 of 10) keep 1/ratio of
  their images; the others keep all. Fashion-MNIST with ratio 10: 5 x 600 vs 5 x 6,000.
* ``exponential`` (long tail): class c keeps n_c = floor(n_max * ratio ** (-c / (C - 1))).

Which images are kept is drawn with ``numpy.random.default_rng(seed)``, per class in
class order, so the same options always give the same subset. The test set is untouched.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from alkit.data.dataset import Dataset
from alkit.errors import ConfigError

KINDS = ("step", "exponential")


@dataclass(frozen=True)
class Imbalance:
    kind: str = "step"
    ratio: float = 10.0
    minority: tuple[int, ...] | None = None
    seed: int = 0

    @classmethod
    def parse(cls, spec: Imbalance | dict[str, Any] | str) -> Imbalance:
        """From a dict, an ``Imbalance``, or a string such as ``step:10`` or ``exponential:100``."""
        if isinstance(spec, Imbalance):
            imb = spec
        elif isinstance(spec, str):
            kind, _, ratio = spec.partition(":")
            try:
                imb = cls(kind=kind, ratio=float(ratio) if ratio else 10.0)
            except ValueError as exc:
                raise ConfigError(f"imbalance: ratio in '{spec}' is not a number; write e.g. step:10") from exc
        elif isinstance(spec, dict):
            unknown = set(spec) - {"kind", "ratio", "minority", "seed"}
            if unknown:
                raise ConfigError(f"imbalance: unknown field(s) {sorted(unknown)}; allowed: kind, ratio, minority, seed")
            spec = dict(spec)
            if spec.get("minority") is not None:
                spec["minority"] = tuple(int(c) for c in spec["minority"])
            imb = cls(**spec)
        else:
            raise ConfigError(f"imbalance: expected a dict or 'kind:ratio' string, got {spec!r}")
        if imb.kind not in KINDS:
            raise ConfigError(f"imbalance.kind: '{imb.kind}' is unknown; choose one of {', '.join(KINDS)}")
        if not imb.ratio >= 1:
            raise ConfigError(f"imbalance.ratio: {imb.ratio} must be >= 1")
        return imb

    def target_counts(self, counts: np.ndarray) -> np.ndarray:
        n_classes = len(counts)
        if self.kind == "step":
            minority = self.minority if self.minority is not None else tuple(range(n_classes // 2))
            bad = [c for c in minority if not 0 <= c < n_classes]
            if bad:
                raise ConfigError(f"imbalance.minority: classes {bad} are out of range 0..{n_classes - 1}")
            target = counts.copy()
            for c in minority:
                target[c] = int(counts[c] // self.ratio)
            return target
        n_max = counts.max()
        exps = np.arange(n_classes) / max(n_classes - 1, 1)
        return np.minimum(counts, np.floor(n_max * self.ratio ** (-exps)).astype(np.int64))


def apply_imbalance(ds: Dataset, spec: Imbalance | dict[str, Any] | str) -> Dataset:
    """Return a new dataset whose training set follows the imbalance protocol."""
    imb = Imbalance.parse(spec)
    counts = np.bincount(ds.y_train, minlength=ds.num_classes)
    target = imb.target_counts(counts)
    rng = np.random.default_rng(imb.seed)
    keep = []
    for c in range(ds.num_classes):
        idx = np.flatnonzero(ds.y_train == c)
        keep.append(np.sort(rng.choice(idx, size=int(target[c]), replace=False)))
    kept = np.sort(np.concatenate(keep))
    provenance = dict(ds.provenance)
    provenance["imbalance"] = {**asdict(imb), "minority": list(imb.minority) if imb.minority else None,
                               "train_counts": {n: int(k) for n, k in zip(ds.classes, target)}}
    return Dataset(name=ds.name, x_train=ds.x_train[kept], y_train=ds.y_train[kept], x_test=ds.x_test,
                   y_test=ds.y_test, classes=ds.classes, provenance=provenance, x_unlabeled=ds.x_unlabeled)
