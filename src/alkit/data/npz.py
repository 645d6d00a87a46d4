"""Datasets stored as a NumPy ``.npz`` with x_train, y_train, x_test, y_test (and classes)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from alkit.data.dataset import Dataset
from alkit.data.files import file_digest
from alkit.data.limits import limit
from alkit.errors import DatasetError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def _images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and np.isnan(x).any():
            raise DatasetError(f"{path}: field '{key}' contains NaN values; images must be uint8 0..255")
        raise DatasetError(
            f"{path}: field '{key}' has dtype {x.dtype}, expected uint8 0..255 "
            "(convert e.g. with (x * 255).round().astype(np.uint8))"
        )
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DatasetError(f"{path}: field '{key}' has shape {x.shape}, expected N x H x W (x C)")
    return x


def _labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        if np.isnan(y).any():
            raise DatasetError(f"{path}: field '{key}' contains NaN values; labels must be integers")
        raise DatasetError(f"{path}: field '{key}' has dtype {y.dtype}, expected integer class indices")
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise DatasetError(f"{path}: field '{key}' must be a 1-D integer array, found {y.dtype} {y.shape}")
    if len(y) != n:
        x_key = key.replace("y_", "x_")
        raise DatasetError(f"{path}: '{x_key}' has {n} images but '{key}' has {len(y)} labels")
    return y.astype(np.int64)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(6)


def _read(path: Path) -> dict[str, np.ndarray]:
    """The known fields of an npz archive; other members are ignored, never decoded."""
    if not zipfile.is_zipfile(path):
        hint = " (a single array saved with np.save; save the four arrays with np.savez)" \
            if _head(path) == b"\x93NUMPY" else ""
        raise DatasetError(f"{path}: not an .npz archive{hint}; write one with "
                           "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=..., classes=...)")
    try:
        with zipfile.ZipFile(path) as zf:
            cap = limit("ALKIT_MAX_ARCHIVE_MEMBER_BYTES")
            big = [i.filename for i in zf.infolist() if i.file_size > cap]
            if big:
                raise DatasetError(f"{path}: member(s) {big} declare more than {cap:,} bytes; raise the limit "
                                   "with ALKIT_MAX_ARCHIVE_MEMBER_BYTES if the file is genuine")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in REQUIRED if k not in z.files]
            if missing:
                raise DatasetError(f"{path}: missing field(s) {missing}; an npz dataset needs {list(REQUIRED)}")
            arrays = {k: z[k] for k in (*REQUIRED, "classes") if k in z.files}
        not_arrays = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
        if not_arrays:
            raise DatasetError(f"{path}: member(s) {not_arrays} are not NumPy arrays; write the file with np.savez")
        return arrays
    except DatasetError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DatasetError(f"{path}: a field holds Python objects, which alkit does not load; store numeric "
                               "arrays (and classes as a string array, np.array(names))") from None
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, AttributeError, TypeError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None


def load(path: str | Path, *, progress: bool = True) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    arrays = _read(path)
    x_train = _images(path, "x_train", arrays["x_train"])
    x_test = _images(path, "x_test", arrays["x_test"])
    for key, x in (("x_train", x_train), ("x_test", x_test)):
        if len(x) == 0:
            raise DatasetError(f"{path}: field '{key}' has no images; an npz dataset needs both splits")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{path}: x_train images are {x_train.shape[1:]} but x_test images are {x_test.shape[1:]}")
    y_train = _labels(path, "y_train", arrays["y_train"], len(x_train))
    y_test = _labels(path, "y_test", arrays["y_test"], len(x_test))
    if "classes" in arrays:
        if arrays["classes"].ndim != 1:
            raise DatasetError(f"{path}: field 'classes' must be a 1-D array of names")
        classes = [str(c) for c in arrays["classes"].tolist()]
    else:
        classes = [str(c) for c in range(int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1)]
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise DatasetError(f"{path}: field '{key}' has label {bad}, out of range 0..{len(classes) - 1}")
    empty = [classes[c] for c in np.flatnonzero(np.bincount(y_train, minlength=len(classes)) == 0)]
    if empty:
        raise DatasetError(f"{path}: class(es) {empty} have no training images")
    return Dataset(name=path.stem, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   classes=classes, provenance={"source": "npz", "path": str(path), "sha256": file_digest(path)})
