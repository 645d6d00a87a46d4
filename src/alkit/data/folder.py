"""A user's images in an ImageFolder layout: ``root/<class>/*.png|jpg|jpeg|webp``.

Optional parts: ``root/_unlabeled/`` (images without labels, the pool a person labels),
and a test set, either ``test_dir`` (same layout) or a stratified ``test_ratio`` split.
All images must share one size unless ``image_size`` asks for a resize.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from alkit.data.dataset import Dataset
from alkit.data.images import image_info, list_images, read_image
from alkit.errors import DatasetError

UNLABELED = "_unlabeled"


def _scan(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != UNLABELED and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root}: no class subfolders; expected root/<class>/*.png")
    items = []
    for c, name in enumerate(classes):
        files = list_images(root / name)
        if not files:
            raise DatasetError(f"{root / name}: class '{name}' has no images (png, jpg, jpeg, webp)")
        items += [(f, c) for f in files]
    return classes, items


def _decode(paths: list[Path], size: tuple[int, int] | None, channels: int, progress: bool, desc: str) -> np.ndarray:
    if not paths:
        return np.zeros((0, size[1], size[0], channels) if size else (0, 1, 1, channels), dtype=np.uint8)
    first = read_image(paths[0], size, channels)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first
    for i, p in enumerate(tqdm(paths[1:], desc=desc, disable=not progress, leave=False), start=1):
        img = read_image(p, size, channels)
        if img.shape != first.shape:
            raise DatasetError(
                f"{p}: image is {img.shape[1]}x{img.shape[0]} but {paths[0]} is {first.shape[1]}x{first.shape[0]}; "
                "mixed image sizes: resize them all with --image-size WxH (alkit run), options: {image_size: [W, H]} "
                "in a config file, or image_size=(W, H) in Python"
            )
        out[i] = img
    return out


def _channels(paths: list[Path]) -> int:
    modes = {image_info(p)[1] for p in paths[:200]}
    return 1 if modes <= {"L", "1", "I;16", "I"} else 3


def load(root: str | Path, *, test_dir: str | Path | None = None, test_ratio: float = 0.2,
         image_size: tuple[int, int] | None = None, channels: int | None = None, seed: int = 0,
         progress: bool = True) -> Dataset:
    root = Path(root)
    classes, items = _scan(root)
    paths = [p for p, _ in items]
    labels = np.array([c for _, c in items], dtype=np.int64)
    channels = channels or _channels(paths)
    x = _decode(paths, image_size, channels, progress, "read images")
    size = image_size or (x.shape[2], x.shape[1])
    if test_dir is not None:
        test_classes, test_items = _scan(Path(test_dir))
        if test_classes != classes:
            raise DatasetError(f"{test_dir}: test classes {test_classes} differ from training classes {classes}")
        x_test = _decode([p for p, _ in test_items], size, channels, progress, "read test images")
        y_test = np.array([c for _, c in test_items], dtype=np.int64)
        x_train, y_train, train_files = x, labels, paths
    else:
        if not 0 <= test_ratio < 1:
            raise DatasetError(f"{root}: test_ratio {test_ratio} must be in [0, 1)")
        rng = np.random.default_rng(seed)
        test_mask = np.zeros(len(labels), dtype=bool)
        for c in range(len(classes)):
            idx = np.flatnonzero(labels == c)
            n_test = int(round(len(idx) * test_ratio))
            test_mask[rng.choice(idx, size=n_test, replace=False)] = True
        x_train, y_train, x_test, y_test = x[~test_mask], labels[~test_mask], x[test_mask], labels[test_mask]
        train_files = [p for p, m in zip(paths, test_mask) if not m]
    unlabeled_dir = root / UNLABELED
    unlabeled_files = list_images(unlabeled_dir, recursive=True) if unlabeled_dir.is_dir() else []
    x_unlabeled = _decode(unlabeled_files, size, channels, progress, "read unlabeled") if unlabeled_files else None
    return Dataset(
        name=root.name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=classes,
        x_unlabeled=x_unlabeled,
        provenance={"source": "folder", "root": str(root), "train_files": len(train_files),
                    "unlabeled_files": len(unlabeled_files),
                    "test": str(test_dir) if test_dir else f"stratified split, ratio {test_ratio}, seed {seed}",
                    "image_size": list(size), "channels": channels},
    )
