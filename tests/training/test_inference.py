"""Forward passes for strategies: embeddings by hook or embed()/head(), and MC-dropout samples."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from alkit.errors import StrategyError
from alkit.loop.outputs import model_outputs
from alkit.models import ReferenceCNN
from alkit.models.seeded import SeededDropout, init_weights
from alkit.training.inference import mc_dropout_logits, predict_logits, predict_outputs
from alkit.training.trainer import Normalizer

CPU = torch.device("cpu")
NORM = Normalizer(np.array([0.5], np.float32), np.array([0.25], np.float32))


def _images(n: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)


def _cnn() -> ReferenceCNN:
    model = ReferenceCNN((28, 28, 1), 10)
    init_weights(model, torch.Generator().manual_seed(0))
    return model


def test_embeddings_are_the_last_linear_layers_input() -> None:
    model, x = _cnn(), _images()
    logits, emb = predict_outputs(model, x, np.array([3, 1, 7]), NORM, CPU, batch_size=2, embeddings=True)
    with torch.no_grad():
        xb = NORM(x[[3, 1, 7]], CPU)
        z = model.classifier[:-1](model.features(xb))
    np.testing.assert_allclose(emb, z.numpy(), rtol=1e-5, atol=1e-5)
    assert emb.shape == (3, 512)
    np.testing.assert_allclose(logits, predict_logits(model, x, np.array([3, 1, 7]), NORM, CPU, "fp32"), atol=1e-5)
    assert not model.classifier[-1]._forward_hooks  # the hook is removed


class TwoPart(nn.Module):
    """A user model that says where its embedding is."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Tanh())
        self.out = nn.Linear(16, 3)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * 2.0  # deliberately not the last Linear's input as a hook would see it

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(z / 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def test_embed_and_head_methods_are_used_when_defined() -> None:
    torch.manual_seed(0)
    model, x = TwoPart(), _images(5)
    logits, emb = predict_outputs(model, x, None, NORM, CPU, embeddings=True)
    with torch.no_grad():
        np.testing.assert_allclose(emb, model.embed(NORM(x, CPU)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(logits, predict_logits(model, x, None, NORM, CPU, "fp32"), rtol=1e-6)


def test_a_model_without_linear_or_dropout_gets_clear_errors() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 3, 28), nn.Flatten())
    with pytest.raises(StrategyError, match="no nn.Linear"):
        predict_outputs(conv, _images(2), None, NORM, CPU, embeddings=True)
    with pytest.raises(StrategyError, match="no dropout"):
        mc_dropout_logits(TwoPart(), _images(2), None, NORM, CPU, 4, torch.Generator(), 0)


def test_mc_dropout_is_seeded_keeps_batchnorm_in_eval_and_leaves_the_global_rng_alone() -> None:
    model, x = _cnn(), _images()
    stats = model.features[2].running_mean.clone()
    state = torch.random.get_rng_state()
    a = mc_dropout_logits(model, x, None, NORM, CPU, 5, torch.Generator().manual_seed(1), 1, batch_size=4)
    b = mc_dropout_logits(model, x, None, NORM, CPU, 5, torch.Generator().manual_seed(1), 1, batch_size=4)
    c = mc_dropout_logits(model, x, None, NORM, CPU, 5, torch.Generator().manual_seed(2), 2, batch_size=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.shape == (12, 10, 5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[:, :, 0], a[:, :, 1])  # dropout really is on
    assert torch.equal(model.features[2].running_mean, stats) and not model.training
    eval_logits = predict_logits(model, x, None, NORM, CPU, "fp32")
    assert np.abs(a.mean(axis=2) - eval_logits).mean() < np.abs(eval_logits).mean()  # centred on the eval model


def test_the_stem_runs_once_per_batch_and_the_samples_equal_whole_passes() -> None:
    model, x = _cnn(), _images(10)
    calls = []
    model.features[3].register_forward_hook(lambda *_: calls.append(1))  # the stem's second convolution
    split = mc_dropout_logits(model, x, None, NORM, CPU, 6, torch.Generator().manual_seed(4), 4, batch_size=4)
    assert len(calls) == 3
    # nn.Sequential(model) hides stem()/after_stem(), so MC-dropout runs whole passes per sample
    whole = mc_dropout_logits(nn.Sequential(model), x, None, NORM, CPU, 6, torch.Generator().manual_seed(4), 4,
                              batch_size=4)
    assert len(calls) == 3 + 3 * 6
    np.testing.assert_array_equal(split, whole)
    with torch.no_grad():
        xb = NORM(x, CPU)
        np.testing.assert_array_equal(model.after_stem(model.stem(xb)).numpy(), model.eval()(xb).numpy())


def test_a_stem_that_runs_dropout_is_refused() -> None:
    class LeakyStem(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Dropout(0.5), nn.Linear(16, 3))

        def stem(self, x: torch.Tensor) -> torch.Tensor:
            return self.body[:3](x)

        def after_stem(self, h: torch.Tensor) -> torch.Tensor:
            return self.body[3:](h)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    with pytest.raises(StrategyError, match=r"LeakyStem.stem\(\) runs a dropout layer \(Dropout\)"):
        mc_dropout_logits(LeakyStem(), _images(3), None, NORM, CPU, 2, torch.Generator(), 0)


def test_nn_dropout_models_are_reproducible_too() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    x = _images(6)
    a = mc_dropout_logits(model, x, None, NORM, CPU, 4, torch.Generator().manual_seed(0), 7)
    b = mc_dropout_logits(model, x, None, NORM, CPU, 4, torch.Generator().manual_seed(0), 7)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:, :, 0], a[:, :, 1])


