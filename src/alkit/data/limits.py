"""Size limits checked before decoding or reading, so a small malicious file cannot take gigabytes.

Each limit is read from its environment variable when checked (raise it there), else the default.
"""
from __future__ import annotations

import os

from alkit.errors import ConfigError

DEFAULTS = {
    # 40 megapixels: a 7,300 x 5,500 photo; decoded RGB that is 120 MB
    "ALKIT_MAX_IMAGE_PIXELS": 40_000_000,
    # one file inside an archive (a CIFAR-10 batch is 31 MB)
    "ALKIT_MAX_ARCHIVE_MEMBER_BYTES": 256 * 2**20,
}


def limit(name: str) -> int:
    text = os.environ.get(name)
    if text is None:
        return DEFAULTS[name]
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} must be an integer") from None
    if value < 1:
        raise ConfigError(f"environment variable {name}={value} must be >= 1")
    return value
