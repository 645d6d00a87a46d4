"""`alkit run` on the three real datasets of the study, with small budgets."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest

from alkit.storage.run_store import CSV_COLUMNS
from tests.conftest import CIFAR_ARCHIVE, FMNIST_DIR, require_real


@pytest.mark.slow
@pytest.mark.parametrize("dataset, data, training", [
    ("fashion-mnist", FMNIST_DIR, ["--epochs", "4"]),  # the default training rule (50 steps per epoch at least)
    ("fashion-mnist-imbalanced", FMNIST_DIR, ["--epochs", "10", "--min-steps", "0"]),  # the other two: formats, loop
    ("cifar10", CIFAR_ARCHIVE, ["--epochs", "10", "--min-steps", "0"]),
])
def test_run_on_real_dataset(dataset: str, data: Path, training: list[str], tmp_path: Path) -> None:
    require_real(data)
    out = subprocess.run(
        [sys.executable, "-m", "alkit", "run", "--dataset", dataset, "--data-dir", str(data),
         "--strategies", "random,entropy", "--initial", "200", "--query", "100", "--rounds", "1",
         *training, "--candidates", "2000", "--full-data", "none", "--out", str(tmp_path / "run"), "-q"],
        capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    with open(tmp_path / "run" / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == CSV_COLUMNS and len(rows) == 4
    for r in rows:
        assert r["dataset"] == dataset and r["precision_used"] in ("fp32", "bf16")
        assert int(r["n_labeled"]) in (200, 300)
        for col in ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro"):
            assert 0.0 <= float(r[col]) <= 1.0
        assert float(r["accuracy"]) > 0.12  # above chance (0.10) after 16+ steps on 200+ labels
        assert float(r["score_seconds"]) >= 0 and float(r["select_seconds"]) >= 0
        assert (float(r["train_seconds"]) > 0) == (r["round"] != "0" or r["strategy"] == "random")  # random trains first
    entropy_r0 = next(r for r in rows if r["strategy"] == "entropy" and r["round"] == "0")
    random_r0 = next(r for r in rows if r["strategy"] == "random" and r["round"] == "0")
    assert float(entropy_r0["score_seconds"]) > 0 and float(random_r0["score_seconds"]) == 0
    assert int(entropy_r0["n_candidates"]) == 2000
    assert (tmp_path / "run" / "report.html").exists()
