"""Background retraining for the labeling app: train, evaluate honestly, re-rank the pool.

The model trains on labeled images outside the held-out slice. Its quality is measured
on labeled held-out images, which are drawn at random and never chosen by the strategy,
so the estimate is not biased by what the strategy found hard. Labeling never waits:
training runs in one worker thread and a finished model replaces the queue atomically.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
from torch import nn

from alkit.app.project import HOLDOUT_EVERY, LabelProject
from alkit.data.images import read_image
from alkit.errors import ConfigError, DatasetError
from alkit.loop.seeding import numpy_rng, torch_generator
from alkit.metrics import classification_metrics
from alkit.models import ReferenceCNN, resolve_device, resolve_precision
from alkit.models.seeded import init_weights
from alkit.loop.outputs import model_outputs
from alkit.strategies import PoolPrediction, QueryContext, StrategySpec
from alkit.strategies.cold_start import COLD_START, cold_start_set, pca_embedder
from alkit.training.config import TrainConfig
from alkit.training.inference import predict_logits
from alkit.training.self_training import fit_self_trained
from alkit.training.trainer import Normalizer

log = logging.getLogger("alkit.app")
APP_COLD_STARTS = ("random", *COLD_START)  # the queue's order before the first model


def interleave_holdout(ranked: list[int], holdout: list[int], rng: np.random.Generator,
                       every: int = HOLDOUT_EVERY) -> list[int]:
    """Queue order: the strategy's ranking with a random held-out image in every ``every``-th slot."""
    holdout = [holdout[i] for i in rng.permutation(len(holdout))]
    out: list[int] = []
    r = h = 0
    while r < len(ranked) or h < len(holdout):
        if (len(out) + 1) % every == 0 and h < len(holdout) or r >= len(ranked):
            out.append(holdout[h])
            h += 1
        else:
            out.append(ranked[r])
            r += 1
    return out


