"""Strategy specs: a strategy name with parameters and the label its results are stored under.

On the command line: ``bald:samples=20`` or ``class-balanced:base=margin:mode=rarest``
(parameters follow the name, each ``:key=value``; an import path ``pkg.mod:Class`` may
stand for the name). In a config file: the same string, or a mapping
``{name: bald, samples: 20, label: bald-20}``. The label defaults to the canonical
string, so two settings of one strategy run side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from alkit.errors import StrategyError
from alkit.strategies.base import QueryStrategy, get_strategy, strategy_names

_SCALARS = (bool, int, float, str)


def _value(text: str) -> Any:
    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return v if isinstance(v, _SCALARS) else text


def _format(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@dataclass(frozen=True)
class StrategySpec:
    name: str
    params: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.canonical(with_label=False))
        elif any(ch in self.label for ch in ":,"):
            raise StrategyError(f"strategy '{self.name}': label '{self.label}' may not contain ':' or ','")

    @classmethod
    def parse(cls, text: str) -> StrategySpec:
        """``name[:key=value...]``; a ``label=`` parameter sets the label."""
        if not isinstance(text, str) or not text.strip():
            raise StrategyError(f"strategy {text!r}: expected a name such as margin or bald:samples=20")
        parts = [p.strip() for p in text.strip().split(":")]
        first = next((i for i, p in enumerate(parts) if "=" in p), len(parts))
        name, params, label = ":".join(parts[:first]), {}, ""
        for p in parts[first:]:
            key, sep, value = p.partition("=")
            if not sep or not key:
                raise StrategyError(f"strategy '{text}': '{p}' is not key=value (parameters follow the name, "
                                    "e.g. bald:samples=20)")
            if key == "label":
                label = value
            elif key in params:
                raise StrategyError(f"strategy '{text}': parameter '{key}' is given twice")
            else:
                params[key] = _value(value)
        if not name:
            raise StrategyError(f"strategy '{text}': no strategy name before the parameters")
        if first == len(parts) and ":" in name and parts[0] in strategy_names():
            raise StrategyError(f"strategy '{text}': '{parts[1]}' is not key=value (parameters follow the name, "
                                f"e.g. {parts[0]}:key=value)")
        return cls(name, tuple(sorted(params.items())), label)

    @classmethod
    def from_config(cls, item: Any, where: str = "strategies") -> StrategySpec:
        """From a config file's entry: a spec string or a mapping with ``name`` (and ``label``)."""
        if isinstance(item, str):
            return cls.parse(item)
        if isinstance(item, dict):
            data = dict(item)
            name = data.pop("name", None)
            if not isinstance(name, str) or not name:
                raise StrategyError(f"{where}: a strategy mapping needs 'name', e.g. {{name: bald, samples: 20}}")
            label = data.pop("label", "")
            bad = [k for k, v in data.items() if not isinstance(v, _SCALARS)]
            if bad:
                raise StrategyError(f"{where}: strategy '{name}': parameter(s) {bad} must be a number, "
                                    "true/false or a string")
            return cls(name, tuple(sorted(data.items())), str(label))
        raise StrategyError(f"{where}: {item!r} is not a strategy name or mapping")

    def canonical(self, with_label: bool = True) -> str:
        """The spec as one string, which :meth:`parse` reads back."""
        text = self.name + "".join(f":{k}={_format(v)}" for k, v in self.params)
        if with_label and self.label != self.canonical(with_label=False):
            text += f":label={self.label}"
        return text

    def build(self) -> QueryStrategy:
        """The strategy, its parameters checked."""
        strategy = get_strategy(self.name, **dict(self.params))
        strategy.check()
        return strategy
