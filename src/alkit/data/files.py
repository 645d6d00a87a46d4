"""Where dataset files live locally, and how they are downloaded and checked."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from platformdirs import user_cache_dir
from tqdm.auto import tqdm

from alkit.errors import DataNotFoundError, DatasetError

CHUNK = 1 << 20


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
