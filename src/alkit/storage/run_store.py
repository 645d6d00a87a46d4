"""The SQLite run store: one row per (dataset, strategy, seed, round), committed atomically.

A round is written in a single transaction after it finishes, so a run killed at any
moment leaves only whole rounds behind and resumes from the last one.
"""
from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alkit.errors import RunStoreError
from alkit.metrics import METRIC_COLUMNS
from alkit.strategies.cold_start import COLD_START

CSV_COLUMNS = ["dataset", "strategy", "seed", "round", "n_labeled", *METRIC_COLUMNS,
               "train_seconds", "score_seconds", "select_seconds", "train_loss", "precision_used", "n_candidates",
               "scoring"]
JSON_COLUMNS = ["per_class", "confusion", "query_hist"]
# Settings added after run folders already existed, with the value those folders were run with,
# so that a folder made by an older alkit still resumes with its original settings.
LEGACY_DEFAULTS: dict[str, dict[str, Any]] = {"train": {"lr_schedule": "constant", "init": "glorot",
                                                         "bn_recalibration": False, "scoring": "fp32",
                                                         "class_balance": "none", "pseudo_labels": 0},
                                               "loop": {"embedder": None}}

ADDED_COLUMNS = {"scoring": "TEXT"}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS initial_sets (
    dataset TEXT NOT NULL, seed INTEGER NOT NULL, indices BLOB NOT NULL, PRIMARY KEY (dataset, seed));
CREATE TABLE IF NOT EXISTS rounds (
    dataset TEXT NOT NULL, strategy TEXT NOT NULL, seed INTEGER NOT NULL, round INTEGER NOT NULL,
    n_labeled INTEGER NOT NULL, {", ".join(f"{c} REAL" for c in METRIC_COLUMNS)},
    train_seconds REAL, score_seconds REAL, select_seconds REAL, train_loss REAL,
    precision_used TEXT, n_candidates INTEGER, scoring TEXT,
    per_class TEXT, confusion TEXT, query_hist TEXT, queried BLOB NOT NULL,
    PRIMARY KEY (dataset, strategy, seed, round));
CREATE TABLE IF NOT EXISTS full_data (
    dataset TEXT NOT NULL, seed INTEGER NOT NULL, n_labeled INTEGER NOT NULL,
    {", ".join(f"{c} REAL" for c in METRIC_COLUMNS)}, train_seconds REAL, per_class TEXT,
    PRIMARY KEY (dataset, seed));
