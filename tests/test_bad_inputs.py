"""Bad input, built in the real formats: one line naming the file or field, exit 2, and nothing changed.

Each case writes its inputs under a fresh folder, runs the CLI, and checks the exit code, that
stderr is a single ``alkit: error:`` line containing the expected words, and that every file in
the folder is byte-identical afterwards (and none was added).
"""
from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from alkit.cli import main
from tests.conftest import (CIFAR_ARCHIVE, cifar_batch, make_images, require_real, write_cifar, write_fmnist,
                            write_image_folder)

Case = Callable[[Path], tuple[list[str], str]]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _npz(folder: Path, **override: object) -> Path:
    x, y = make_images(400, (16, 16, 1), 0)
    xt, yt = make_images(100, (16, 16, 1), 1)
    arrays = dict(x_train=x, y_train=y, x_test=xt, y_test=yt, classes=np.array([f"c{i}" for i in range(10)]))
    arrays.update(override)
    path = folder / "data.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


RUN = ["run", "--initial", "40", "--query", "20", "--rounds", "1", "--epochs", "1", "--min-steps", "0", "--full-data", "none", "-q"]


def _run_npz(folder: Path, path: Path, *extra: str) -> list[str]:
    return [*RUN, "--dataset", "npz", "--data-dir", str(path), "--out", str(folder / "out"), *extra]


def _config(folder: Path, text: str, name: str = "grid.yaml") -> list[str]:
    npz = _npz(folder)
    path = folder / name
    path.write_text(text.replace("NPZ", str(npz)))
    return ["experiment", str(path), "--out", str(folder / "out"), "-q"]


BASE = ("datasets: [{name: npz, data_dir: NPZ}]\nstrategies: [random]\nloop: {initial: 40, query: 20, rounds: 1}\n"
        "full_data: none\n")


def _config_case(text: str, message: str) -> Case:
    return lambda f: (_config(f, text), message)


CONFIG_CASES: dict[str, Case] = {
    "epochs-abc": _config_case(BASE + "train: {epochs: abc}\n", "train.epochs: 'abc' is not an integer"),
    "lr-fast": _config_case(BASE + "train: {lr: fast}\n", "train.lr: 'fast' is not a number"),
    "batch-size-float": _config_case(BASE + "train: {batch_size: 1.5}\n", "train.batch_size: 1.5 is not an integer"),
    "augment-string": _config_case(BASE + "train: {augment: maybe}\n", "train.augment: 'maybe' is not true or false"),
    "device-number": _config_case(BASE + "train: {device: 5}\n", "train.device: 5 is not a string"),
    "initial-float": _config_case(BASE.replace("initial: 40", "initial: 40.5"), "loop.initial: 40.5 is not an integer"),
    "rounds-word": _config_case(BASE.replace("rounds: 1", "rounds: three"), "loop.rounds: 'three' is not an integer"),
    "seeds-string": _config_case(BASE + "seeds: '0,1'\n", "seeds must be a non-empty list"),
    "seeds-bool": _config_case(BASE + "seeds: [true]\n", "seeds must be a non-empty list"),
    "full-data-number": _config_case(BASE.replace("full_data: none", "full_data: 3"), "full_data: 3 is not a string"),
    "workers-bool": _config_case(BASE + "workers: true\n", "workers: True is not an integer"),
    "options-list": _config_case(BASE.replace("data_dir: NPZ}", "data_dir: NPZ, options: [1, 2]}"),
                                 "datasets[0].options: expected a mapping"),
    "options-unknown": _config_case(BASE.replace("data_dir: NPZ}", "data_dir: NPZ, options: {colour: red}}"),
                                    "['colour'] not taken by 'npz'"),
    "dataset-number": _config_case(BASE.replace("[{name: npz, data_dir: NPZ}]", "[7]"),
                                   "datasets[0]: expected a mapping, got int"),
    "duplicate-key": _config_case(BASE + "train: {epochs: 2}\ntrain: {epochs: 3}\n", "key 'train' appears twice"),
    "duplicate-nested-key": _config_case(BASE.replace("rounds: 1}", "rounds: 1, query: 30}"),
                                         "key 'query' appears twice"),
    "pool-too-small": _config_case(BASE.replace("rounds: 1", "rounds: 100"), "grid.yaml: loop: the budget of"),
    "strategies-number": _config_case(BASE.replace("strategies: [random]", "strategies: 5"),
                                      "strategies must be a list"),
    "strategy-mapping-without-name": _config_case(BASE.replace("[random]", "[{samples: 3}]"), "needs 'name'"),
    "strategy-bad-param": _config_case(BASE.replace("[random]", "[{name: bald, samples: abc}]"),
                                       "samples='abc': MC-dropout strategies need an integer"),
    "strategy-unknown-param": _config_case(BASE.replace("[random]", "[{name: coreset, k: 3}]"),
                                           "its parameters are: chunk"),
    "executor-unknown": _config_case(BASE + "executor: spark\n", "executor 'spark' is unknown"),
    "cpus-negative": _config_case(BASE + "executor: ray\ncpus_per_unit: -1\n", "cpus_per_unit must be a number >= 0"),
    "python-tag": _config_case(BASE + "train: !!python/object/apply:os.system [echo hacked]\n", "not valid YAML"),
    "top-level-list": _config_case("- a\n- b\n", "the top level must be a mapping"),
    "toml-wrong-type": lambda f: (_config(f, 'datasets = [{name = "npz", data_dir = "NPZ"}]\nstrategies = ["random"]\n'
                                          "[train]\nepochs = \"ten\"\n", "grid.toml"),
                                  "train.epochs: 'ten' is not an integer"),
}


