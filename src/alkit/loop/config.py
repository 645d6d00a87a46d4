"""Experiment configuration: a grid of datasets x strategies x seeds plus loop and training options.

Read from YAML or TOML (``alkit experiment grid.yaml``) or built from CLI flags; every
field is validated up front with an error that names the file, the field and the fix.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alkit.errors import AlkitError, ConfigError
from alkit.storage.run_store import config_diff
from alkit.strategies import StrategySpec, strategy_names
from alkit.strategies.cold_start import BUILTIN_EMBEDDERS, COLD_START, embedder_key, load_embedder
from alkit.training.config import TrainConfig
from alkit.validation import check_field_types, coerce_floats

FULL_DATA = ("none", "first-seed", "all-seeds")
INITIAL_SETS = ("random", "balanced", *COLD_START)
EXECUTORS = ("local", "processes", "ray")
# where and how units run: never part of the results' fingerprint
EXECUTION_FIELDS = ("workers", "executor", "ray_address", "cpus_per_unit", "gpus_per_unit", "unit")
UNITS = ("seed", "strategy")


@dataclass
class LoopConfig:
    """How labels are acquired.

    ``rounds`` query rounds of ``query`` labels follow the initial set (so ``rounds + 1`` evaluations);
    or give ``budget``, the total number of labels, and the rounds follow; or give ``schedule``, query
    sizes that change between rounds, as ``SIZExROUNDS`` items: ``20x9,100x3`` is 9 rounds of 20 labels,
    then 3 of 100 (it replaces ``query``, ``rounds`` and ``budget``). ``initial_set``: ``random``,
    ``balanced`` (equal per class: it reads the labels), or label-free ``typiclust`` / ``probcover`` on
    the ``embedder``'s embeddings (``pca`` by default, ``pca-raw``, or ``module:function``). ``candidates`` scores
    only a uniform random subsample of that many unlabeled samples per round (a speed
    trade-off; None scores the whole pool).
    """

    initial: int = 1000
    query: int = 1000
    rounds: int | None = None
    budget: int | None = None
    candidates: int | None = None
    initial_set: str = "random"
    embedder: str | None = None
    schedule: str | list | None = None

    def _scheduled(self) -> list[int] | None:
        """The schedule's query size per round, or None without a schedule."""
        if self.schedule is None:
            return None
        return [size for size, rounds in parse_schedule(self.schedule) for _ in range(rounds)]

    def n_rounds(self) -> int:
        if self.schedule is not None:
            return len(self._scheduled())
        if self.rounds is not None:
            return self.rounds
        if self.budget is not None:
            return -(-(self.budget - self.initial) // self.query) if self.query else 0
        return 9

    def final_labels(self) -> int:
        if self.schedule is not None:
            return self.initial + sum(self._scheduled())
        if self.budget is not None and self.rounds is None:
            return self.budget
        return self.initial + self.n_rounds() * self.query

    def query_size(self, round_: int, n_labeled: int) -> int:
        """How many labels round ``round_`` queries when ``n_labeled`` are labeled (0 in the last round)."""
        if round_ >= self.n_rounds():
            return 0
        size = self.query if self.schedule is None else self._scheduled()[round_]
        return max(0, min(size, self.final_labels() - n_labeled))

    def query_sizes(self) -> list[int]:
        """The labels each round queries, in order, starting from the initial set."""
        sizes, n = [], self.initial
        for r in range(self.n_rounds()):
            sizes.append(self.query_size(r, n))
            n += sizes[-1]
        return sizes

    def describe_queries(self) -> str:
        """The query rounds in words, for messages: ``9 rounds x 20, 3 rounds x 100``."""
        if self.schedule is not None:
            return ", ".join(f"{rounds} rounds x {size}" for size, rounds in parse_schedule(self.schedule))
        return f"{self.n_rounds()} rounds x {self.query}"

    def validate(self, where: str = "loop") -> LoopConfig:
        check_field_types(self, f"{where}.")
        for name in ("initial", "query", "rounds", "budget", "candidates"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"{where}.{name}: {value!r} must be a non-negative integer")
        if self.initial < 2:
            raise ConfigError(f"{where}.initial: {self.initial} is too small to train on; use at least 2 labels")
        if self.schedule is not None:
            self.schedule = format_schedule(parse_schedule(self.schedule, f"{where}.schedule"))
            if self.rounds is not None or self.budget is not None:
                raise ConfigError(f"{where}: give schedule, or rounds or budget, not both (the schedule sets the rounds)")
            self.query = parse_schedule(self.schedule)[0][0]  # so config.yaml shows no stale per-round size
        if self.rounds is not None and self.budget is not None:
            raise ConfigError(f"{where}: give rounds or budget, not both")
        if self.budget is not None and self.budget < self.initial:
            raise ConfigError(f"{where}.budget: {self.budget} is smaller than initial ({self.initial})")
        if self.n_rounds() > 0 and self.query == 0:
            raise ConfigError(f"{where}.query: 0 labels per round with {self.n_rounds()} rounds; set query > 0")
        largest = max(self.query_sizes(), default=0)
        if self.candidates is not None and self.candidates < largest:
            raise ConfigError(f"{where}.candidates: {self.candidates} is smaller than the largest query ({largest})")
        if self.initial_set not in INITIAL_SETS:
            raise ConfigError(f"{where}.initial_set: '{self.initial_set}' is unknown; choose {', '.join(INITIAL_SETS)}")
        if self.embedder is not None:
            if self.initial_set not in COLD_START:
                raise ConfigError(f"{where}.embedder: only the label-free initial sets ({', '.join(COLD_START)}) "
                                  f"use an embedder, not initial_set '{self.initial_set}'")
            if self.embedder not in BUILTIN_EMBEDDERS and not self.embedder.startswith("python:"):
                load_embedder(self.embedder)
        return self


def parse_schedule(schedule: str | list, where: str = "schedule") -> list[tuple[int, int]]:
    """``"20x9,100x3"`` (or ``["20x9", "100x3"]``) as ``[(20, 9), (100, 3)]``: (labels per round, rounds)."""
    items = schedule.split(",") if isinstance(schedule, str) else schedule
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: {schedule!r} is not a schedule; write SIZExROUNDS items such as 20x9,100x3")
    out = []
    for item in items:
        size, sep, rounds = str(item).strip().lower().partition("x")
        if not (sep and size.isdigit() and rounds.isdigit() and int(size) > 0 and int(rounds) > 0):
            raise ConfigError(f"{where}: '{item}' is not SIZExROUNDS with positive integers; write e.g. "
                              "20x9,100x3 (9 rounds of 20 labels, then 3 of 100)")
        out.append((int(size), int(rounds)))
    return out


def format_schedule(items: list[tuple[int, int]]) -> str:
    return ",".join(f"{size}x{rounds}" for size, rounds in items)


@dataclass
class DatasetSpec:
    name: str
    data_dir: str | None = None
    imbalance: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The name results are stored under: the dataset name, plus the imbalance if one is set."""
        if self.imbalance is None:
            return self.name
        imb = self.imbalance if isinstance(self.imbalance, str) else json.dumps(self.imbalance, sort_keys=True)
        return f"{self.name}[{imb}]"


@dataclass
class ExperimentConfig:
    datasets: list[DatasetSpec]
    strategies: list[Any]
    seeds: list[int] = field(default_factory=lambda: [0])
    loop: LoopConfig = field(default_factory=LoopConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    full_data: str = "first-seed"
    out: str | None = None
    workers: int = 1
    executor: str = "local"
    ray_address: str | None = None
    cpus_per_unit: float = 1.0
    gpus_per_unit: float = 0.0
    unit: str = "seed"
    source: str = field(default="config", repr=False, compare=False)  # where it was read from, for errors

    def validate(self, where: str = "config") -> ExperimentConfig:
        check_field_types(self, f"{where}: ")
        if not isinstance(self.datasets, list) or not self.datasets:
            raise ConfigError(f"{where}: datasets is empty; name at least one (e.g. fashion-mnist)")
        from alkit.data.registry import get_entry, option_names

        for i, d in enumerate(self.datasets):
            if not isinstance(d, DatasetSpec):
                raise ConfigError(f"{where}: datasets[{i}]: {d!r} is not a dataset name or mapping")
            check_field_types(d, f"{where}: datasets[{i}].")
            try:
                get_entry(d.name)
            except ConfigError as exc:
                raise ConfigError(f"{where}: datasets: {exc}") from None
            if not isinstance(d.options, dict):
                raise ConfigError(f"{where}: datasets[{i}].options: expected a mapping of loader options, "
                                  f"got {type(d.options).__name__}")
            allowed = option_names(d.name)
            unknown = sorted(set(d.options) - set(allowed))
            if unknown:
                raise ConfigError(f"{where}: datasets[{i}].options: {unknown} not taken by '{d.name}'; "
                                  f"its options are: {', '.join(allowed) or 'none'}")
        if isinstance(self.strategies, (str, dict)) or not isinstance(self.strategies, (list, tuple)):
            raise ConfigError(f"{where}: strategies must be a list of names or mappings, got {self.strategies!r}")
        if not self.strategies:
            raise ConfigError(f"{where}: strategies is empty; choose from {', '.join(strategy_names())}")
        specs = []
        for i, s in enumerate(self.strategies):
            try:
                spec = s if isinstance(s, StrategySpec) else StrategySpec.from_config(s, f"strategies[{i}]")
                spec.build()
            except AlkitError as exc:
                raise ConfigError(f"{where}: strategies: {exc}") from None
            specs.append(spec)
        labels = [s.label for s in specs]
        twice = sorted({lab for lab in labels if labels.count(lab) > 1})
        if twice:
            raise ConfigError(f"{where}: strategies: {twice} appear twice; give each setting its own label, "
                              "e.g. {name: bald, samples: 10, label: bald-10}")
        self.strategies = [s.canonical() for s in specs]
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds or any(
                not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            raise ConfigError(f"{where}: seeds must be a non-empty list of non-negative integers, got {self.seeds!r}")
        if self.full_data not in FULL_DATA:
            raise ConfigError(f"{where}: full_data '{self.full_data}' is unknown; choose {', '.join(FULL_DATA)}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ConfigError(f"{where}: workers must be an integer >= 1 (processes running seeds in parallel), "
                              f"got {self.workers!r}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"{where}: executor '{self.executor}' is unknown; choose {', '.join(EXECUTORS)}")
        if self.unit not in UNITS:
            raise ConfigError(f"{where}: unit '{self.unit}' is unknown; choose seed (every strategy of a seed in one "
                              "unit, sharing round 0's model) or strategy (one unit per seed and strategy)")
        if self.executor == "ray" and self.workers > 1:
            raise ConfigError(f"{where}: workers={self.workers} is for the processes executor; with executor ray, "
                              "Ray schedules the units (set cpus_per_unit instead)")
        for name in ("cpus_per_unit", "gpus_per_unit"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{where}: {name} must be a number >= 0, got {value!r}")
        if self.cpus_per_unit < 0.01 and self.executor == "ray":
            raise ConfigError(f"{where}: cpus_per_unit must be > 0 (fractions allowed), got {self.cpus_per_unit!r}")
        if self.ray_address is not None and not isinstance(self.ray_address, str):
            raise ConfigError(f"{where}: ray_address must be a string such as auto or HOST:6379")
        self.loop.validate(f"{where}: loop")
        try:
            self.train.validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return self

    def extends(self, old: dict[str, Any]) -> bool:
        """True when this configuration only grows the run ``old`` describes (a result fingerprint).

        Growing means more rounds, a larger budget or a longer schedule (every round before the old last one
        queries as before, and that one no less), more seeds, more strategies, or a
        full-data reference where there was none (or for all seeds); every other setting equal.
        The rounds already run stay valid: each round's randomness depends only on (seed,
        round, purpose), so they are what the larger run would do.
        """
        new = self.result_fingerprint()
        changed = set(config_diff(old, new))
        if not changed or not changed <= {"loop.rounds", "loop.budget", "loop.schedule", "loop.query", "seeds",
                                          "strategies", "full_data"}:
            return False
        if FULL_DATA.index(self.full_data) < FULL_DATA.index(old.get("full_data", "none")):
            return False
        try:
            old_loop = LoopConfig(**old["loop"])
        except TypeError:
            return False
        return (set(old["seeds"]) <= set(self.seeds) and set(old["strategies"]) <= set(self.strategies)
                and _grows(old_loop.query_sizes(), self.loop.query_sizes()))

    def check_pool_size(self, dataset_key: str, n_train: int, where: str = "config") -> None:
        need = self.loop.final_labels()
        if need > n_train:
            raise ConfigError(
                f"{where}: loop: the budget of {need} labels (initial {self.loop.initial} + "
                f"{self.loop.describe_queries()}) exceeds the {n_train} training images of "
                f"{dataset_key}; lower rounds, query, budget or schedule"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def result_fingerprint(self) -> dict[str, Any]:
        """The settings that determine results: a resumed run must match them exactly."""
        d = self.to_dict()
        for where_it_runs in ("out", *EXECUTION_FIELDS):
            d.pop(where_it_runs, None)
        d["train"].pop("eval_batch_size", None)
        if self.train.warm_start:  # the rule resolved, so a folder made under another rule does not resume
            d["train"]["warm_epochs"] = self.train.warm_round_epochs()
        if self.loop.initial_set in COLD_START:  # the default embedder resolved to its version, likewise
            d["loop"]["embedder"] = embedder_key(self.loop.embedder)
        return d


def _grows(old: list[int], new: list[int]) -> bool:
    """True when the query sizes ``new`` continue ``old``: the same rounds, the old last one no smaller, more after."""
    if not old:
        return True
    if len(new) < len(old) or new[:len(old) - 1] != old[:-1]:
        return False
    return new[len(old) - 1] >= old[-1]


def split_strategies(text: str) -> list[str]:
    """A comma-separated strategy list (``random,bald:samples=10``) as spec strings."""
    return [s.strip() for s in text.split(",") if s.strip()]


def strategy_specs(config: ExperimentConfig) -> list[StrategySpec]:
    """The validated config's strategies as specs, in order."""
    return [StrategySpec.parse(s) for s in config.strategies]


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(names)}")
    return cls(**coerce_floats(cls, data))


