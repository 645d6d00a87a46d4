"""The run report: written from a real run folder, and honest about the full-data reference."""
import sqlite3
from pathlib import Path

import pytest

import alkit
from alkit.errors import RunStoreError
from alkit.reporting.report import write_report

TINY = dict(initial=40, query=30, rounds=1, epochs=1, min_steps=0, batch_size=32, progress=False, report=False)


def _report(run: Path) -> str:
    write_report(run)
    return (run / "report.md").read_text()


def test_report_states_whether_the_full_data_reference_ran(small_npz: Path, tmp_path: Path) -> None:
    alkit.run("npz", ["random", "margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "none",
              full_data="none", **TINY)
    assert "Full-data reference: not computed in this run (full_data: none)." in _report(tmp_path / "none")
    run = tmp_path / "full"
    alkit.run("npz", ["random", "margin"], seeds=[0], data_dir=str(small_npz), out=run, full_data="first-seed", **TINY)
    text = _report(run)
    assert "Full-data reference (400 labels, 1 seed(s)): macro F1" in text
    assert "Rounds after the first continued from the previous round's model (warm start" in text
    assert "| margin | 70 | 1 |" in text and (run / "report.html").stat().st_size > 1000
    with sqlite3.connect(run / "runs.sqlite") as db:  # as if the run was stopped before its full-data step
        db.execute("DELETE FROM full_data")
    assert "Full-data reference: not finished yet (full_data: first-seed); rerun the same command" in _report(run)


def test_a_run_retrained_from_scratch_has_no_warm_start_caveat(small_npz: Path, tmp_path: Path) -> None:
    alkit.run("npz", ["random", "margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "s",
              full_data="none", warm_start=False, **TINY)
    text = _report(tmp_path / "s")
    assert "Paired difference vs random" in text and "warm start" not in text


def test_report_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunStoreError, match="no runs.sqlite here"):
        write_report(tmp_path)
