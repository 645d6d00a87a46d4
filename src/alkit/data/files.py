"""Where dataset files live locally, and how they are downloaded and checked."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

from platformdirs import user_cache_dir
from tqdm.auto import tqdm

from alkit.errors import DataNotFoundError, DatasetError

CHUNK = 1 << 20
T = TypeVar("T")


def cache_dir() -> Path:
    """The alkit data cache: ``$ALKIT_DATA`` if set, else the user cache dir."""
    env = os.environ.get("ALKIT_DATA")
    return Path(env).expanduser() if env else Path(user_cache_dir("alkit")) / "data"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, md5: str, *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, verify its MD5, and move it into place atomically.

    A partial or corrupt download never lands at ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=30)
            except (urllib.error.URLError, OSError) as exc:
                raise DataNotFoundError(f"could not download {url}: {exc}") from exc
            with response:
                total = int(response.headers.get("Content-Length") or 0) or None
                digest = hashlib.md5()
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}",
                          disable=not progress, leave=False) as bar:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise DatasetError(
                f"{url}: downloaded file has MD5 {digest.hexdigest()}, expected {md5}; "
                "the download is corrupt, run the command again"
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def import_local(source: Path, dest: Path) -> Path:
    """Copy a user-supplied local file into the cache (atomically)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and dest.resolve() == source.resolve():
        return dest
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp_name)
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dest


def find_or_download(name: str, data_dir: Path | None, locate: Callable[[Path | None], T | None],
                     fetch: Callable[..., T], not_in_data_dir: str, how_to_get: str,
                     download_if_missing: bool, progress: bool) -> tuple[T, str]:
    """The local copy (``"local"``) or, failing that, a verified download (``"download"``).

    A given ``data_dir`` is the only place looked at; offline with no copy, one clear error
    says how to get the data.
    """
    found = locate(data_dir)
    if found is not None:
        return found, "local"
    if data_dir is not None:
        raise DataNotFoundError(f"{name}: {data_dir} {not_in_data_dir}")
    if not download_if_missing:
        raise DataNotFoundError(f"{name}: no local copy found; {how_to_get}")
    try:
        return fetch(progress=progress), "download"
    except DataNotFoundError as exc:
        raise DataNotFoundError(f"{name}: no local copy and the download failed ({exc}); {how_to_get}") from exc
