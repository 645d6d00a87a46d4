"""Fixtures that write tiny datasets in the real on-disk formats, and the real-data locations."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alkit.data.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
FMNIST_DIR = Path(os.environ.get("ALKIT_TEST_FMNIST", "/usr/share/datasets/fashion-mnist"))
CIFAR_ARCHIVE = Path(os.environ.get("ALKIT_TEST_CIFAR10", REPO.parent / "shared/data/cifar-10-python.tar.gz"))


def require_real(path: Path) -> Path:
    """Real-data tests skip on a developer machine without the data, but fail in CI (CI=true)."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"real data missing at {path}; .ci/run must install it")
        pytest.skip(f"real data not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets an empty alkit cache so nothing leaks between tests or from the user's cache."""
    monkeypatch.setenv("ALKIT_DATA", str(tmp_path_factory.mktemp("alkit-cache")))


def make_images(n: int, shape: tuple[int, ...], seed: int, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Class-dependent images (learnable), uint8, and balanced labels."""
    base = np.random.default_rng(1234).integers(0, 256, size=(n_classes, *shape))
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    x = np.clip(base[y] * 0.7 + rng.integers(0, 77, size=(n, *shape)), 0, 255).astype(np.uint8)
    return x, y.astype(np.int64)


def write_fmnist(folder: Path, n_train: int = 60, n_test: int = 20, compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x, y = make_images(n_train, (28, 28), 0)
    xt, yt = make_images(n_test, (28, 28), 1)
    sfx = ".gz" if compress else ""
    write_idx(folder / f"train-images-idx3-ubyte{sfx}", x, compress=compress)
    write_idx(folder / f"train-labels-idx1-ubyte{sfx}", y, compress=compress)
    write_idx(folder / f"t10k-images-idx3-ubyte{sfx}", xt, compress=compress)
    write_idx(folder / f"t10k-labels-idx1-ubyte{sfx}", yt, compress=compress)
    return folder


@pytest.fixture
def fmnist_dir(tmp_path: Path) -> Path:
    return write_fmnist(tmp_path / "fmnist")


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_batch(n: int, seed: int) -> dict:
    x, y = make_images(n, (3072,), seed)
    return {b"batch_label": b"batch", b"labels": y.tolist(), b"data": x,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def write_cifar(path: Path, per_batch: int = 20, members: dict[str, bytes] | None = None,
                as_folder: bool = False) -> Path:
    """A CIFAR-10 'python version' archive (or extracted folder) with tiny batches."""
    files = {f"data_batch_{i}": pickle.dumps(cifar_batch(per_batch, i), protocol=2) for i in range(1, 6)}
    files["test_batch"] = pickle.dumps(cifar_batch(per_batch, 9), protocol=2)
    files["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in CIFAR_NAMES],
                                          b"num_cases_per_batch": per_batch, b"num_vis": 3072}, protocol=2)
    files.update(members or {})
    if as_folder:
        folder = path / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return folder
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def cifar_archive(tmp_path: Path) -> Path:
    return write_cifar(tmp_path / "cifar-10-python.tar.gz")


def write_image_folder(root: Path, classes: list[str], per_class: int, size: tuple[int, int] = (16, 16),
                       mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, size=(size[1], size[0], 3 if mode == "RGB" else 1), dtype=np.uint8)
            arr[..., 0] = c * 40
            Image.fromarray(arr.squeeze(), mode if mode == "RGB" else "L").save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture
def small_npz(tmp_path: Path) -> Path:
    """A learnable 10-class dataset: 400 train / 200 test images of 16x16x1."""
    x, y = make_images(400, (16, 16, 1), 0)
    xt, yt = make_images(200, (16, 16, 1), 1)
    path = tmp_path / "small.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt, classes=np.array([f"c{i}" for i in range(10)]))
    return path
