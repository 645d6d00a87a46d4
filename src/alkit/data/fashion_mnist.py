"""Fashion-MNIST (Xiao et al., 2017) from the official IDX files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from alkit.data.dataset import Dataset
from alkit.data.files import cache_dir, download, file_digest, find_or_download
from alkit.data.idx import read_idx_pair
from alkit.errors import DatasetError

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train_images": ("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": ("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": ("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": ("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310"),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
TRAIN_PER_CLASS, TEST_PER_CLASS = 6000, 1000
HOW_TO_GET = (
    "install Debian's package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist), "
    "run `alkit fetch fashion-mnist` with internet access, or pass --data-dir with the four IDX files"
)


def _find_in(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, (stem, _) in FILES.items():
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def search_dirs(data_dir: Path | None) -> list[Path]:
    """Folders looked at, in order. A user-given ``data_dir`` is the only one looked at."""
    if data_dir is not None:
        return [Path(data_dir)]
    return [cache_dir() / "fashion-mnist", DEBIAN_DIR]


def locate(data_dir: Path | None = None) -> dict[str, Path] | None:
    for folder in search_dirs(data_dir):
        found = _find_in(folder)
        if found:
            return found
    return None


def fetch(progress: bool = True) -> dict[str, Path]:
    """Download the four files into the cache, verifying the official MD5s."""
    folder = cache_dir() / "fashion-mnist"
    paths = {}
    for key, (stem, md5) in FILES.items():
        dest = folder / f"{stem}.gz"
        if not dest.is_file():
            download(BASE_URL + f"{stem}.gz", dest, md5, progress=progress)
        paths[key] = dest
    return paths


def load(data_dir: str | Path | None = None, *, download_if_missing: bool = True,
         strict: bool = True, progress: bool = True) -> Dataset:
    """Load Fashion-MNIST, looking locally first and downloading as a last resort.

    ``strict`` checks the official counts (6,000 train and 1,000 test images per class).
    """
    data_dir = Path(data_dir) if data_dir is not None else None
    files, source = find_or_download(
        "fashion-mnist", data_dir, locate, fetch,
        f"does not contain the four IDX files ({', '.join(s for s, _ in FILES.values())}, optionally .gz)",
        HOW_TO_GET, download_if_missing, progress)
    x_train, y_train = read_idx_pair(files["train_images"], files["train_labels"], len(CLASSES))
    x_test, y_test = read_idx_pair(files["test_images"], files["test_labels"], len(CLASSES))
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DatasetError(f"{files['test_images']}: test images are {x_test.shape[1]}x{x_test.shape[2]} but "
                           f"{files['train_images']} holds {x_train.shape[1]}x{x_train.shape[2]}; the files do not "
                           "belong together")
    if strict:
        _check_counts(files, y_train, y_test)
    return Dataset(
        name="fashion-mnist", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        classes=list(CLASSES),
        provenance={
            "source": source, "folder": str(files["train_images"].parent),
            "files": {k: {"path": str(p), "sha256": file_digest(p)} for k, p in files.items()},
            "checks": "IDX magic numbers, header sizes, 6,000/1,000 images per class",
        },
    )


def _check_counts(files: dict[str, Path], y_train: np.ndarray, y_test: np.ndarray) -> None:
    for split, y, per_class, key in (("train", y_train, TRAIN_PER_CLASS, "train_labels"),
                                     ("test", y_test, TEST_PER_CLASS, "test_labels")):
        counts = np.bincount(y, minlength=len(CLASSES))
        if not np.all(counts == per_class):
            raise DatasetError(
                f"{files[key]}: {split} class counts {counts.tolist()} differ from the official "
                f"{per_class} per class; the file is not the official Fashion-MNIST (load with strict=False to accept it)"
            )