"""


def _blob(indices: np.ndarray) -> bytes:
    return np.asarray(indices, dtype="<i8").tobytes()


def _unblob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<i8").copy()


class RunStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise RunStoreError(f"{self.path}: is a folder, not a run store; remove it or choose another --out")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers (alkit report) see committed rounds while the driver writes; the timeout waits
        # out another connection's commit instead of failing.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=120)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(rounds)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in columns:  # a store made before the column existed
                    self._db.execute(f"ALTER TABLE rounds ADD COLUMN {name} {kind}")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise RunStoreError(f"{self.path}: not an alkit run store ({exc}); it was left unchanged: move it "
                                "away or choose another --out") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration -------------------------------------------------------------
    def check_config(self, config: dict[str, Any],
                     extends: Callable[[dict[str, Any]], bool] | None = None) -> bool:
        """Store ``config`` on first use; later, refuse to continue a run made with another.

        ``extends(old)`` may accept a changed configuration that only grows the run (more
        rounds, seeds or strategies). Then True is returned and nothing stored yet: the caller
        reopens the rounds that must run again, then calls :meth:`save_config`. A crash in
        between leaves the old configuration, so the next start reopens again.
        """
        text = json.dumps(config, sort_keys=True)
        row = self._db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        if row is None:
            self.save_config(config)
            return False
        if row[0] == text:
            return False
        old = json.loads(row[0])
        for section, defaults in LEGACY_DEFAULTS.items():
            if isinstance(old.get(section), dict):
                old[section] = {**defaults, **old[section]}
        loop = old.get("loop")
        unversioned = isinstance(loop, dict) and loop.get("initial_set") in COLD_START and loop.get("embedder") in (
            None, "pca")
        if unversioned:  # stored before the fingerprint named the default embedder's version: unscaled PCA rows
            loop["embedder"] = "pca-raw"
        diff = config_diff(old, json.loads(text))
        if not diff:
            return False
        if extends is not None and extends(old):
            return True
        hint = ("; its label-free initial sets were chosen on unscaled PCA rows, the default embedder then: resume "
                "it with --embedder pca-raw (loop.embedder: pca-raw)" if unversioned and "loop.embedder" in diff else "")
        raise RunStoreError(
            f"{self.path}: this run folder was made with a different configuration (differs in: "
            f"{', '.join(diff)}){hint}; use a new --out folder to start a new run, the original settings to resume, "
            f"or more rounds, seeds or strategies (nothing else changed) to extend it"
        )

    def save_config(self, config: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('config', ?)", (json.dumps(config, sort_keys=True),))

    def save_classes(self, classes: dict[str, list[str]]) -> None:
        """Class names per dataset, so a report rebuilt later from the folder alone can name them."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('classes', ?)", (json.dumps(classes, sort_keys=True),))

    def classes(self) -> dict[str, list[str]]:
        row = self._db.execute("SELECT value FROM meta WHERE key='classes'").fetchone()
        return json.loads(row[0]) if row else {}

    def config(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        return json.loads(row[0]) if row else None

    # -- initial sets ----------------------------------------------------------------
    def initial_set(self, dataset: str, seed: int) -> np.ndarray | None:
        row = self._db.execute("SELECT indices FROM initial_sets WHERE dataset=? AND seed=?", (dataset, seed)).fetchone()
        return _unblob(row[0]) if row else None

    def save_initial_set(self, dataset: str, seed: int, indices: np.ndarray) -> None:
        self._db.execute("INSERT OR IGNORE INTO initial_sets VALUES (?, ?, ?)", (dataset, seed, _blob(indices)))

    # -- rounds ------------------------------------------------------------------------
    def commit_round(self, row: dict[str, Any], queried: np.ndarray) -> None:
        cols = CSV_COLUMNS
        values = [row.get(c) for c in cols] + [json.dumps(row.get(c)) for c in JSON_COLUMNS] + [_blob(queried)]
        names = cols + JSON_COLUMNS + ["queried"]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(f"INSERT INTO rounds ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)

    def rounds(self, dataset: str | None = None, strategy: str | None = None, seed: int | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM rounds WHERE 1=1", []
        for name, value in (("dataset", dataset), ("strategy", strategy), ("seed", seed)):
            if value is not None:
                sql += f" AND {name}=?"
                args.append(value)
        cur = self._db.execute(sql + " ORDER BY dataset, strategy, seed, round", args)
        names = [d[0] for d in cur.description]
        out = []
        for values in cur.fetchall():
            row = dict(zip(names, values))
            for c in JSON_COLUMNS:
                row[c] = json.loads(row[c]) if row[c] is not None else None
            row["queried"] = _unblob(row["queried"])
            out.append(row)
        return out

    def has_round(self, dataset: str, strategy: str, seed: int, round_: int) -> bool:
        return self._db.execute("SELECT 1 FROM rounds WHERE dataset=? AND strategy=? AND seed=? AND round=?",
                                (dataset, strategy, seed, round_)).fetchone() is not None

    def has_full_data(self, dataset: str, seed: int) -> bool:
        return self._db.execute("SELECT 1 FROM full_data WHERE dataset=? AND seed=?", (dataset, seed)).fetchone() \
            is not None

    def count(self) -> int:
        """Committed rounds plus full-data references: the progress of a run, cheaply."""
        return sum(self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("rounds", "full_data"))

    def drop_rounds(self, dataset: str, strategy: str, seed: int, from_round: int) -> int:
        """Delete rounds ``from_round`` onwards of one (dataset, strategy, seed) so they are run again."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute("DELETE FROM rounds WHERE dataset=? AND strategy=? AND seed=? AND round>=?",
                                   (dataset, strategy, seed, from_round))
        return cur.rowcount

    # -- full-data reference ---------------------------------------------------------------
    def save_full_data(self, row: dict[str, Any]) -> None:
        cols = ["dataset", "seed", "n_labeled", *METRIC_COLUMNS, "train_seconds"]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                f"INSERT OR REPLACE INTO full_data ({', '.join(cols)}, per_class) VALUES ({', '.join('?' * (len(cols) + 1))})",
                [row.get(c) for c in cols] + [json.dumps(row.get("per_class"))])

    def full_data(self, dataset: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM full_data" + (" WHERE dataset=?" if dataset else "") + " ORDER BY dataset, seed"
        cur = self._db.execute(sql, (dataset,) if dataset else ())
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, v)) for v in cur.fetchall()]
        for r in rows:
            r["per_class"] = json.loads(r["per_class"]) if r["per_class"] else None
        return rows

    # -- exports -------------------------------------------------------------------------------
    def export_csv(self, path: Path) -> Path:
        """Write ``rounds.csv``, the tidy one-row-per-round table."""
        rows = self.rounds()
        tmp = Path(path).with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in r.items()})
        tmp.replace(path)
        return Path(path)

    def export_queries(self, path: Path, labels: dict[str, np.ndarray] | None = None) -> Path:
        """Write ``queries.csv``: one line per queried sample (dataset index and its label)."""
        tmp = Path(path).with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["dataset", "strategy", "seed", "round", "rank", "index", "label"])
            for r in self.rounds():
                y = labels.get(r["dataset"]) if labels else None
                for rank, idx in enumerate(r["queried"].tolist()):
                    w.writerow([r["dataset"], r["strategy"], r["seed"], r["round"], rank, idx,
                                int(y[idx]) if y is not None else ""])
        tmp.replace(path)
        return Path(path)


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two configurations, e.g. ``train.epochs``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out
