"""CIFAR-10 (Krizhevsky, 2009) from the official "python version" archive or its folder."""
from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from alkit.data.dataset import Dataset
from alkit.data.files import cache_dir, download, file_digest, find_or_download, import_local
from alkit.data.limits import limit
from alkit.data.safe_pickle import safe_loads
from alkit.errors import DatasetError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
META = "batches.meta"
TRAIN_PER_CLASS, TEST_PER_CLASS = 5000, 1000
HOW_TO_GET = (
    "run `alkit fetch cifar10` with internet access, import a local copy with "
    "`alkit fetch cifar10 --source PATH/cifar-10-python.tar.gz`, or pass --data-dir"
)


def _candidates(folder: Path) -> list[Path]:
    return [folder if folder.name == FOLDER else folder / FOLDER, folder / ARCHIVE]


def locate(data_dir: Path | None = None) -> Path | None:
    """Return the archive or batches folder to read, or None. ``data_dir`` may be either itself."""
    if data_dir is not None:
        data_dir = Path(data_dir)
        if data_dir.is_file():
            return data_dir
        places = _candidates(data_dir)
    else:
        places = _candidates(cache_dir())
    for place in places:
        if (place.is_dir() and (place / TEST_BATCH).is_file()) or place.is_file():
            return place
    return None


def fetch(source: Path | None = None, progress: bool = True) -> Path:
    """Download the official archive (MD5-verified), or import a local one after validating it."""
    dest = cache_dir() / ARCHIVE
    if source is not None:
        source = Path(source)
        _read_batches(source, progress=progress)
        if source.is_dir():  # an extracted folder: its batch files are copied into the cache's folder
            folder = cache_dir() / FOLDER
            for name in (*TRAIN_BATCHES, TEST_BATCH, META):
                import_local(source / name, folder / name)
            return folder
        return import_local(source, dest)
    if not dest.is_file():
        download(URL, dest, MD5, progress=progress)
    return dest


def _read_members(path: Path) -> dict[str, bytes]:
    """The raw bytes of every batch file, from a folder or a .tar.gz archive."""
    names = [*TRAIN_BATCHES, TEST_BATCH, META]
    if path.is_dir():
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise DatasetError(f"{path}: missing CIFAR-10 batch files {missing}")
        return {n: (path / n).read_bytes() for n in names}
    cap = limit("ALKIT_MAX_ARCHIVE_MEMBER_BYTES")
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {}
            for member in tar.getmembers():
                name = member.name
                if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
                    raise DatasetError(f"{path}: member '{name}' points outside the archive (absolute or '..'); "
                                       "refusing the archive: download the official one again")
                base = name.rsplit("/", 1)[-1]
                if member.isfile() and base in names and name.startswith(FOLDER + "/"):
                    if member.size > cap:
                        raise DatasetError(f"{path}: member '{name}' declares {member.size:,} bytes, over the "
                                           f"limit of {cap:,}; raise it with ALKIT_MAX_ARCHIVE_MEMBER_BYTES if the "
                                           "archive is genuine")
                    extracted = tar.extractfile(member)
                    if extracted is None:
                        raise DatasetError(f"{path}: member '{name}' cannot be read")
                    members[base] = extracted.read()
    except DatasetError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DatasetError(f"{path}: not a readable CIFAR-10 archive ({exc}); download it again") from exc
    missing = [n for n in names if n not in members]
    if missing:
        raise DatasetError(f"{path}: archive lacks {', '.join(FOLDER + '/' + m for m in missing)}")
    return members


def _get(batch: dict[Any, Any], key: str, origin: str) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DatasetError(f"{origin}: batch has no field '{key}'")


def _parse_batch(raw: bytes, origin: str) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_loads(raw, origin)
    if not isinstance(batch, dict):
        raise DatasetError(f"{origin}: expected a dict, found {type(batch).__name__}")
    data = np.asarray(_get(batch, "data", origin))
    raw_labels = _get(batch, "labels", origin)
    if not isinstance(raw_labels, (list, np.ndarray)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in raw_labels):
        raise DatasetError(f"{origin}: field 'labels' must be a list of integer class indices, "
                           f"found {type(raw_labels).__name__}")
    labels = np.asarray(raw_labels, dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{origin}: field 'data' must be uint8 of shape (N, 3072), found {data.dtype} {data.shape}")
    if len(labels) != len(data):
        raise DatasetError(f"{origin}: {len(data)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise DatasetError(f"{origin}: label {bad} is out of range 0..9")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _read_batches(path: Path, progress: bool = True, strict: bool = True) -> Dataset:
    members = _read_members(path)
    meta = safe_loads(members[META], f"{path}:{META}")
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}:{META}: expected a dict with label_names, found {type(meta).__name__}")
    names = _get(meta, "label_names", f"{path}:{META}")
    if not isinstance(names, list):
        raise DatasetError(f"{path}:{META}: label_names must be a list of 10 names, found {type(names).__name__}")
    classes = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
    if len(classes) != 10:
        raise DatasetError(f"{path}:{META}: expected 10 label_names, found {len(classes)}")
    xs, ys = [], []
    for name in tqdm(TRAIN_BATCHES, desc="cifar10 batches", disable=not progress, leave=False):
        x, y = _parse_batch(members[name], f"{path}:{name}")
        xs.append(x)
        ys.append(y)
    x_test, y_test = _parse_batch(members[TEST_BATCH], f"{path}:{TEST_BATCH}")
    y_train = np.concatenate(ys)
    if strict:
        for split, y, per in (("train", y_train, TRAIN_PER_CLASS), ("test", y_test, TEST_PER_CLASS)):
            counts = np.bincount(y, minlength=10)
            if not np.all(counts == per):
                raise DatasetError(
                    f"{path}: {split} class counts {counts.tolist()} differ from CIFAR-10's {per} per class "
                    "(load with strict=False to accept it)"
                )
    return Dataset(name="cifar10", x_train=np.concatenate(xs), y_train=y_train, x_test=x_test,
                   y_test=y_test, classes=classes)


def load(data_dir: str | Path | None = None, *, download_if_missing: bool = True,
         strict: bool = True, progress: bool = True) -> Dataset:
    """Load CIFAR-10. Local copies are checked on structure and counts; downloads by MD5."""
    data_dir = Path(data_dir) if data_dir is not None else None
    path, source = find_or_download("cifar10", data_dir, locate, fetch, f"holds neither {ARCHIVE} nor {FOLDER}/",
                                    HOW_TO_GET, download_if_missing, progress)
    ds = _read_batches(path, progress=progress, strict=strict)
    ds.provenance = {
        "source": source, "path": str(path),
        "sha256": file_digest(path) if path.is_file() else None,
        "checks": "restricted unpickler; batch structure; 5,000/1,000 images per class"
                  + ("; official MD5 on download" if source == "download" else ""),
    }
    return ds
