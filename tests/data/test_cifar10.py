import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from alkit import load_dataset
from alkit.data import cifar10
from alkit.data.safe_pickle import safe_loads
from alkit.errors import DataNotFoundError, DatasetError, UnsafePickleError
from tests.conftest import CIFAR_ARCHIVE, CIFAR_NAMES, cifar_batch, require_real, write_cifar


class _RunsCode:
    def __reduce__(self):
        return (print, ("pwned",))


def test_archive_and_folder_load_identically(tmp_path: Path, cifar_archive: Path) -> None:
    a = load_dataset("cifar10", data_dir=cifar_archive, strict=False, progress=False)
    folder = write_cifar(tmp_path / "f", as_folder=True)
    b = load_dataset("cifar10", data_dir=folder, strict=False, progress=False)
    assert a.x_train.shape == (100, 32, 32, 3) and a.classes == CIFAR_NAMES
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)


def test_channel_major_layout(cifar_archive: Path) -> None:
    ds = load_dataset("cifar10", data_dir=cifar_archive, strict=False, progress=False)
    raw = cifar_batch(20, 1)[b"data"][0]
    np.testing.assert_array_equal(ds.x_train[0, :, :, 0].ravel(), raw[:1024])
    np.testing.assert_array_equal(ds.x_train[0, :, :, 2].ravel(), raw[2048:])


def test_tampered_pickle_is_refused_and_never_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    evil = pickle.dumps({b"data": _RunsCode(), b"labels": []}, protocol=2)
    path = write_cifar(tmp_path / "evil.tar.gz", members={"data_batch_3": evil})
    with pytest.raises(UnsafePickleError, match=r"evil.tar.gz:data_batch_3: refused to load `(__builtin__|builtins).print`"):
        load_dataset("cifar10", data_dir=path, strict=False, progress=False)
    assert "pwned" not in capsys.readouterr().out


def test_os_system_payload_refused() -> None:
    payload = b"cos\nsystem\n(S'echo hacked'\ntR."
    with pytest.raises(UnsafePickleError, match="refused to load `os.system`"):
        safe_loads(payload, "x")


def test_truncated_archive(tmp_path: Path, cifar_archive: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(cifar_archive.read_bytes()[:500])
    with pytest.raises(DatasetError, match="bad.tar.gz: not a readable CIFAR-10 archive"):
        load_dataset("cifar10", data_dir=bad, strict=False, progress=False)


def test_missing_member(tmp_path: Path) -> None:
    path = tmp_path / "partial.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = pickle.dumps(cifar_batch(5, 0), protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetError, match="archive lacks cifar-10-batches-py/data_batch_2"):
        load_dataset("cifar10", data_dir=path, strict=False, progress=False)


def test_mismatched_labels(tmp_path: Path) -> None:
    batch = cifar_batch(10, 0)
    batch[b"labels"] = batch[b"labels"][:7]
    path = write_cifar(tmp_path / "m.tar.gz", members={"test_batch": pickle.dumps(batch, protocol=2)})
    with pytest.raises(DatasetError, match="m.tar.gz:test_batch: 10 images but 7 labels"):
        load_dataset("cifar10", data_dir=path, strict=False, progress=False)


def test_label_out_of_range(tmp_path: Path) -> None:
    batch = cifar_batch(10, 0)
    batch[b"labels"][0] = 10
    path = write_cifar(tmp_path / "r.tar.gz", members={"data_batch_1": pickle.dumps(batch, protocol=2)})
    with pytest.raises(DatasetError, match="data_batch_1: label 10 is out of range 0..9"):
        load_dataset("cifar10", data_dir=path, strict=False, progress=False)


def test_strict_counts(cifar_archive: Path) -> None:
    with pytest.raises(DatasetError, match="differ from CIFAR-10's 5000 per class"):
        load_dataset("cifar10", data_dir=cifar_archive, progress=False)


def test_not_found_message(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="neither cifar-10-python.tar.gz nor cifar-10-batches-py"):
        load_dataset("cifar10", data_dir=tmp_path, progress=False)


def test_fetch_imports_local_copy_into_cache(cifar_archive: Path) -> None:
    with pytest.raises(DatasetError):  # validated before it is copied: this tiny archive fails strict counts
        cifar10.fetch(cifar_archive, progress=False)
    assert cifar10.locate(None) is None


def test_imbalance_applies_to_cifar(cifar_archive: Path) -> None:
    ds = load_dataset("cifar10", data_dir=cifar_archive, strict=False, progress=False,
                      imbalance={"kind": "step", "ratio": 2})
    full = np.bincount(load_dataset("cifar10", data_dir=cifar_archive, strict=False, progress=False).y_train, minlength=10)
    assert np.bincount(ds.y_train, minlength=10).tolist() == [c // 2 for c in full[:5]] + full[5:].tolist()


@pytest.mark.slow
def test_real_cifar10() -> None:
    require_real(CIFAR_ARCHIVE)
    ds = load_dataset("cifar10", data_dir=CIFAR_ARCHIVE, progress=False)
    assert ds.x_train.shape == (50000, 32, 32, 3) and ds.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(ds.y_train).tolist() == [5000] * 10 and np.bincount(ds.y_test).tolist() == [1000] * 10
    mean, std = ds.channel_stats()
    np.testing.assert_allclose(mean, [0.49140, 0.48216, 0.44653], atol=2e-4)
    np.testing.assert_allclose(std, [0.24703, 0.24349, 0.26159], atol=2e-4)
    cifar10.fetch(CIFAR_ARCHIVE, progress=False)
    assert cifar10.locate(None).name == "cifar-10-python.tar.gz"
