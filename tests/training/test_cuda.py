"""The CUDA path: training, prediction, bf16 and whole runs on a GPU, checked against the CPU.

These run where CUDA is available (``pytest -m cuda`` on a GPU machine, as ``benchmarks/gpu.sh run``
does) and are skipped elsewhere; the CPU side of each comparison runs everywhere in the other tests.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import alkit
from alkit.models.device import resolve_device, resolve_precision
from alkit.training.config import TrainConfig
from alkit.training.inference import predict_logits
from alkit.training.trainer import Normalizer, fit
from tests.loop.test_experiment import FAST, _assert_same_results
from tests.training.test_trainer import _model, _quadrant_data

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CPU = torch.device("cpu")
NORM = Normalizer(np.array([0.3], np.float32), np.array([0.3], np.float32))


def _trained(device: torch.device, precision: str = "fp32", augment: bool = True, seed: int = 0):
    x, y = _quadrant_data(256, seed=1)
    model = _model(seed)
    fit(model, x, y, np.arange(len(x)), TrainConfig(epochs=3, batch_size=32, augment=augment), NORM, device,
        precision, np.random.default_rng(seed), torch.Generator(device=device).manual_seed(seed))
    return model


def test_auto_picks_cuda_and_fp32_and_bf16_runs_where_supported():
    dev = resolve_device("auto")
    assert dev.type == "cuda" and resolve_precision("auto", dev) == "fp32"
    assert torch.cuda.is_bf16_supported()


def test_fit_on_cuda_repeats_bit_for_bit_and_leaves_cudnn_flags_as_they_were():
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    try:
        a = _trained(dev).state_dict()
        b = _trained(dev).state_dict()
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    finally:
        torch.backends.cudnn.benchmark = False
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_predictions_on_cuda_match_the_cpu_on_the_same_weights():
    model = _trained(CPU)
    x, _ = _quadrant_data(300, seed=7)
    cpu = predict_logits(model, x, None, NORM, CPU, "fp32")
    gpu = predict_logits(model, x, None, NORM, torch.device("cuda"), "fp32")
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    assert (gpu.argmax(1) == cpu.argmax(1)).mean() == 1.0
    assert np.abs(gpu - cpu).max() <= 2e-2 * max(1.0, np.abs(cpu).max())  # TF32 convolutions


def test_training_on_cuda_learns_in_fp32_and_bf16():
    dev = torch.device("cuda")
    x, y = _quadrant_data(300, seed=7)
    for precision in ("fp32", "bf16"):
        model = _trained(dev, precision, augment=False)  # flips would move the quadrant that is the label
        acc = (predict_logits(model, x, None, NORM, dev, precision).argmax(1) == y).mean()
        assert acc >= 0.95, (precision, acc)


def test_a_seeded_run_on_cuda_repeats_exactly(small_npz: Path, tmp_path: Path):
    runs = [alkit.run("npz", ["margin", "entropy"], seeds=[0], data_dir=str(small_npz), out=tmp_path / name,
                      device="cuda", precision="bf16", **FAST) for name in ("a", "b")]
    _assert_same_results(tmp_path / "a" / "rounds.csv", tmp_path / "b" / "rounds.csv")
    assert len(runs[0].rows) == 2 * (FAST["rounds"] + 1)