def _idx(path: Path, magic: int, dims: list[int], body: bytes = b"") -> None:
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + body)


def _fmnist_with(folder: Path, name: str, write: Callable[[Path], None]) -> list[str]:
    data = write_fmnist(folder / "fm")
    write(data / name)
    return [*RUN, "--dataset", "fashion-mnist", "--data-dir", str(data), "--out", str(folder / "out")]


IDX_CASES: dict[str, Case] = {
    "dims-overflow": lambda f: (_fmnist_with(f, "train-images-idx3-ubyte.gz",
                                             lambda p: _idx(p, 0x803, [2**31, 2**31, 4], b"\0" * 64)),
                                "train-images-idx3-ubyte.gz: header declares [2147483648, 2147483648, 4]"),
    "test-shape-differs": lambda f: (_fmnist_with(f, "t10k-images-idx3-ubyte.gz",
                                                  lambda p: _idx(p, 0x803, [20, 14, 14], bytes(20 * 14 * 14))),
                                     "test images are 14x14 but"),
    "wrong-magic": lambda f: (_fmnist_with(f, "train-labels-idx1-ubyte.gz", lambda p: _idx(p, 0x999, [0])),
                              "wrong magic number 0x00000999"),
    "truncated-gzip": lambda f: (_fmnist_with(f, "train-images-idx3-ubyte.gz",
                                              lambda p: p.write_bytes(p.read_bytes()[:200])),
                                 "the gzip stream is truncated or corrupt"),
    "label-out-of-range": lambda f: (_fmnist_with(f, "t10k-labels-idx1-ubyte.gz",
                                                  lambda p: _idx(p, 0x801, [20], bytes([12] * 20))),
                                     "label 12 is out of range 0..9"),
}


def _cifar_with(folder: Path, members: dict[str, bytes] | None = None, extra: dict[str, bytes] | None = None) -> list[str]:
    path = folder / "cifar-10-python.tar.gz"
    write_cifar(path, members=members)
    if extra:
        with tarfile.open(path, "r:gz") as tar:
            items = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        with tarfile.open(path, "w:gz") as tar:
            for m, data in items:
                tar.addfile(m, io.BytesIO(data))
            for name, data in extra.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return [*RUN, "--dataset", "cifar10", "--data-dir", str(path), "--out", str(folder / "out")]


def _batch(**change: object) -> bytes:
    batch = cifar_batch(20, 9)
    batch.update({k.encode(): v for k, v in change.items()})
    return pickle.dumps(batch, protocol=2)


class _Evil:
    def __reduce__(self) -> tuple:
        import os

        return os.system, ("echo hacked",)


