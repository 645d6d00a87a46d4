"""Time per active-learning round: alkit vs baal vs modAL (+skorch), in one process.

Same model (the reference CNN), pool (Fashion-MNIST training set), strategies (margin,
entropy), initial labels, query size, epochs, batch size and optimizer (Adam 1e-3) for
all three. One round = train on the labeled set, predict on the unlabeled pool, score,
select. Peers get their inputs pre-normalised as float32 (their preparation time is not
counted); alkit converts uint8 batches on the fly. Selection agreement: the three are
given the same trained weights and their top-k sets are compared with alkit's.

    pip install -e .[bench]
    python -m benchmarks.peers                # full pool
    python -m benchmarks.peers --smoke        # seconds, for CI (writes nothing)
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import alkit
from alkit.loop.seeding import numpy_rng, torch_generator
from alkit.loop.outputs import round_outputs
from alkit.models import ReferenceCNN
from alkit.models.device import resolve_precision
from alkit.models.seeded import init_weights
from alkit.strategies import ModelOutputs, QueryContext, get_strategy
from alkit.training.config import TrainConfig
from alkit.training.inference import predict_logits
from alkit.training.trainer import Normalizer, fit
from benchmarks.common import cap_words, device_key, markdown_blocks, save_result

CPU = torch.device("cpu")


def alkit_round(model: nn.Module, ds, norm, labeled, pool, k, strategy, cfg) -> np.ndarray:
    fit(model, ds.x_train, ds.y_train, labeled, cfg, norm, CPU, "fp32", numpy_rng(0, 1, "b"), torch_generator(0, 1, "d"))
    logits = predict_logits(model, ds.x_train, pool, norm, CPU, "fp32", cfg.eval_batch_for(CPU, model, ds.image_shape))
    return select(strategy, logits, ds, labeled, pool, k)


def alkit_default_round(model: nn.Module, ds, norm, labeled, pool, k, strategy, cfg) -> np.ndarray:
    """One round on alkit's default path for this device: training precision ``auto``, BatchNorm re-estimation
    and two-stage scoring where bf16 is native; the same epochs as the peers (no step floor)."""
    auto = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, min_steps=0)
    fit(model, ds.x_train, ds.y_train, labeled, auto, norm, CPU, resolve_precision(auto.precision, CPU),
        numpy_rng(0, 1, "b"), torch_generator(0, 1, "d"))
    labels = np.full(len(ds.y_train), -1)
    labels[labeled] = ds.y_train[labeled]
    outputs = round_outputs(model, ds.x_train, norm, CPU, auto, ds.image_shape, 0, 1)
    ctx = QueryContext(pool, labeled, labels, ds.num_classes, 1, np.random.default_rng(0), outputs)
    return get_strategy(strategy).query(ctx, k)


def select(strategy: str, logits: np.ndarray, ds, labeled: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    """alkit's selection of ``k`` among ``pool`` from the pool's logits, as the loop calls it."""
    labels = np.full(len(ds.y_train), -1)
    labels[labeled] = ds.y_train[labeled]
    ctx = QueryContext(pool, labeled, labels, ds.num_classes, 1, np.random.default_rng(0),
                       ModelOutputs.from_arrays(pool, logits))
    return get_strategy(strategy).query(ctx, k)


def baal_round(model: nn.Module, x: torch.Tensor, y: torch.Tensor, labeled, k, strategy, cfg):
    from baal.active.dataset import ActiveLearningDataset
    from baal.active.heuristics import Entropy, Margin
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    al = ActiveLearningDataset(TensorDataset(x, y))
    al.label(labeled.tolist())  # before any labels, pool index == dataset index
    args = TrainingArgs(optimizer=torch.optim.Adam(model.parameters(), lr=cfg.lr), criterion=nn.CrossEntropyLoss(),
                        batch_size=cfg.batch_size, epoch=cfg.epochs, use_cuda=False, workers=0)
    wrapper = ModelWrapper(model, args)
    wrapper.train_on_dataset(al)
    preds = wrapper.predict_on_dataset(al.pool, iterations=1, verbose=False)
    heuristic = Margin() if strategy == "margin" else Entropy()
    ranks = heuristic(preds)[:k]
    return al, ranks


def baal_select(model: nn.Module, x, y, labeled, k, strategy, batch_size):
    from baal.active.dataset import ActiveLearningDataset
    from baal.active.heuristics import Entropy, Margin
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    al = ActiveLearningDataset(TensorDataset(x, y))
    al.label(labeled.tolist())
    wrapper = ModelWrapper(model, TrainingArgs(batch_size=batch_size, use_cuda=False, workers=0))
    preds = wrapper.predict_on_dataset(al.pool, iterations=1, verbose=False)
    pool_ranks = (Margin() if strategy == "margin" else Entropy())(preds)[:k]
    return np.flatnonzero(~al.labelled)[pool_ranks]  # pool index -> dataset index


def modal_learner(model: nn.Module, x: np.ndarray, y: np.ndarray, labeled, strategy, cfg, train: bool):
    from modAL.models import ActiveLearner
    from modAL.uncertainty import entropy_sampling, margin_sampling
    from skorch import NeuralNetClassifier

    net = NeuralNetClassifier(copy.deepcopy(model), criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=cfg.lr,
                              max_epochs=cfg.epochs, batch_size=cfg.batch_size, train_split=None, verbose=0,
                              device="cpu")
    query = margin_sampling if strategy == "margin" else entropy_sampling
    if train:
        return ActiveLearner(estimator=net, query_strategy=query, X_training=x[labeled], y_training=y[labeled])
    net.initialize()
    net.module_.load_state_dict(model.state_dict())
    return ActiveLearner(estimator=net, query_strategy=query)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--initial", type=int, default=1000)
    ap.add_argument("--query", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--pool", type=int, default=60_000)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.initial, args.query, args.epochs, args.pool = 100, 50, 1, 1_500
    ds = alkit.load_dataset("fashion-mnist", progress=False)
    ds.x_train, ds.y_train = ds.x_train[: args.pool], ds.y_train[: args.pool]
    norm = Normalizer(*ds.channel_stats())
    x_t = norm(ds.x_train, CPU)
    y_t = torch.as_tensor(ds.y_train)
    x_np, y_np = x_t.numpy(), ds.y_train
    labeled = np.sort(numpy_rng(0, 0, "initial").choice(len(ds.y_train), args.initial, replace=False))
    pool = np.setdiff1d(np.arange(len(ds.y_train)), labeled)
    cfg = TrainConfig(epochs=args.epochs, batch_size=64, min_steps=0, bn_recalibration=False)  # the peers' recipe

    def fresh() -> nn.Module:
        m = ReferenceCNN(ds.image_shape, 10)
        init_weights(m, torch_generator(0, 1, "init"))
        return m

    rows = []
    for strategy in ("margin", "entropy"):
        t0 = time.perf_counter()
        alkit_round(fresh(), ds, norm, labeled, pool, args.query, strategy, cfg)
        t_alkit = time.perf_counter() - t0
        t0 = time.perf_counter()
        baal_round(fresh(), x_t, y_t, labeled, args.query, strategy, cfg)
        t_baal = time.perf_counter() - t0
        t0 = time.perf_counter()
        learner = modal_learner(fresh(), x_np, y_np, labeled, strategy, cfg, train=True)
        learner.query(x_np[pool], n_instances=args.query)
        t_modal = time.perf_counter() - t0
        t0 = time.perf_counter()
        alkit_default_round(fresh(), ds, norm, labeled, pool, args.query, strategy, cfg)
        t_default = time.perf_counter() - t0
        rows.append((strategy, t_alkit, t_baal, t_modal, t_default))
        print(rows[-1], flush=True)

    trained = fresh()
    fit(trained, ds.x_train, ds.y_train, labeled, cfg, norm, CPU, "fp32", numpy_rng(0, 1, "b"), torch_generator(0, 1, "d"))
    trained.eval()
    agreement = []
    for strategy in ("margin", "entropy"):
        ours = set(select(strategy, predict_logits(trained, ds.x_train, pool, norm, CPU, "fp32"), ds, labeled, pool,
                          args.query).tolist())
        theirs_baal = set(baal_select(trained, x_t, y_t, labeled, args.query, strategy, 64).tolist())
        idx, _ = modal_learner(trained, x_np, y_np, labeled, strategy, cfg, train=False).query(x_np[pool], n_instances=args.query)
        theirs_modal = set(pool[np.asarray(idx)].tolist())
        labels = np.full(len(ds.y_train), -1)
        labels[labeled] = ds.y_train[labeled]
        staged = QueryContext(pool, labeled, labels, ds.num_classes, 1, np.random.default_rng(0),
                              round_outputs(trained, ds.x_train, norm, CPU, TrainConfig(), ds.image_shape, 0, 1))
        ours_default = set(get_strategy(strategy).query(staged, args.query).tolist())
        agreement.append((strategy, len(ours & theirs_baal) / args.query, len(ours & theirs_modal) / args.query,
                          len(ours & ours_default) / args.query))
    table = ["| strategy | alkit fp32 s/round | alkit default path s/round | baal s/round | modAL s/round | "
             "baal / alkit fp32 | modAL / alkit fp32 | baal / alkit default | modAL / alkit default |",
             "|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {s} | {a:.1f} | {d:.1f} | {b:.1f} | {m:.1f} | {b / a:.2f}x | {m / a:.2f}x | {b / d:.2f}x | {m / d:.2f}x |"
              for s, a, b, m, d in rows]
    agree = ["| strategy | top-k overlap with baal | with modAL | alkit default path vs alkit fp32 |", "|---|---|---|---|"]
    agree += [f"| {s} | {b:.1%} | {m:.1%} | {d:.1%} |" for s, b, m, d in agreement]
    body = f"""One round each: train the reference CNN from the same initial weights on {args.initial:,} labels
({args.epochs} epochs, batch 64, Adam 1e-3), predict on the {len(pool):,}-image unlabeled pool, score,
select {args.query:,}. baal {_version('baal')}, modAL {_version('modAL-python')}, skorch {_version('skorch')}.
"alkit fp32" trains and scores in fp32, as the peers do; "alkit default path" is what `alkit run` does on this
machine with the same epochs: training in {resolve_precision("auto", CPU)}, BatchNorm re-estimated, and
{"two-stage scoring (bf16 pass, fp32 shortlist)" if TrainConfig().cheap_scoring_precision(CPU) else "fp32 scoring"}.

{chr(10).join(table)}

Selection agreement given the same trained weights (top-{args.query:,} sets):

{chr(10).join(agree)}
"""
    print(body)
    metrics = {"device": "cpu",
               "rounds": {s: {"alkit_fp32_s": a, "alkit_s": d, "baal_s": b, "modal_s": m} for s, a, b, m, d in rows},
               "agreement": {s: {"baal": b, "modal": m, "default_vs_fp32": d} for s, b, m, d in agreement}}
    if not args.smoke:
        save_result(device_key("peers", CPU), "peers", "Round time vs baal and modAL" + cap_words(), markdown_blocks(body), metrics)


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
