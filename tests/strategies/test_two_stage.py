"""Two-stage scoring: on real trained models its selections equal fp32's, and a broken bound falls back."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import alkit
from alkit.loop.outputs import model_outputs
from alkit.models.reference_cnn import ReferenceCNN
from alkit.models.seeded import init_weights
from alkit.strategies import ModelOutputs, QueryContext, ScoreBasedStrategy, get_strategy
from alkit.strategies.two_stage import CALIBRATION, two_stage_scores
from alkit.training.config import TrainConfig
from alkit.training.trainer import Normalizer, fit
from tests.conftest import FMNIST_DIR, require_real

CPU = torch.device("cpu")
NORM = Normalizer(np.array([0.3], np.float32), np.array([0.3], np.float32))


class SmallestMaxLogit(ScoreBasedStrategy):
    """The README's user strategy: scores only, from logits."""

    name = "test-smallest-max-logit"

    def score(self, prediction):
        return -prediction.logits.max(axis=1)


@pytest.fixture(scope="module")
def trained() -> tuple[ReferenceCNN, np.ndarray]:
    """A reference CNN trained for a few steps on images whose class is the bright quadrant, and a pool."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 4000)
    x = rng.integers(0, 90, (4000, 16, 16, 1)).astype(np.uint8)
    for i, c in enumerate(y):
        r, k = divmod(int(c), 2)
        x[i, r * 8:(r + 1) * 8, k * 8:(k + 1) * 8] += np.uint8(rng.integers(40, 160))
    model = ReferenceCNN((16, 16, 1), 4)
    init_weights(model, torch.Generator().manual_seed(0))
    fit(model, x, y, np.arange(200), TrainConfig(epochs=1, min_steps=30), NORM, CPU, "fp32",
        np.random.default_rng(0), torch.Generator().manual_seed(0))
    return model, x


def _ctx(outputs: ModelOutputs, candidates: np.ndarray) -> QueryContext:
    labels = np.full(4000, -1)
    labels[:200] = 0
    return QueryContext(candidates, np.arange(200), labels, 4, 1, np.random.default_rng(7), outputs)


@pytest.mark.parametrize("strategy", ["margin", "entropy", "least-confidence", SmallestMaxLogit()])
def test_two_stage_selects_exactly_what_fp32_selects(trained, strategy) -> None:
    model, x = trained
    strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
    candidates = np.arange(200, 4000)
    fp32 = model_outputs(model, x, NORM, CPU, 256, 0, 1)
    staged = model_outputs(model, x, NORM, CPU, 256, 0, 1, cheap_precision="bf16")
    want = strategy.query(_ctx(fp32, candidates), 100)
    got = strategy.query(_ctx(staged, candidates), 100)
    np.testing.assert_array_equal(got, want)
    assert fp32.scoring_log == []
    (record,) = staged.scoring_log
    assert not record.fallback and record.observed_error <= record.error_bound
    assert 100 <= record.shortlist < len(candidates) // 2
    assert "bound held" in record.describe()


def test_a_cheap_pass_worse_than_its_calibration_widens_the_shortlist_or_falls_back(trained) -> None:
    model, x = trained
    candidates = np.arange(200, 4000)
    fp32 = model_outputs(model, x, NORM, CPU, 256, 0, 1)
    exact = fp32.logits(candidates)
    calib = set(candidates[np.unique(np.linspace(0, len(candidates) - 1, CALIBRATION).astype(int))].tolist())
    order = np.argsort(-get_strategy("margin").score(alkit.strategies.PoolPrediction(exact)))
    # near the top, outside the calibration slice, the cheap pass errs 100 times more than on the slice: the
    # first shortlist's errors exceed the slice's bound, so the bound widens and the shortlist grows
    lie = [i for i in candidates[order[:400]] if int(i) not in calib][:50]

    def cheap(idx: np.ndarray) -> np.ndarray:
        noise = np.random.default_rng(int(idx[0]) + len(idx)).normal(size=(len(idx), 4))
        return fp32.logits(idx) + noise * np.where(np.isin(idx, lie), 1e-2, 1e-4)[:, None]

    broken = ModelOutputs(lambda idx, emb: (fp32.logits(idx), None), cheap=cheap)
    got = get_strategy("margin").query(_ctx(broken, candidates), 100)
    want = get_strategy("margin").query(_ctx(fp32, candidates), 100)
    np.testing.assert_array_equal(got, want)
    record = broken.scoring_log[0]
    assert record.widenings >= 1 and record.observed_error <= record.error_bound
    assert "widened" in record.describe()

    def noise(idx: np.ndarray) -> np.ndarray:  # a cheap pass unrelated to the model: no shortlist can be trusted
        return np.random.default_rng(1).normal(size=(len(idx), 4)) * 5

    useless = ModelOutputs(lambda idx, emb: (fp32.logits(idx), None), cheap=noise)
    np.testing.assert_array_equal(get_strategy("margin").query(_ctx(useless, candidates), 100), want)
    assert useless.scoring_log[0].fallback and "all 3,800 rescored in fp32" in useless.scoring_log[0].describe()


def test_two_stage_stands_aside_where_it_cannot_pay(trained) -> None:
    model, x = trained
    staged = model_outputs(model, x, NORM, CPU, 256, 0, 1, cheap_precision="bf16")
    score = get_strategy("margin").score
    assert two_stage_scores(score, staged, np.arange(200, 4000), 3000) is None  # k near the pool's size
    assert two_stage_scores(score, staged, np.arange(200, 1000), 10) is None  # a small pool
    assert two_stage_scores(score, model_outputs(model, x, NORM, CPU, 256, 0, 1), np.arange(200, 4000), 10) is None


def test_scoring_option_is_checked_and_auto_follows_the_device() -> None:
    from alkit.errors import ConfigError
    from alkit.models.device import cpu_has_native_bf16

    with pytest.raises(ConfigError, match="train.scoring: 'int4' is unknown"):
        TrainConfig(scoring="int4").validate()
    assert TrainConfig(scoring="fp32").cheap_scoring_precision(CPU) is None
    assert TrainConfig(scoring="two-stage").cheap_scoring_precision(CPU) == "bf16"
    assert TrainConfig().cheap_scoring_precision(CPU) == ("bf16" if cpu_has_native_bf16() else None)
    assert TrainConfig().cheap_scoring_precision(torch.device("cuda")) == "bf16"


@pytest.mark.slow
def test_a_two_stage_run_queries_what_an_fp32_run_queries(tmp_path) -> None:
    require_real(FMNIST_DIR)
    kw = dict(initial=100, query=100, rounds=1, candidates=5000, epochs=1, min_steps=20, full_data="none",
              progress=False, report=False)
    staged = alkit.run("fashion-mnist", ["margin", "entropy"], [0], out=tmp_path / "two", scoring="two-stage", **kw)
    fp32 = alkit.run("fashion-mnist", ["margin", "entropy"], [0], out=tmp_path / "fp32", scoring="fp32", **kw)
    a = {(r["strategy"], r["round"]): r for r in staged.rows}
    b = {(r["strategy"], r["round"]): r for r in fp32.rows}
    assert a.keys() == b.keys()
    for key, row in a.items():
        np.testing.assert_array_equal(row["queried"], b[key]["queried"])
        if key[1] == 0:
            assert row["scoring"].startswith("two-stage: ") and "bound held" in row["scoring"]
            assert b[key]["scoring"] == "fp32"