CIFAR_CASES: dict[str, Case] = {
    "labels-none": lambda f: (_cifar_with(f, {"test_batch": _batch(labels=None)}),
                              "test_batch: field 'labels' must be a list of integer class indices, found NoneType"),
    "labels-strings": lambda f: (_cifar_with(f, {"test_batch": _batch(labels=["cat"] * 20)}),
                                 "field 'labels' must be a list of integer class indices"),
    "label-negative": lambda f: (_cifar_with(f, {"test_batch": _batch(labels=[-1] + [0] * 19)}),
                                 "label -1 is out of range 0..9"),
    "meta-not-dict": lambda f: (_cifar_with(f, {"batches.meta": pickle.dumps([1, 2, 3])}),
                                "batches.meta: expected a dict with label_names, found list"),
    "member-escapes": lambda f: (_cifar_with(f, extra={"../../x": b"boo"}),
                                 "member '../../x' points outside the archive"),
    "member-absolute": lambda f: (_cifar_with(f, extra={"/etc/x": b"boo"}), "member '/etc/x' points outside"),
    "unsafe-pickle": lambda f: (_cifar_with(f, {"test_batch": pickle.dumps(_Evil())}), "posix.system"),
    "data-wrong-shape": lambda f: (_cifar_with(f, {"test_batch": _batch(data=np.zeros((20, 5), np.uint8))}),
                                   "field 'data' must be uint8 of shape (N, 3072)"),
}


def _npz_case(message: str, **override: object) -> Case:
    return lambda f: (_run_npz(f, _npz(f, **override)), message)


def _bare_npy(folder: Path) -> list[str]:
    path = folder / "data.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(3))
    return _run_npz(folder, path)


def _zip_of(folder: Path, members: dict[str, bytes]) -> list[str]:
    path = folder / "data.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return _run_npz(folder, path)


def _text_npz(folder: Path) -> list[str]:
    (folder / "data.npz").write_text("x_train,y_train\n1,2\n")
    return _run_npz(folder, folder / "data.npz")


NPZ_CASES: dict[str, Case] = {
    "bare-npy": lambda f: (_bare_npy(f), "a single array saved with np.save"),
    "plain-text": lambda f: (_text_npz(f), "data.npz: not an .npz archive; write one with np.savez"),
    "junk-members-only": lambda f: (_zip_of(f, {"junk.txt": b"hello", "x.bin": b"\x00" * 10}), "missing field(s)"),
    "junk-member-beside-fields": lambda f: (_zip_of(f, {"x_train.npy": b"not an array", "y_train.npy": b"",
                                                        "x_test.npy": b"", "y_test.npy": b""}),
                                            "are not NumPy arrays; write the file with np.savez"),
    "empty-x-test": _npz_case("field 'x_test' has no images", x_test=np.zeros((0, 16, 16, 1), np.uint8),
                              y_test=np.zeros(0, np.int64)),
    "too-small-for-cnn": _npz_case("images are 8x8, too small for the reference CNN",
                                   x_train=make_images(400, (8, 8, 1), 0)[0], x_test=make_images(100, (8, 8, 1), 1)[0]),
    "object-array": _npz_case("holds Python objects", classes=np.array([{"a": 1}] * 10, dtype=object)),
    "float-images": _npz_case("field 'x_train' has dtype float64, expected uint8",
                              x_train=make_images(400, (16, 16, 1), 0)[0] / 255.0),
    "label-count-mismatch": _npz_case("'x_train' has 400 images but 'y_train' has 3 labels", y_train=np.arange(3)),
    "label-out-of-range": _npz_case("field 'y_test' has label -4, out of range", y_test=np.full(100, -4)),
}


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A real, small PNG whose IHDR (with a valid CRC) claims ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def _folder_with(folder: Path, break_it: Callable[[Path], None], *extra: str) -> list[str]:
    root = write_image_folder(folder / "imgs", ["a", "b"], 12)
    break_it(root)
    return [*RUN, "--dataset", "folder", "--data-dir", str(root), "--out", str(folder / "out"), *extra]


