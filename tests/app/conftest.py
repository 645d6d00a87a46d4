"""Fixtures for the labeling app: a folder of real Fashion-MNIST PNGs, and a real server subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import FMNIST_DIR, make_images

CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def write_photos(root: Path, n: int = 200) -> tuple[Path, dict[str, int]]:
    """``n`` images as PNG files; real Fashion-MNIST when it is installed, else synthetic. Returns true labels."""
    root.mkdir(parents=True, exist_ok=True)
    if FMNIST_DIR.exists():
        from alkit import load_dataset
        ds = load_dataset("fashion-mnist", data_dir=FMNIST_DIR, progress=False)
        idx = np.random.default_rng(0).choice(len(ds.y_train), n, replace=False)
        x, y = ds.x_train[idx, :, :, 0], ds.y_train[idx]
    else:
        x, y = make_images(n, (28, 28), 0)
    truth = {}
    for i in range(n):
        name = f"img_{i:04d}.png"
        Image.fromarray(x[i]).save(root / name)
        truth[name] = int(y[i])
    return root, truth


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    return write_photos(tmp_path / "photos")


class Server:
    def __init__(self, root: Path, *extra: str, port: int | None = None) -> None:
        from alkit.app.cli import free_port

        self.root = root
        self.port = port or free_port("127.0.0.1")
        self.args = [sys.executable, "-m", "alkit", "label", str(root), "--classes", ",".join(CLASSES),
                     "--port", str(self.port), "-q", *extra]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self.log = open(self.root.parent / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.root.parent / f'server-{self.port}.log').read_text()}")
            try:
                httpx.get(self.url + "/static/app.js", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start in 60 s")

    def kill(self, sig: int = 9) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a module's tests that only read, or make requests that must be refused: on a folder that
    also holds a symlink out of it (``escape.png``) and a file that is not an image (``notes.txt``)."""
    base = tmp_path_factory.mktemp("shared")
    root, _ = write_photos(base / "photos")
    secret = base / "secret.png"
    secret.write_bytes((root / "img_0001.png").read_bytes())
    (root / "escape.png").symlink_to(secret)
    (root / "notes.txt").write_text("not an image")
    s = Server(root).start()
    yield s
    s.kill()


@pytest.fixture
def server_factory() -> Iterator:
    started: list[Server] = []

    def make(root: Path, *extra: str, port: int | None = None) -> Server:
        s = Server(root, *extra, port=port).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.kill()
