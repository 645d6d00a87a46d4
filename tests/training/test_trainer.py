"""Training: config validation, optimizer schedule, fit, augmentation and prediction on small arrays."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from alkit.errors import ConfigError
from alkit.models.reference_cnn import ReferenceCNN
from alkit.models.seeded import SeededDropout, init_weights
from alkit.training.config import TrainConfig
from alkit.training.inference import predict_logits
from alkit.training.scoring_batch import CACHE_SHARE, cpu_scoring_batch, l3_cache_bytes, largest_activation_bytes
from alkit.training.trainer import (Normalizer, augment_batch, build_optimizer, class_balance_terms, fit,
                                    in_layout)

CPU = torch.device("cpu")


def _quadrant_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """16x16 grey images whose class (0-3) is the bright quadrant: learnable in a few dozen steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 60, (n, 16, 16, 1)).astype(np.uint8)
    for i, c in enumerate(y):
        r, k = divmod(int(c), 2)
        x[i, r * 8:(r + 1) * 8, k * 8:(k + 1) * 8] += 180
    return x, y.astype(np.int64)


def _model(seed: int = 0) -> ReferenceCNN:
    m = ReferenceCNN((16, 16, 1), 4)
    init_weights(m, torch.Generator().manual_seed(seed))
    return m


def _fit(model, x, y, cfg, seed=0, indices=None):
    norm = Normalizer(np.array([0.3], np.float32), np.array([0.3], np.float32))
    idx = np.arange(len(x)) if indices is None else indices
    return fit(model, x, y, idx, cfg, norm, CPU, "fp32", np.random.default_rng(seed),
               torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", 0), ("eval_batch_size", -1),
                                         ("min_steps", -1), ("lr", 0.0), ("weight_decay", -1.0),
                                         ("lr_schedule", "step"), ("init", "he"), ("precision", "fp8"),
                                         ("device", "tpu"), ("warm_epochs", 0),
                                         ("class_balance", "focal")])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"train.{field}"):
        TrainConfig(**{field: value}).validate()


def test_warm_rounds_train_warm_epochs_with_their_own_step_floor():
    cfg = TrainConfig(epochs=10, warm_start=True, warm_epochs=4).validate()
    warm = cfg.for_warm_round()
    assert (warm.epochs, warm.step_floor(), cfg.step_floor()) == (4, 200, 500)
    with pytest.raises(ConfigError, match="train.warm_epochs: 3 is set but train.warm_start is off"):
        TrainConfig(warm_start=False, warm_epochs=3).validate()


@pytest.mark.parametrize("epochs, warm_epochs", [(10, 3), (20, 6), (5, 2), (2, 1), (1, 1)])
def test_warm_start_is_the_default_with_30_percent_of_the_epochs(epochs, warm_epochs):
    cfg = TrainConfig(epochs=epochs).validate()
    assert cfg.warm_start and cfg.warm_epochs is None
    assert cfg.for_warm_round().epochs == cfg.warm_round_epochs() == warm_epochs
    assert cfg.for_warm_round().step_floor() == 50 * warm_epochs