FOLDER_CASES: dict[str, Case] = {
    "decompression-bomb-header": lambda f: (_folder_with(f, lambda r: _png_claiming(r / "a" / "000.png", 100_000,
                                                                                     100_000)),
                                            "000.png: the header declares 100000 x 100000 pixels, over the limit"),
    "mixed-sizes": lambda f: (_folder_with(f, lambda r: Image.new("RGB", (20, 20)).save(r / "b" / "005.png")),
                              "mixed image sizes: resize them all with --image-size WxH (alkit run)"),
    "not-an-image": lambda f: (_folder_with(f, lambda r: (r / "a" / "003.png").write_text("hello")),
                               "003.png: not a readable image"),
    "image-size-for-npz": lambda f: (_run_npz(f, _npz(f), "--image-size", "32x32"),
                                     "['image_size'] not taken by 'npz'"),
}


def _user_folder(folder: Path) -> list[str]:
    out = folder / "mine"
    out.mkdir()
    for name in ("config.yaml", "rounds.csv", "report.html"):
        (out / name).write_text(f"my own {name}\n")
    return [*RUN, "--dataset", "npz", "--data-dir", str(_npz(folder)), "--out", str(out)]


def _out_file(folder: Path) -> list[str]:
    (folder / "notes.txt").write_text("keep me")
    return [*RUN, "--dataset", "npz", "--data-dir", str(_npz(folder)), "--out", str(folder / "notes.txt")]


def _fake_store(folder: Path, command: str) -> list[str]:
    run = folder / "run"
    run.mkdir()
    (run / "runs.sqlite").write_text("this is not a database, it is my shopping list\n" * 20)
    if command == "report":
        return ["report", str(run)]
    return [*RUN, "--dataset", "npz", "--data-dir", str(_npz(folder)), "--out", str(run)]


RUN_FOLDER_CASES: dict[str, Case] = {
    "out-is-user-folder": lambda f: (_user_folder(f), "holds files but no runs.sqlite, so it is not an alkit run"),
    "out-is-file": lambda f: (_out_file(f), "notes.txt: is a file, not a run folder"),
    "store-not-a-database-run": lambda f: (_fake_store(f, "run"), "runs.sqlite: not an alkit run store"),
    "store-not-a-database-report": lambda f: (_fake_store(f, "report"), "runs.sqlite: not an alkit run store"),
    "report-without-store": lambda f: (["report", str(f)], "no runs.sqlite here"),
    "strategy-param-type": lambda f: (_run_npz(f, _npz(f)) + ["--strategies", "bald:samples=abc"],
                                      "samples='abc'"),
    "strategy-param-syntax": lambda f: (_run_npz(f, _npz(f)) + ["--strategies", "bald:x"], "'x' is not key=value"),
    "ray-with-workers": lambda f: (_run_npz(f, _npz(f)) + ["--executor", "ray", "--workers", "2"],
                                   "workers=2 is for the processes executor"),
}


def _label(folder: Path, *args: str, project: str | None = None, classes: str | None = "a,b") -> list[str]:
    root = write_image_folder(folder / "imgs", ["x"], 6)
    argv = ["label", str(root), *args]
    if classes:
        argv += ["--classes", classes]
    if project is not None:
        (folder / "project.toml").write_text(project)
        argv += ["--project", str(folder / "project.toml")]
    return argv


def _label_db(folder: Path, kind: str) -> list[str]:
    argv = _label(folder)
    db = folder / "db"
    if kind == "text":
        db.write_text("not sqlite\n" * 10)
    else:
        db.mkdir()
        (db / "inside.txt").write_text("x")
    return argv + ["--db", str(db)]


def _export_to_file(folder: Path) -> list[str]:
    from alkit.app.project import LabelProject

    root = write_image_folder(folder / "imgs", ["x"], 6)
    LabelProject(root, ["a", "b"]).close()
    (folder / "export.txt").write_text("keep")
    return ["label", "export", str(root), "--out", str(folder / "export.txt")]


