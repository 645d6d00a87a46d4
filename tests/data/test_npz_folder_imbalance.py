from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alkit import load_dataset
from alkit.data import Imbalance, apply_imbalance
from alkit.errors import ConfigError, DatasetError
from tests.conftest import make_images, write_image_folder


def _npz(path: Path, **override: object) -> Path:
    x, y = make_images(30, (8, 8), 0)
    arrays = dict(x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_loads_and_adds_channel(tmp_path: Path) -> None:
    ds = load_dataset("npz", path=_npz(tmp_path / "a.npz"))
    assert ds.x_train.shape == (30, 8, 8, 1) and ds.classes == [str(i) for i in range(10)]


@pytest.mark.parametrize("override, message", [
    ({"x_train": np.full((30, 8, 8), np.nan)}, "field 'x_train' contains NaN values"),
    ({"x_test": np.zeros((10, 8, 8), np.float32)}, "field 'x_test' has dtype float32, expected uint8"),
    ({"y_train": np.zeros(29, np.int64)}, "'x_train' has 30 images but 'y_train' has 29 labels"),
    ({"y_test": np.full(10, 11), "classes": np.array([str(i) for i in range(10)])}, "field 'y_test' has label 11, out of range 0..9"),
    ({"y_train": np.arange(30) % 9, "classes": np.array([str(i) for i in range(10)])}, r"class\(es\) \['9'\] have no training images"),
    ({"y_test": None}, r"missing field\(s\) \['y_test'\]"),
])
def test_npz_bad_input(tmp_path: Path, override: dict, message: str) -> None:
    path = _npz(tmp_path / "bad.npz", **override)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset("npz", path=path)
    assert str(path) in str(info.value)


def test_npz_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="junk.npz: not an .npz archive; write one with np.savez"):
        load_dataset("npz", path=path)


def test_folder_split_and_unlabeled(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", ["cat", "dog"], per_class=10)
    write_image_folder(root / "_unlabeled", ["batch1"], per_class=4)
    ds = load_dataset("folder", path=root, test_ratio=0.2, progress=False)
    assert ds.classes == ["cat", "dog"] and ds.image_shape == (16, 16, 3)
    assert len(ds.y_train) == 16 and np.bincount(ds.y_test).tolist() == [2, 2]
    assert ds.x_unlabeled is not None and len(ds.x_unlabeled) == 4


def test_folder_grayscale_detected(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "g", ["a", "b"], per_class=3, mode="L")
    assert load_dataset("folder", path=root, test_ratio=0, progress=False).image_shape == (16, 16, 1)


def test_folder_mixed_sizes(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "m", ["a", "b"], per_class=3)
    Image.new("RGB", (20, 16)).save(root / "b" / "zz.png")
    with pytest.raises(DatasetError, match=r"zz.png: image is 20x16 but .* is 16x16; mixed image sizes: resize them all with --image-size WxH"):
        load_dataset("folder", path=root, progress=False)
    ds = load_dataset("folder", path=root, image_size=(8, 8), test_ratio=0, progress=False)
    assert ds.image_shape == (8, 8, 3) and len(ds.y_train) == 7


def test_folder_empty_class(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "e", ["a"], per_class=2)
    (root / "b").mkdir()
    with pytest.raises(DatasetError, match=r"e/b: class 'b' has no images"):
        load_dataset("folder", path=root, progress=False)


def test_folder_corrupt_image(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "c", ["a", "b"], per_class=2)
    (root / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="broken.png: not a readable image"):
        load_dataset("folder", path=root, progress=False)


def test_step_and_exponential_imbalance() -> None:
    x, y = make_images(1000, (4, 4, 1), 0)
    from alkit.data import Dataset
    ds = Dataset("t", x, y, x[:10], y[:10], [str(i) for i in range(10)])
    step = apply_imbalance(ds, "step:10")
    assert np.bincount(step.y_train).tolist() == [10] * 5 + [100] * 5
    expo = apply_imbalance(ds, {"kind": "exponential", "ratio": 100})
    expected = [int(np.floor(100 * 100 ** (-c / 9))) for c in range(10)]
    assert np.bincount(expo.y_train, minlength=10).tolist() == expected
    again = apply_imbalance(ds, "step:10")
    np.testing.assert_array_equal(step.x_train, again.x_train)
    assert step.provenance["imbalance"]["train_counts"]["0"] == 10
    assert len(step.y_test) == 10


@pytest.mark.parametrize("spec, message", [
    ("zipf:3", "imbalance.kind: 'zipf' is unknown"), ("step:0.5", "imbalance.ratio: 0.5 must be >= 1"),
    ({"kind": "step", "rate": 3}, r"unknown field\(s\) \['rate'\]"), ("step:x", "ratio in 'step:x' is not a number"),
])
def test_imbalance_validation(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Imbalance.parse(spec)


def test_unknown_dataset() -> None:
    with pytest.raises(ConfigError, match="dataset 'mnist' is unknown; choose one of fashion-mnist"):
        load_dataset("mnist")