def test_cosine_schedule_anneals_to_zero_and_constant_keeps_lr():
    model = _model()
    opt, schedule = build_optimizer(model, TrainConfig(lr=0.01, lr_schedule="cosine"), total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[5] == pytest.approx(0.005)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    constant = TrainConfig(lr=0.01, lr_schedule="constant", weight_decay=0.1)
    opt, schedule = build_optimizer(model, constant, total_steps=10)
    assert schedule is None
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["weight_decay"] == 0.1


def test_adam_is_fused_on_the_cpu_and_updates_as_the_default_adam_does():
    fused_model, plain_model = _model(), _model()
    cfg = TrainConfig(lr=0.01, lr_schedule="cosine", weight_decay=0.1)
    fused, fused_schedule = build_optimizer(fused_model, cfg, total_steps=20)
    assert fused.defaults["fused"] is True
    plain = torch.optim.Adam(plain_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    plain_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(plain, T_max=20)
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        for a, b in zip(fused_model.parameters(), plain_model.parameters()):
            a.grad = torch.randn(a.shape, generator=gen)
            b.grad = a.grad.clone()
        fused.step(), plain.step(), fused_schedule.step(), plain_schedule.step()
    moved = 0.0
    for a, b, start in zip(fused_model.parameters(), plain_model.parameters(), _model().parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        moved = max(moved, float((a - start).abs().max()))
    assert moved > 0.01


@pytest.mark.filterwarnings("ignore:Complex modules")
def test_adam_falls_back_to_the_default_where_fused_adam_does_not_apply():
    model = torch.nn.Linear(3, 2).to(torch.complex64)
    opt, _ = build_optimizer(model, TrainConfig(lr_schedule="constant"), total_steps=1)
    assert not opt.defaults["fused"]
    before = model.weight.detach().clone()
    model(torch.ones(1, 3, dtype=torch.complex64)).abs().sum().backward()
    opt.step()
    assert not torch.equal(before, model.weight)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_fit_learns_a_separable_task(schedule):
    x, y = _quadrant_data(256)
    xt, yt = _quadrant_data(128, seed=1)
    model = _model()
    loss = _fit(model, x, y, TrainConfig(epochs=4, batch_size=32, lr_schedule=schedule))
    norm = Normalizer(np.array([0.3], np.float32), np.array([0.3], np.float32))
    acc = (predict_logits(model, xt, None, norm, CPU, "fp32").argmax(1) == yt).mean()
    assert loss < 0.5
    assert acc > 0.9


def test_fit_is_reproducible_from_its_generators_and_seed_sensitive():
    x, y = _quadrant_data(64)
    cfg = TrainConfig(epochs=2, batch_size=16)
    a, b, c = _model(), _model(), _model()
    _fit(a, x, y, cfg, seed=3)
    _fit(b, x, y, cfg, seed=3)
    _fit(c, x, y, cfg, seed=4)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def _count_steps(model, x, y, cfg, indices=None) -> int:
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    _fit(model, x, y, cfg, indices=indices)
    handle.remove()
    return len(calls)


def test_min_steps_adds_epochs_and_single_sample_batches_are_skipped():
    x, y = _quadrant_data(10)
    exact = dict(epochs=1, batch_size=4, bn_recalibration=False)
    assert _count_steps(_model(), x, y, TrainConfig(min_steps=0, **exact)) == 3
    assert _count_steps(_model(), x, y, TrainConfig(min_steps=10, **exact)) == 12
    assert _count_steps(_model(), x, y, TrainConfig(min_steps=0, **exact), indices=np.arange(9)) == 2
    # the default rule: an epoch counts as at least 50 steps, so 1 epoch of 3 steps becomes 17 epochs
    assert _count_steps(_model(), x, y, TrainConfig(**exact)) == 51
    assert TrainConfig().step_floor() == 500 and TrainConfig(epochs=2).step_floor() == 100


def test_default_rule_changes_nothing_on_large_labeled_sets():
    assert TrainConfig().step_floor() <= 10 * (3200 // 64)


def test_class_balance_terms_follow_their_definitions():
    labels = np.array([0] * 9 + [2] * 3)  # class 1 has no labels yet: counted as 1
    counts = np.array([10.0, 1.0, 4.0])
    weight, offset = class_balance_terms(labels, 3, "reweight")
    assert offset is None and torch.allclose(weight, torch.tensor(15.0 / (3 * counts), dtype=torch.float32))
    weight, offset = class_balance_terms(labels, 3, "logit-adjust")
    assert weight is None and torch.allclose(offset, torch.tensor(np.log(counts / 15.0), dtype=torch.float32))
    assert class_balance_terms(labels, 3, "none") == (None, None)
    with pytest.raises(ConfigError, match="labels up to 2 for a model with 2 outputs"):
        class_balance_terms(labels, 2, "reweight")


class _Prior(torch.nn.Module):
    """Ignores the image and predicts learned class logits: trained by cross-entropy, its softmax is the
    loss's optimal class prior."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


@pytest.mark.parametrize("mode", ["none", "reweight", "logit-adjust"])
def test_class_balanced_losses_train_a_prior_model_to_their_optimum(mode):
    """Plain cross-entropy learns the labeled class frequencies; both balanced losses have their optimum at
    frequencies proportional to n_c / (n_c + 1) (from their definitions: the weight, or the prior in the
    logits, cancels n_c up to the added one), nearly uniform here although the labels are 80 / 15 / 5."""
    n = np.array([160, 30, 10])
    y = np.repeat(np.arange(3), n)
    x = np.zeros((len(y), 4, 4, 1), np.uint8)
    model = _Prior(3)
    cfg = TrainConfig(epochs=1, batch_size=len(y), min_steps=300, lr=0.1, lr_schedule="constant",
                      bn_recalibration=False, class_balance=mode)
    _fit(model, x, y, cfg)
    learned = torch.softmax(model.logits.detach(), 0).numpy()
    expected = n / n.sum() if mode == "none" else (n / (n + 1)) / (n / (n + 1)).sum()
    np.testing.assert_allclose(learned, expected, atol=0.002)


def test_fit_trains_only_on_the_given_indices():
    x, y = _quadrant_data(40)
    seen = []
    model = _model()
    handle = model.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    _fit(model, x, y, TrainConfig(epochs=3, batch_size=64, min_steps=0, bn_recalibration=False),
         indices=np.array([0, 5, 7, 11, 30]))
    handle.remove()
    assert seen == [5, 5, 5]


def test_normalizer_standardises_and_orders_channels():
    norm = Normalizer(np.array([0.5, 0.0, 1.0], np.float32), np.array([0.5, 1.0, 0.25], np.float32))
    batch = np.full((2, 3, 4, 3), 255, np.uint8)
    out = norm(batch, CPU)
    assert out.shape == (2, 3, 3, 4) and out.dtype == torch.float32
    assert torch.allclose(out[:, 0], torch.tensor(1.0)) and torch.allclose(out[:, 1], torch.tensor(1.0))
    assert torch.allclose(out[:, 2], torch.tensor(0.0))
    assert norm(batch, CPU, channels_last=True).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("channels", [1, 3])
def test_in_layout_sets_the_strides_even_where_both_layouts_pass_as_contiguous(channels: int) -> None:
    norm = Normalizer(np.full(channels, 0.3, np.float32), np.full(channels, 0.3, np.float32))
    batch = np.random.default_rng(0).integers(0, 256, (5, 6, 7, channels), dtype=np.uint8)
    plain, fast = norm(batch, CPU), norm(batch, CPU, channels_last=True)
    assert plain.stride() == (42 * channels, 42, 7, 1)
    assert fast.stride() == (42 * channels, 1, 7 * channels, channels)
    assert torch.equal(plain, fast)
    assert in_layout(fast, False).stride() == plain.stride() and in_layout(plain, True).stride() == fast.stride()
    assert in_layout(plain, False) is plain and in_layout(fast, True) is fast
    conv = torch.nn.Conv2d(channels, 4, 3)
    conv(plain).view(5, -1)  # NCHW activations: a model's view works on them
    with pytest.raises(RuntimeError, match="view"):
        conv(fast).view(5, -1)


class _BNDropView(torch.nn.Module):
    """BatchNorm and seeded dropout before a ``view``: a channels-last try changes both before it raises."""

    def __init__(self, flatten_with_view: bool) -> None:
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)
        self.drop, self.fc = SeededDropout(0.5), torch.nn.Linear(4 * 14 * 14, 4)
        self.flatten_with_view = flatten_with_view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.bn(self.conv(x)))
        return self.fc(h.view(len(h), -1) if self.flatten_with_view else h.reshape(len(h), -1))


def test_cpu_training_feeds_channels_last_batches() -> None:
    x, y = _quadrant_data(70)
    seen: list[tuple[int, ...]] = []
    for augment in (False, True):
        model = _model()
        handle = model.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].stride()))
        _fit(model, x, y, TrainConfig(epochs=1, batch_size=32, min_steps=0, bn_recalibration=False,
                                      augment=augment))
        handle.remove()
    assert seen == [(256, 1, 16, 1)] * 6


@pytest.mark.parametrize("augment", [False, True])
def test_a_model_that_fails_on_channels_last_trains_as_on_nchw_batches(augment: bool) -> None:
    x, y = _quadrant_data(70)
    cfg = TrainConfig(epochs=2, batch_size=32, min_steps=0, bn_recalibration=False, augment=augment)
    failing, twin = _BNDropView(flatten_with_view=True), _BNDropView(flatten_with_view=False)
    torch.manual_seed(0)
    failing.load_state_dict(_BNDropView(False).state_dict())
    twin.load_state_dict(failing.state_dict())
    norm = Normalizer(np.array([0.3], np.float32), np.array([0.3], np.float32))
    runs = [(failing, None), (twin, False)]
    losses = [fit(m, x, y, np.arange(70), cfg, norm, CPU, "fp32", np.random.default_rng(1),
                  torch.Generator().manual_seed(2), channels_last=layout) for m, layout in runs]
    assert losses[0] == losses[1]
    for (name, a), b in zip(failing.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(RuntimeError, match="view"):
        failing.eval()(norm(x[:4], CPU, channels_last=True))


def test_augment_batch_shifts_and_flips_reproducibly():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    outs = {augment_batch(x, torch.Generator().manual_seed(s))[0].sum().item() for s in range(20)}
    assert len(outs) > 1
    const = torch.full((3, 2, 5, 5), 7.0)
    assert torch.equal(augment_batch(const, torch.Generator().manual_seed(1)), const)


def test_augment_batch_is_each_image_flipped_then_windowed_from_the_padded_image() -> None:
    # the reference from the definition, per image, with the generator's draws in the same order
    x = torch.randn(9, 3, 8, 7)
    out = augment_batch(x, torch.Generator().manual_seed(3), pad=2)
    g = torch.Generator().manual_seed(3)
    flip = torch.rand(9, generator=g) < 0.5
    dy, dx = torch.randint(0, 5, (9,), generator=g), torch.randint(0, 5, (9,), generator=g)
    for i in range(9):
        img = x[i].flip(2) if flip[i] else x[i]
        padded = torch.nn.functional.pad(img[None], (2, 2, 2, 2), mode="replicate")[0]
        assert torch.equal(out[i], padded[:, dy[i]:dy[i] + 8, dx[i]:dx[i] + 7])
    assert out.is_contiguous() and flip.any() and not flip.all() and len(set(dy.tolist())) > 1


def test_predict_logits_matches_subsets_and_runs_in_eval_mode():
    x, _ = _quadrant_data(50)
    norm = Normalizer(np.array([0.3], np.float32), np.array([0.3], np.float32))
    model = _model().train()
    full = predict_logits(model, x, None, norm, CPU, "fp32", batch_size=7)
    again = predict_logits(model, x, None, norm, CPU, "fp32", batch_size=50)
    idx = np.array([49, 3, 17])
    sub = predict_logits(model, x, idx, norm, CPU, "fp32", batch_size=2)
    assert full.shape == (50, 4) and full.dtype == np.float32
    np.testing.assert_allclose(full, again, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sub, full[idx], rtol=1e-5, atol=1e-5)
    assert not model.training
    assert len(predict_logits(model, x, np.array([], dtype=np.int64), norm, CPU, "fp32")) == 0


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("n,batch", [(50, 16), (33, 16), (1, 8)])
def test_device_resident_batches_equal_the_per_step_copies(n, batch, channels_last):
    from alkit.training.trainer import _LabeledSet

    x, y = _quadrant_data(80)
    idx = np.random.default_rng(0).choice(80, n, replace=False)
    norm = Normalizer(np.array([0.3], np.float32), np.array([0.3], np.float32))
    order = np.random.default_rng(1).permutation(idx)
    sets = [_LabeledSet(x, torch.as_tensor(y), idx, norm, CPU, resident=r, channels_last=channels_last)
            for r in (False, True)]
    copied, resident = (list(s.epoch(order, batch)) for s in sets)
    assert len(copied) == len(resident) == n // batch + (n % batch >= 2)
    for (xa, ya), (xb, yb) in zip(copied, resident):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and xa.stride() == xb.stride()
    sets[1].channels_last = False  # as ``fit`` sets it for a model that fails on channels-last batches
    assert all(xb.stride()[1] == xb.shape[2] * xb.shape[3] for xb, _ in sets[1].epoch(order, batch))


def test_scoring_batch_defaults_by_device_and_an_explicit_one_wins():
    assert TrainConfig().eval_batch_for(CPU) == 128
    assert TrainConfig(eval_batch_size=64).eval_batch_for(CPU, _model(), (16, 16, 1)) == 64
    assert TrainConfig().eval_batch_for(torch.device("cuda")) == 1024
    assert TrainConfig(eval_batch_size=64).eval_batch_for(torch.device("cuda")) == 64


def test_cpu_scoring_batch_fits_the_largest_activation_in_the_cache(tmp_path):
    fashion = ReferenceCNN((28, 28, 1), 10)  # largest activation: the first conv's 32 x 26 x 26 outputs
    assert largest_activation_bytes(fashion, (28, 28, 1), "fp32") == 32 * 26 * 26 * 4
    assert largest_activation_bytes(fashion, (28, 28, 1), "bf16") == 32 * 26 * 26 * 2
    assert fashion.training  # the probe leaves the model's mode as it found it
    l3 = 32 * 2**20
    fp32, bf16 = cpu_scoring_batch(fashion, (28, 28, 1), "fp32", l3), cpu_scoring_batch(fashion, (28, 28, 1), "bf16", l3)
    assert (fp32, bf16) == (128, 288)
    for batch, precision in ((fp32, 4), (bf16, 2)):
        assert batch % 32 == 0 and batch * 32 * 26 * 26 * precision <= CACHE_SHARE * l3
        assert (batch + 32) * 32 * 26 * 26 * precision > CACHE_SHARE * l3
    assert cpu_scoring_batch(fashion, (28, 28, 1), "fp32", 2**20) == 32  # never below the floor
    assert cpu_scoring_batch(nn_linear(), (4, 4, 1), "fp32", l3) == 1024  # nor above the ceiling
    for text, size in (("32768K", 32 * 2**20), ("8M", 8 * 2**20), ("1048576", 2**20), ("junk", None)):
        (tmp_path / "size").write_text(text + "\n")
        assert l3_cache_bytes(tmp_path / "size") == size
    assert l3_cache_bytes(tmp_path / "missing") is None
    assert TrainConfig().eval_batch_for(CPU, fashion, (28, 28, 1)) == cpu_scoring_batch(fashion, (28, 28, 1), "fp32")


def nn_linear() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