LABEL_CASES: dict[str, Case] = {
    "port-string-in-toml": lambda f: (_label(f, project='port = "abc"\n'), "project.toml: port = 'abc' must be an"),
    "port-out-of-range": lambda f: (_label(f, "--port", "70000"), "port = 70000 must be a TCP port"),
    "lease-negative": lambda f: (_label(f, "--lease-seconds", "-5"), "lease_seconds = -5.0 must be a number >= 1"),
    "retrain-every-zero": lambda f: (_label(f, "--retrain-every", "0"), "retrain_every = 0 must be an integer >= 1"),
    "pseudo-labels-negative-in-toml": lambda f: (_label(f, project="pseudo_labels = -1\n"),
                                                 "project.toml: pseudo_labels = -1 must be an integer >= 0"),
    "image-size-tiny": lambda f: (_label(f, "--image-size", "5x5"), "--image-size: 5x5 must be between 14x14"),
    "strategy-unknown": lambda f: (_label(f, "--strategy", "bogus"), "strategy 'bogus' is unknown"),
    "class-balance-unknown-in-toml": lambda f: (_label(f, project='class_balance = "focal"\n'),
                                                "project.toml: class_balance = 'focal' is unknown"),
    "db-is-text": lambda f: (_label_db(f, "text"), "db: not a labeling project database"),
    "db-is-folder": lambda f: (_label_db(f, "dir"), "db: is a folder, not a project database"),
    "one-class": lambda f: (_label(f, classes="a"), "at least two classes are needed"),
    "new-project-without-classes": lambda f: (_label(f, classes=None), "a new project needs --classes"),
    "export-without-project": lambda f: (["label", "export", str(write_image_folder(f / "imgs", ["x"], 3))],
                                         "no labeling project here"),
    "export-to-a-file": lambda f: (_export_to_file(f), "export.txt: is a file; export writes a folder"),
    "toml-unknown-field": lambda f: (_label(f, project="colour = 1\n"), "unknown field(s) ['colour']"),
    "toml-classes-number": lambda f: (_label(f, project="classes = 5\n", classes=None), "classes = 5 must be a list"),
}

ALL_CASES = {f"{group}/{name}": case for group, cases in (
    ("config", CONFIG_CASES), ("idx", IDX_CASES), ("cifar10", CIFAR_CASES), ("npz", NPZ_CASES),
    ("folder", FOLDER_CASES), ("run-folder", RUN_FOLDER_CASES), ("label", LABEL_CASES)) for name, case in cases.items()}


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(name: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    work = tmp_path / "work"
    work.mkdir()
    argv, message = ALL_CASES[name](work)
    before = _snapshot(work)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("alkit: error: "), err
    assert message in lines[0], lines[0]
    assert _snapshot(work) == before, "a refused command changed or added files"


def test_there_are_at_least_sixty_cases() -> None:
    assert len(ALL_CASES) >= 60


def test_limits_can_be_raised_and_lowered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    argv = _cifar_with(tmp_path)
    monkeypatch.setenv("ALKIT_MAX_ARCHIVE_MEMBER_BYTES", "1000")
    assert main(argv) == 2
    assert "over the limit of 1,000; raise it with ALKIT_MAX_ARCHIVE_MEMBER_BYTES" in capsys.readouterr().err
    root = write_image_folder(tmp_path / "imgs", ["a", "b"], 4)
    monkeypatch.setenv("ALKIT_MAX_IMAGE_PIXELS", "100")
    assert main([*RUN, "--dataset", "folder", "--data-dir", str(root), "--out", str(tmp_path / "o")]) == 2
    assert "16 x 16 pixels, over the limit of 100" in capsys.readouterr().err
    monkeypatch.setenv("ALKIT_MAX_IMAGE_PIXELS", "lots")
    assert main([*RUN, "--dataset", "folder", "--data-dir", str(root), "--out", str(tmp_path / "o")]) == 2
    assert "ALKIT_MAX_IMAGE_PIXELS='lots' must be an integer" in capsys.readouterr().err


@pytest.mark.slow
def test_fetch_cifar10_from_an_extracted_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with tarfile.open(require_real(CIFAR_ARCHIVE)) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    folder = tmp_path / "src" / "cifar-10-batches-py"
    assert main(["fetch", "cifar10", "--source", str(folder), "-q"]) == 0
    assert "cifar-10-batches-py" in capsys.readouterr().out
    from alkit.data import cifar10

    assert cifar10.locate(None).name == "cifar-10-batches-py"
