"""The driver's side of a run folder: what a unit resumes from, and committing the records units yield.

Only the driver writes: the run store (SQLite) and the warm-start checkpoints. A record that is
already stored (a retried unit yields its rounds again, identically) is skipped.
"""
from __future__ import annotations

import os
from pathlib import Path

from alkit.errors import RunStoreError
from alkit.loop.units import FullData, InitialSet, Record, Resume, Round, Unit
from alkit.storage.run_store import RunStore


class RunFolder:
    def __init__(self, out_dir: Path, store: RunStore, strategies: list[str], warm_start: bool) -> None:
        self.out_dir, self.store, self.strategies, self.warm_start = out_dir, store, strategies, warm_start

    def checkpoint_path(self, key: str, strategy: str, seed: int, round_: int) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{key}-{strategy}-{seed}")
        return self.out_dir / "checkpoints" / f"{safe}-r{round_}.pt"

    def first_round_to_rerun(self, key: str, strategy: str, seed: int, round_: int) -> int:
        """The round to run again from so that ``round_`` runs again: under warm start a round trains from the
        round before's checkpoint, and where that one is gone, from the last kept one's (or round 0)."""
        while self.warm_start and round_ > 0 and not self.checkpoint_path(key, strategy, seed, round_ - 1).exists():
            round_ -= 1
        return round_

    def resume(self, unit: Unit) -> Resume:
        if unit.full_data:
            return Resume(full_done=self.store.has_full_data(unit.dataset, unit.seed))
        rounds = {name: self.store.rounds(unit.dataset, name, unit.seed) for name in self.strategies
                  if unit.strategy in (None, name)}
        checkpoints = {}
        if self.warm_start:
            for name, done in rounds.items():
                path = self.checkpoint_path(unit.dataset, name, unit.seed, len(done) - 1)
                if done and path.exists():
                    checkpoints[name] = path.read_bytes()
        return Resume(self.store.initial_set(unit.dataset, unit.seed), rounds, checkpoints)

    def commit(self, record: Record) -> bool:
        """Write ``record``; False when it was already there (nothing written)."""
        if isinstance(record, InitialSet):
            self.store.save_initial_set(record.dataset, record.seed, record.indices)
            return False
        if isinstance(record, FullData):
            if self.store.has_full_data(record.row["dataset"], record.row["seed"]):
                return False
            self.store.save_full_data(record.row)
            return True
        if not isinstance(record, Round):
            raise RunStoreError(f"unknown record {type(record).__name__}")
        row = record.row
        if self.store.has_round(row["dataset"], row["strategy"], row["seed"], row["round"]):
            return False
        if record.checkpoint is not None:  # the weights land before the round that needs them is committed
            path = self.checkpoint_path(row["dataset"], row["strategy"], row["seed"], row["round"])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(record.checkpoint)
            os.replace(tmp, path)
        self.store.commit_round(row, record.queried)
        # the round before stays: an extension reopens the last round, which trains again from it
        old = self.checkpoint_path(row["dataset"], row["strategy"], row["seed"], row["round"] - 2)
        if record.checkpoint is not None and old.exists():
            old.unlink()
        return True
