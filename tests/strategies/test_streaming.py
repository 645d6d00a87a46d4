import numpy as np
import torch

from alkit.models import ReferenceCNN
from alkit.models.seeded import init_weights
from alkit.strategies import PoolPrediction, get_strategy
from alkit.strategies.streaming import streaming_query
from alkit.training.inference import predict_logits
from alkit.training.trainer import Normalizer
from tests.conftest import make_images


def test_streaming_top_k_equals_whole_pool_ranking() -> None:
    x, _ = make_images(300, (16, 16, 1), 0)
    model = ReferenceCNN((16, 16, 1), 10)
    init_weights(model, torch.Generator().manual_seed(0))
    norm = Normalizer(np.array([0.5], np.float32), np.array([0.3], np.float32))
    cpu = torch.device("cpu")
    strategy = get_strategy("entropy")
    full = strategy.score(PoolPrediction(predict_logits(model, x, None, norm, cpu, "fp32")))
    expected = np.lexsort((np.arange(300), -full))[:25]
    for chunk in (7, 64, 10_000):
        idx, scores = streaming_query(strategy, model, x, 25, norm, cpu, chunk=chunk, batch_size=32)
        assert idx.tolist() == expected.tolist()
        np.testing.assert_allclose(scores, full[expected], rtol=1e-6)
    subset = np.arange(100, 300, 2)
    idx, _ = streaming_query(strategy, model, x, 10, norm, cpu, chunk=9, indices=subset)
    assert set(idx) <= set(subset.tolist())
