"""The dataset registry behind :func:`alkit.load_dataset` and ``alkit datasets``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from alkit.data import cifar10, fashion_mnist, folder, npz
from alkit.data.dataset import Dataset
from alkit.data.imbalance import apply_imbalance
from alkit.errors import ConfigError, DatasetError


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    loader: Callable[..., Dataset]
    locate: Callable[[Path | None], Any] | None = None
    default_imbalance: dict[str, Any] | None = None
    needs_path: bool = False


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add a dataset to the registry, so the CLI and config files can name it."""
    _REGISTRY[entry.name] = entry
    return entry


for _entry in (
    DatasetEntry("fashion-mnist", "Fashion-MNIST, 28x28 grayscale, 10 classes, 60k/10k",
                 fashion_mnist.load, fashion_mnist.locate),
    DatasetEntry("fashion-mnist-imbalanced",
                 "Fashion-MNIST with step imbalance (classes 0-4 keep 1/10): 3,000 vs 30,000 training images",
                 fashion_mnist.load, fashion_mnist.locate, default_imbalance={"kind": "step", "ratio": 10}),
    DatasetEntry("cifar10", "CIFAR-10, 32x32 RGB, 10 classes, 50k/10k", cifar10.load, cifar10.locate),
    DatasetEntry("folder", "your images: root/<class>/*.png|jpg (path=ROOT)", folder.load, needs_path=True),
    DatasetEntry("npz", "a .npz with x_train, y_train, x_test, y_test (path=FILE)", npz.load, needs_path=True),
):
    register_dataset(_entry)


def dataset_names() -> list[str]:
    return list(_REGISTRY)


def option_names(name: str) -> list[str]:
    """The options a dataset's loader takes (besides its path)."""
    import inspect

    params = inspect.signature(get_entry(name).loader).parameters
    return [p for p, v in params.items() if p not in ("path", "root", "data_dir")
            and v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)]


def get_entry(name: str) -> DatasetEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"dataset '{name}' is unknown; choose one of {', '.join(_REGISTRY)}") from None


def load_dataset(name: str, *, imbalance: dict[str, Any] | str | None = None,
                 path: str | Path | None = None, **options: Any) -> Dataset:
    """Load a registered dataset by name.

    ``imbalance`` applies an imbalance protocol (see :mod:`alkit.data.imbalance`) to any
    dataset; ``fashion-mnist-imbalanced`` applies step imbalance with ratio 10 by default.
    ``folder`` and ``npz`` need ``path``. Other options go to the loader (``data_dir``,
    ``strict``, ``download_if_missing``, ``progress``, ``image_size``, ...).
    """
    entry = get_entry(name)
    if entry.needs_path:
        if path is None:
            raise ConfigError(f"dataset '{name}' needs a path (CLI: --data-dir PATH)")
        ds = entry.loader(path, **options)
    else:
        if path is not None:
            options.setdefault("data_dir", path)
        ds = entry.loader(**options)
    imbalance = imbalance if imbalance is not None else entry.default_imbalance
    if imbalance is not None:
        ds = apply_imbalance(ds, imbalance)
    ds.name = name if not entry.needs_path else ds.name
    return ds


def describe(name: str, data_dir: Path | None = None, load: bool = True) -> dict[str, Any]:
    """Where a dataset was found and, if ``load``, its sizes and class counts; for ``alkit datasets``."""
    entry = get_entry(name)
    info: dict[str, Any] = {"name": name, "description": entry.description}
    if entry.locate is None:
        info["found"] = "user-supplied path"
        return info
    where = entry.locate(data_dir)
    if where is None:
        info["found"] = None
        return info
    info["found"] = str(where["train_images"].parent if isinstance(where, dict) else where)
    if load:
        try:
            ds = load_dataset(name, data_dir=data_dir, download_if_missing=False)
        except DatasetError as exc:
            info["error"] = str(exc)
            return info
        info.update(train=len(ds.y_train), test=len(ds.y_test), shape=ds.image_shape,
                    train_counts=ds.class_counts("train"), test_counts=ds.class_counts("test"))
    return info
