"""A restricted unpickler for data files that are pickles (e.g. CIFAR-10 batches).

Only plain containers and numpy arrays can be rebuilt; any other global that a pickle
names (os.system, builtins.eval, ...) is refused before it can run.
"""
from __future__ import annotations

import io
import pickle
from typing import Any

from alkit.errors import DatasetError, UnsafePickleError

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
    ("builtins", "bytearray"),
}


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, origin: str) -> None:
        super().__init__(file, encoding="bytes")
        self.origin = origin

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.origin}: refused to load `{module}.{name}`: the file may be tampered with "
                "(a data pickle only needs numpy arrays and plain containers); use an untouched copy"
            )
        return super().find_class(module, name)


def safe_loads(data: bytes, origin: str) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; ``origin`` names it in errors."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), origin).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetError(f"{origin}: not a valid pickle, the file is truncated or corrupt ({type(exc).__name__}: {exc})") from exc
