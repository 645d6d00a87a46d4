"""Type checks of configuration dataclasses, so a wrong type fails up front with the field's name.

A field annotated ``int``, ``float``, ``str`` or ``bool`` (optionally ``| None``) must hold that type:
``1.5`` is no ``int``, ``True`` is no number, ``"fast"`` is no ``float``; an int is a valid float.
Fields with other annotations are left to the dataclass's own ``validate``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from alkit.errors import ConfigError

_SIMPLE = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _kinds(f: dataclasses.Field) -> list[str]:
    """The names in a field's annotation string: ``"int | None"`` -> ``["int", "None"]``."""
    return [k.strip() for k in str(f.type).split("|")]


def _accepts(kind: str, value: Any) -> bool:
    if kind == "None":
        return value is None
    if kind != "bool" and isinstance(value, bool):
        return False
    return isinstance(value, _SIMPLE[kind])


def check_field_types(obj: Any, prefix: str) -> None:
    """Raise :class:`ConfigError` naming ``prefix + field`` for the first field whose value has the wrong type."""
    for f in dataclasses.fields(obj):
        kinds = _kinds(f)
        if not all(k in _SIMPLE or k == "None" for k in kinds):
            continue
        value = getattr(obj, f.name)
        if not any(_accepts(k, value) for k in kinds):
            wanted = " or ".join(_NAMES.get(k, "null") for k in kinds)
            raise ConfigError(f"{prefix}{f.name}: {value!r} is not {wanted}")


def coerce_floats(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with numeric strings in ``float`` fields made floats: YAML 1.1 reads ``1e-3`` as a string."""
    out = dict(data)
    for f in dataclasses.fields(cls):
        value = out.get(f.name)
        if "float" in _kinds(f) and isinstance(value, str):
            try:
                out[f.name] = float(value)
            except ValueError:
                pass
    return out
