"""Reading image files (PNG, JPEG, WebP) into uint8 arrays."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from alkit.data.limits import limit
from alkit.errors import DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
Image.MAX_IMAGE_PIXELS = None  # alkit checks its own limit, below, before anything is decoded
_UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def check_size(path: Path, im: Image.Image) -> None:
    """Refuse an image whose header declares more pixels than ALKIT_MAX_IMAGE_PIXELS, before decoding it."""
    w, h = im.size
    cap = limit("ALKIT_MAX_IMAGE_PIXELS")
    if w * h > cap:
        raise DatasetError(f"{path}: the header declares {w} x {h} pixels, over the limit of {cap:,}; "
                           "shrink the image, or raise the limit with ALKIT_MAX_IMAGE_PIXELS")


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files under ``folder``, sorted by path so the order is reproducible."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_info(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and PIL mode, read from the header only."""
    try:
        with Image.open(path) as im:
            check_size(path, im)
            return im.size, im.mode
    except _UNREADABLE as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc


def read_image(path: Path, size: tuple[int, int] | None = None, channels: int = 3) -> np.ndarray:
    """Decode one image to H x W x C uint8, converting colour mode and resizing if ``size`` (w, h) is given."""
    try:
        with Image.open(path) as im:
            check_size(path, im)
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and im.size != tuple(size):
                im = im.resize(tuple(size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except _UNREADABLE as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc
    return arr[..., None] if arr.ndim == 2 else arr
