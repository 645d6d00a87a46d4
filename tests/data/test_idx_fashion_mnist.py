import gzip
from pathlib import Path

import numpy as np
import pytest

from alkit import load_dataset
from alkit.data import fashion_mnist
from alkit.data.idx import IMAGES_MAGIC, read_idx, write_idx
from alkit.errors import DataNotFoundError, DatasetError
from tests.conftest import FMNIST_DIR, require_real, write_fmnist


def test_round_trip_gz_and_raw(tmp_path: Path) -> None:
    for compress in (True, False):
        folder = write_fmnist(tmp_path / str(compress), compress=compress)
        ds = load_dataset("fashion-mnist", data_dir=folder, strict=False, progress=False)
        assert ds.x_train.shape == (60, 28, 28, 1) and ds.x_train.dtype == np.uint8
        assert ds.y_test.shape == (20,) and ds.classes[0] == "T-shirt/top"
        assert set(ds.provenance["files"]) == {"train_images", "train_labels", "test_images", "test_labels"}


def test_strict_rejects_non_official_counts(fmnist_dir: Path) -> None:
    with pytest.raises(DatasetError, match="differ from the official 6000 per class"):
        load_dataset("fashion-mnist", data_dir=fmnist_dir, progress=False)


def test_truncated_gzip(fmnist_dir: Path) -> None:
    path = fmnist_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: the gzip stream is truncated"):
        load_dataset("fashion-mnist", data_dir=fmnist_dir, strict=False, progress=False)


def test_truncated_payload(tmp_path: Path) -> None:
    path = tmp_path / "x"
    write_idx(path, np.zeros((3, 4, 4), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DatasetError, match=r"declares \[3, 4, 4\] = 48 bytes of data but the file has 43"):
        read_idx(path, IMAGES_MAGIC)


def test_wrong_magic(fmnist_dir: Path) -> None:
    labels = fmnist_dir / "train-labels-idx1-ubyte.gz"
    images = fmnist_dir / "train-images-idx3-ubyte.gz"
    labels.write_bytes(images.read_bytes())
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz: wrong magic number 0x00000803, expected 0x00000801"):
        load_dataset("fashion-mnist", data_dir=fmnist_dir, strict=False, progress=False)


def test_mismatched_counts(fmnist_dir: Path) -> None:
    write_idx(fmnist_dir / "train-labels-idx1-ubyte.gz", np.zeros(59, np.uint8))
    with pytest.raises(DatasetError, match="has 60 images but .*train-labels-idx1-ubyte.gz has 59 labels"):
        load_dataset("fashion-mnist", data_dir=fmnist_dir, strict=False, progress=False)


def test_label_out_of_range(fmnist_dir: Path) -> None:
    y = np.zeros(20, np.uint8)
    y[3] = 12
    write_idx(fmnist_dir / "t10k-labels-idx1-ubyte.gz", y)
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: label 12 is out of range 0..9"):
        load_dataset("fashion-mnist", data_dir=fmnist_dir, strict=False, progress=False)


def test_data_dir_is_the_only_place_looked(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=f"{tmp_path} does not contain the four IDX files"):
        load_dataset("fashion-mnist", data_dir=tmp_path, progress=False)


def test_search_order_prefers_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ALKIT_DATA", str(cache))
    assert fashion_mnist.search_dirs(None) == [cache / "fashion-mnist", fashion_mnist.DEBIAN_DIR]
    write_fmnist(cache / "fashion-mnist")
    assert fashion_mnist.locate(None)["train_images"].parent == cache / "fashion-mnist"


def test_offline_without_copy_gives_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(fashion_mnist, "BASE_URL", "http://127.0.0.1:9/")  # closed port: a real failed download
    with pytest.raises(DataNotFoundError, match="dataset-fashion-mnist.*--data-dir"):
        load_dataset("fashion-mnist", progress=False)
    assert not list((tmp_path).rglob("*.part"))


def test_download_verifies_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve tiny IDX files over a real local HTTP server; wrong MD5s must be refused and nothing kept."""
    import functools
    import http.server
    import threading

    served = write_fmnist(tmp_path / "served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
        monkeypatch.setattr(fashion_mnist, "BASE_URL", f"http://127.0.0.1:{server.server_port}/")
        with pytest.raises(DatasetError, match="downloaded file has MD5 .*, expected"):
            load_dataset("fashion-mnist", progress=False)
        import hashlib
        real = {k: (stem, hashlib.md5((served / f"{stem}.gz").read_bytes()).hexdigest())
                for k, (stem, _) in fashion_mnist.FILES.items()}
        monkeypatch.setattr(fashion_mnist, "FILES", real)
        ds = load_dataset("fashion-mnist", strict=False, progress=False)
        assert ds.provenance["source"] == "download" and len(ds.y_train) == 60
    finally:
        server.shutdown()


@pytest.mark.slow
def test_real_fashion_mnist() -> None:
    require_real(FMNIST_DIR)
    ds = load_dataset("fashion-mnist", data_dir=FMNIST_DIR, progress=False)
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert gzip.open(FMNIST_DIR / "train-labels-idx1-ubyte.gz").read(4) == b"\x00\x00\x08\x01"


@pytest.mark.slow
def test_real_imbalanced_fashion_mnist() -> None:
    require_real(FMNIST_DIR)
    ds = load_dataset("fashion-mnist-imbalanced", data_dir=FMNIST_DIR, progress=False)
    assert np.bincount(ds.y_train).tolist() == [600] * 5 + [6000] * 5
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.provenance["imbalance"]["kind"] == "step"