def config_from_dict(data: dict[str, Any], where: str = "config") -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from plain data (a parsed YAML/TOML file)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of fields")
    data = dict(data)
    datasets = data.pop("datasets", None)
    if isinstance(datasets, (str, dict)):
        datasets = [datasets]
    if not isinstance(datasets, list):
        raise ConfigError(f"{where}: datasets: expected a list of names or mappings")
    specs = []
    for i, d in enumerate(datasets):
        if isinstance(d, str):
            specs.append(DatasetSpec(name=d))
        else:
            specs.append(_build(DatasetSpec, d, f"{where}: datasets[{i}]"))
    strategies = data.pop("strategies", None)
    if isinstance(strategies, (str, dict)):
        strategies = split_strategies(strategies) if isinstance(strategies, str) else [strategies]
    loop = _build(LoopConfig, data.pop("loop", {}) or {}, f"{where}: loop")
    train = _build(TrainConfig, data.pop("train", {}) or {}, f"{where}: train")
    try:
        cfg = _build(ExperimentConfig, {**data, "datasets": specs, "strategies": strategies or [], "loop": loop,
                                        "train": train}, where)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return cfg.validate(where)


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.load(text, Loader=_UniqueKeyLoader)
        else:
            raise ConfigError(f"{path}: unknown config format '{path.suffix}'; use .yaml, .yml or .toml")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    config = config_from_dict(data or {}, where=str(path))
    config.source = str(path)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)
