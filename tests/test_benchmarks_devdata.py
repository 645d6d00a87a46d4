"""benchmarks/devdata.py: CIFAR-10 coded losslessly into parts and decoded back into the official layout."""
from pathlib import Path

import numpy as np
import pytest

from alkit.data import cifar10
from benchmarks import devdata

CLASSES = [f"class{i}" for i in range(10)]


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth gradients with noise and saturated edges, so every branch of the median-edge predictor is taken."""
    base = np.linspace(0, 255, 32)[None, :, None, None] + np.linspace(-60, 60, 32)[None, None, :, None]
    x = base + rng.normal(0, 25, (n, 32, 32, 3))
    x[:, :, 16:] = 255 - x[:, :, 16:]
    return np.clip(x, 0, 255).astype(np.uint8)


def test_the_median_edge_code_decodes_to_the_same_pixels() -> None:
    rng = np.random.default_rng(0)
    for x in (_images(rng, 7), rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8),
              np.full((2, 32, 32, 3), 255, np.uint8)):
        residuals = devdata.encode(x)
        assert residuals.dtype == np.uint8 and residuals.shape == x.shape
        assert np.array_equal(devdata.decode(residuals), x)
    smooth = _images(rng, 20)
    assert np.abs(devdata.encode(smooth).astype(np.int8)).mean() < np.abs(smooth.astype(np.int16) - 128).mean()


def test_pack_and_unpack_give_back_the_dataset_and_refuse_a_damaged_part(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {"x_train": _images(rng, 50), "y_train": rng.integers(0, 10, 50).astype(np.uint8),
              "x_test": _images(rng, 20), "y_test": rng.integers(0, 10, 20).astype(np.uint8)}
    devdata.write_folder(tmp_path / "src", arrays, CLASSES)
    parts = devdata.pack(tmp_path / "packed", [0.05, 0.1], tmp_path / "src", strict=False)
    assert len(parts) >= 2 and (tmp_path / "packed" / "part0" / devdata.MANIFEST).is_file()
    folder = devdata.unpack(sorted((tmp_path / "packed").glob("part*")), tmp_path / "out")
    a = cifar10.load(folder, download_if_missing=False, progress=False, strict=False)
    assert np.array_equal(a.x_train, arrays["x_train"]) and np.array_equal(a.y_train, arrays["y_train"])
    assert np.array_equal(a.x_test, arrays["x_test"]) and a.classes == CLASSES
    damaged = bytearray(parts[1].read_bytes())
    damaged[10] ^= 1
    parts[1].write_bytes(bytes(damaged))
    with pytest.raises(SystemExit, match="cifar-part1.bin is damaged"):
        devdata.unpack(sorted((tmp_path / "packed").glob("part*")), tmp_path / "again")
    parts[1].unlink()
    with pytest.raises(SystemExit, match="cifar-part1.bin is missing"):
        devdata.unpack(sorted((tmp_path / "packed").glob("part*")), tmp_path / "again")