class Retrainer:
    """Owns the model of a labeling project and retrains it in a background thread.

    ``min_labels``: the cold-start order is used until this many training labels exist, covering at
    least two classes; default ``max(10, 2 * classes)``. ``cold_start``: that order, ``random``, or
    label-free ``typiclust`` / ``probcover`` on PCA embeddings of the pool
    (:mod:`alkit.strategies.cold_start`): their first ``min_labels`` picks come first, the rest follow
    in random order. ``train``: the engine's :class:`TrainConfig`; with its warm start (the default) each
    retrain after the first of this process continues from the last model for the warm epochs, as an
    experiment's rounds do.
    """

    def __init__(self, project: LabelProject, strategy: str = "margin", image_size: tuple[int, int] = (32, 32),
                 retrain_every: int = 10, min_labels: int | None = None, train: TrainConfig | None = None,
                 seed: int = 0, cold_start: str = "random") -> None:
        if cold_start not in APP_COLD_STARTS:
            raise ConfigError(f"cold_start '{cold_start}' is unknown; choose {', '.join(APP_COLD_STARTS)}")
        self.cold_start = cold_start
        self.project = project
        self.strategy_name = strategy
        self.strategy = StrategySpec.parse(strategy).build()
        self.image_size = image_size
        self.retrain_every = retrain_every
        self.min_labels = min_labels or max(10, 2 * len(project.classes))
        self.train_cfg = (train or TrainConfig()).validate()
        self.seed = seed
        self.device = resolve_device(self.train_cfg.device)
        self.precision = resolve_precision(self.train_cfg.precision, self.device)
        self._cache: dict[int, np.ndarray] = {}
        self._last_state: dict[str, Any] | None = None  # the last model's weights, for warm start
        self._lock = threading.Lock()
        self._pending = False
        self._thread: threading.Thread | None = None
        self.training = False
        self.last_error: str | None = None
        self.labels_at_last_train = len(project.current_labels(holdout=False))
        if not project.queue(1) and project.model_version() == 0:
            self.cold_start_queue()

    # -- scheduling ------------------------------------------------------------------------------------------
    def cold_start_queue(self) -> None:
        pool, holdout = self.project.unlabeled_ids()
        rng = numpy_rng(self.seed, 0, "cold-start")
        order = [pool[i] for i in rng.permutation(len(pool))]
        if self.cold_start != "random" and len(pool) > 1:
            x, kept = self._arrays(pool)
            picks = cold_start_set(self.cold_start, x, self.min_labels, numpy_rng(self.seed, 0, "cold-start-set"),
                                   pca_embedder, len(self.project.classes))
            first = [kept[i] for i in picks]
            chosen, readable = set(first), set(kept)
            order = first + [i for i in order if i not in chosen and i in readable]
        self.project.set_queue(interleave_holdout(order, holdout, rng))

    def ready(self) -> bool:
        labels = self.project.current_labels(holdout=False)
        return len(labels) >= self.min_labels and len(set(labels.values())) >= 2

    def notify_labels(self) -> None:
        """Called after each label: retrain once ``retrain_every`` new training labels have arrived."""
        n = len(self.project.current_labels(holdout=False))
        if n - self.labels_at_last_train >= self.retrain_every and self.ready():
            self.request()

    def request(self) -> None:
        """Start a retrain now, or right after the one that is running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._pending = True
                return
            self.training = True
            self._thread = threading.Thread(target=self._worker, name="alkit-retrain", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)

    def _worker(self) -> None:
        while True:
            try:
                self.train_once()
                self.last_error = None
            except Exception as exc:  # keep the server alive; the page shows the error
                log.exception("retraining failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                if not self._pending:
                    self.training = False
                    return
                self._pending = False

    # -- the work ---------------------------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The model's input, H x W x C, from ``image_size`` (W, H): images are read as RGB."""
        return self.image_size[1], self.image_size[0], 3

    def _arrays(self, ids: list[int]) -> tuple[np.ndarray, list[int]]:
        """Decoded images for ``ids`` (cached); unreadable ones are marked corrupt and dropped."""
        keep, arrays = [], []
        for i in ids:
            arr = self._cache.get(i)
            if arr is None:
                info = self.project.image(i)
                try:
                    arr = read_image(self.project.root / info["path"], self.image_size, channels=3)
                except DatasetError as exc:
                    self.project.mark_corrupt(i, str(exc))
                    continue
                self._cache[i] = arr
            keep.append(i)
            arrays.append(arr)
        w, h = self.image_size
        return (np.stack(arrays) if arrays else np.zeros((0, h, w, 3), np.uint8)), keep

    def train_once(self) -> int | None:
        """Train on the current labels, evaluate on the held-out slice, re-rank; returns the new version."""
        if not self.ready():
            return None
        t0 = time.perf_counter()
        classes = self.project.classes
        index = {c: k for k, c in enumerate(classes)}
        train_labels = self.project.current_labels(holdout=False)
        x_train, train_ids = self._arrays(list(train_labels))
        y_train = np.array([index[train_labels[i]] for i in train_ids], dtype=np.int64)
        version_seed = self.project.model_version() + 1
        x = x_train.reshape(-1, 3).astype(np.float64) / 255.0
        norm = Normalizer(x.mean(0).astype(np.float32), x.std(0).astype(np.float32) + 1e-6)
        model = ReferenceCNN(self.input_shape, len(classes))
        warm = self.train_cfg.warm_start and self._last_state is not None
        if warm:
            model.load_state_dict(self._last_state)
        else:
            init_weights(model, torch_generator(self.seed, version_seed, "init"), self.train_cfg.init)
        cfg = self.train_cfg.for_warm_round() if warm else self.train_cfg
        x_fit, y_fit = x_train, y_train
        if cfg.pseudo_labels:  # the unlabeled pool, never the held-out images, as self-training data
            x_unlabeled, _ = self._arrays(self.project.unlabeled_ids()[0])
            x_fit = np.concatenate([x_train, x_unlabeled])
            y_fit = np.concatenate([y_train, np.full(len(x_unlabeled), -1, dtype=np.int64)])
        labeled, unlabeled = np.arange(len(y_train)), np.arange(len(y_train), len(y_fit))
        _, n_pseudo = fit_self_trained(model, x_fit, y_fit, labeled, unlabeled, cfg, norm, self.device, self.precision,
                                       numpy_rng(self.seed, version_seed, "batches"),
                                       torch_generator(self.seed, version_seed, "dropout", self.device))
        if self.train_cfg.warm_start:
            self._last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        batch = self.train_cfg.eval_batch_for(self.device, model, self.input_shape)
        holdout_labels = self.project.current_labels(holdout=True)
        x_hold, hold_ids = self._arrays(list(holdout_labels))
        metrics: dict[str, Any] = {"n_holdout": len(hold_ids), "train_seconds": 0.0, "warm_start": warm,
                                   "pseudo_labels": n_pseudo}
        if hold_ids:
            y_hold = np.array([index[holdout_labels[i]] for i in hold_ids])
            pred = predict_logits(model, x_hold, None, norm, self.device, "fp32", batch).argmax(1)
            m = classification_metrics(y_hold, pred, len(classes))
            metrics.update(accuracy=m["accuracy"], f1_macro=m["f1_macro"])
        pool, holdout = self.project.unlabeled_ids()
        x_pool, pool = self._arrays(pool)
        x_hpool, holdout = self._arrays(holdout)
        ranked, predictions = [], []
        if pool:
            ranked, probs = self._rank(model, norm, x_train, y_train, train_ids, x_pool, pool, version_seed)
            predictions += [(i, classes[int(p.argmax())], float(p.max())) for i, p in zip(pool, probs)]
        if holdout:
            hprobs = PoolPrediction(predict_logits(model, x_hpool, None, norm, self.device, "fp32", batch)).probs
            predictions += [(i, classes[int(p.argmax())], float(p.max())) for i, p in zip(holdout, hprobs)]
        queue = interleave_holdout(ranked, holdout, numpy_rng(self.seed, version_seed, "holdout-order"))
        metrics["train_seconds"] = round(time.perf_counter() - t0, 3)
        version = self.project.add_model(len(train_ids), len(hold_ids), metrics, self.strategy_name, predictions,
                                         queue, [float(k) for k in range(len(queue))])
        self.labels_at_last_train = len(train_labels)
        log.info("model v%d: %d training labels, holdout %s", version, len(train_ids), metrics)
        return version

    def _rank(self, model: nn.Module, norm: Normalizer, x_train: np.ndarray, y_train: np.ndarray,
              train_ids: list[int], x_pool: np.ndarray, pool: list[int], version: int) -> tuple[list[int], np.ndarray]:
        """The pool's queue order by the strategy, and the pool's class probabilities.

        The strategy sees the same query context as in an experiment: dataset indices are rows of
        the labeled images followed by the pool's. A ranking strategy orders the whole pool; a batch
        strategy (core-set, BADGE, BatchBALD) picks ``batch_size()`` images jointly, and the rest of the
        pool follows in random order until the retrain that their labels trigger."""
        n_train = len(train_ids)
        ids = np.array(train_ids + pool, dtype=np.int64)
        labels = np.full(len(ids), -1, dtype=np.int64)
        labels[:n_train] = y_train
        outputs = model_outputs(model, np.concatenate([x_train, x_pool]), norm, self.device,
                                self.train_cfg.eval_batch_for(self.device, model, self.input_shape), self.seed, version)
        candidates = np.arange(n_train, len(ids))
        rng = numpy_rng(self.seed, version, "ties")
        ctx = QueryContext(candidates, np.arange(n_train), labels, len(self.project.classes), version, rng,
                           outputs if self.strategy.requires else None)
        k = len(candidates) if self.strategy.ranks else min(len(candidates), self.batch_size())
        chosen = np.asarray(self.strategy.query(ctx, k), dtype=np.int64)
        rest = np.setdiff1d(candidates, chosen)
        order = np.concatenate([chosen, rest[rng.permutation(len(rest))]])
        probs = PoolPrediction(outputs.logits(candidates)).probs
        return ids[order].tolist(), probs

    def batch_size(self) -> int:
        """Images a batch strategy picks per retrain: twice ``retrain_every``, so the queue lasts while the
        retrain that the first ``retrain_every`` labels trigger runs."""
        return 2 * self.retrain_every

    def status(self) -> dict[str, Any]:
        n_train = len(self.project.current_labels(holdout=False))
        return {"training": self.training, "error": self.last_error, "strategy": self.strategy_name,
                "min_labels": self.min_labels, "retrain_every": self.retrain_every,
                "cold_start": self.project.model_version() == 0,
                "labels_until_retrain": max(0, self.retrain_every - (n_train - self.labels_at_last_train))
                if self.ready() else max(0, self.min_labels - n_train)}