def test_model_outputs_are_cached_and_independent_of_who_asks_first() -> None:
    model, x = _cnn(), _images()
    idx = np.array([0, 5, 9])
    first = model_outputs(model, x, NORM, CPU, 4, seed=3, round_=2)
    m1 = first.mc_logits(idx, 3)
    assert first.mc_logits(idx, 3) is m1
    emb = first.embeddings(idx)
    assert first.logits(idx) is first.logits(idx)
    other = model_outputs(model, x, NORM, CPU, 4, seed=3, round_=2)
    other.logits(np.array([1, 2]))
    np.testing.assert_array_equal(other.mc_logits(idx, 3), m1)
    np.testing.assert_array_equal(other.embeddings(idx), emb)
    assert first.seconds > 0



class _ViewNet(nn.Module):
    """A user model that flattens with ``view``, which fails on channels-last activations."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc, self.drop = nn.Conv2d(1, 4, 3), nn.Linear(4 * 26 * 26, 10), nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.conv(x).view(x.size(0), -1)))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_passes_feed_channels_last_batches_with_the_nchw_results(precision: str) -> None:
    model = ReferenceCNN((32, 32, 3), 10)
    init_weights(model, torch.Generator().manual_seed(0))
    x = np.random.default_rng(1).integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
    norm = Normalizer(np.array([0.5, 0.4, 0.3], np.float32), np.array([0.25, 0.2, 0.3], np.float32))
    seen = []
    hook = model.register_forward_pre_hook(
        lambda _m, inp: seen.append(inp[0].is_contiguous(memory_format=torch.channels_last)
                                    and not inp[0].is_contiguous()))
    fast = predict_logits(model, x, None, norm, CPU, precision, 8)
    assert seen == [True] * 3
    plain = predict_outputs(model, x, None, norm, CPU, precision, 8, channels_last=False)[0]
    hook.remove()
    assert seen[3:] == [False] * 3
    np.testing.assert_allclose(fast, plain, atol=0.05 if precision == "bf16" else 1e-4)


def test_a_model_that_fails_on_channels_last_runs_on_nchw_batches() -> None:
    torch.manual_seed(0)
    model, x = _ViewNet(), _images()
    plain = predict_outputs(model, x, None, NORM, CPU, "fp32", 5, channels_last=False)[0]
    np.testing.assert_array_equal(predict_logits(model, x, None, NORM, CPU, "fp32", 5), plain)
    first = mc_dropout_logits(model, x, None, NORM, CPU, 3, torch.Generator().manual_seed(4), 4, 5)
    np.testing.assert_array_equal(mc_dropout_logits(model, x, None, NORM, CPU, 3, torch.Generator().manual_seed(4),
                                                    4, 5), first)
    assert len({first[:, :, t].tobytes() for t in range(3)}) == 3


class _DropThenFlatten(nn.Module):
    """Dropout draws its masks before the flattening; ``view`` then fails on channels-last activations."""

    def __init__(self, flatten_with_view: bool) -> None:
        super().__init__()
        self.conv, self.drop, self.fc = nn.Conv2d(1, 4, 3), SeededDropout(0.5), nn.Linear(4 * 26 * 26, 10)
        self.view = flatten_with_view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.conv(x))
        return self.fc(h.view(len(h), -1) if self.view else h.reshape(len(h), -1))


def test_mc_dropout_retried_on_nchw_batches_draws_the_masks_a_first_try_would() -> None:
    torch.manual_seed(0)
    failing = _DropThenFlatten(flatten_with_view=True)
    twin = _DropThenFlatten(flatten_with_view=False)
    twin.load_state_dict(failing.state_dict())
    x = _images()
    retried = mc_dropout_logits(failing, x, None, NORM, CPU, 3, torch.Generator().manual_seed(4), 4, 5)
    direct = mc_dropout_logits(twin, x, None, NORM, CPU, 3, torch.Generator().manual_seed(4), 4, 5)
    np.testing.assert_allclose(retried, direct, atol=1e-5)
