"""Parser for the IDX format used by MNIST and Fashion-MNIST (gzipped or raw)."""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from alkit.errors import DatasetError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: the gzip stream is truncated or corrupt ({exc}); download the file again") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes, checking magic number, header and length."""
    data = _read_bytes(path)
    if len(data) < 8:
        raise DatasetError(f"{path}: file is {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
        raise DatasetError(
            f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} for an IDX {kind} file"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = math.prod(dims) if dims else 0  # Python ints: a forged header cannot wrap around to 0
    body = len(data) - header
    if body != expected:
        raise DatasetError(
            f"{path}: header declares {dims} = {expected} bytes of data but the file has {body}; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image and label files; images come back as N x H x W x 1."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.ndim != 3:
        raise DatasetError(f"{images_path}: expected 3 dimensions (N, H, W), found {images.ndim}")
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected 1 dimension, found {labels.ndim}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; "
            "the files do not belong together"
        )
    if images.shape[1] < 1 or images.shape[2] < 1:
        raise DatasetError(f"{images_path}: header declares {images.shape[1]}x{images.shape[2]} images; "
                           "the file is corrupt")
    if labels.size and int(labels.max()) >= num_classes:
        raise DatasetError(f"{labels_path}: label {int(labels.max())} is out of range 0..{num_classes - 1}")
    return images[..., None].copy(), labels.astype(np.int64)


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> None:
    """Write a uint8 array in IDX format (used by tests and by users converting data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        Path(path).write_bytes(payload)
