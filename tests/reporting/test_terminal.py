"""What a run prints: the summary table at the end, and a line per round when output is not a terminal."""
import io
import subprocess
import sys
from pathlib import Path

import alkit
from alkit.loop.progress import LineProgress, progress_bar
from alkit.reporting.report import write_report
from alkit.reporting.terminal import print_summary, summary_rows


def test_a_piped_run_prints_a_line_per_round_and_the_summary_table(small_npz: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "alkit", "run", "--dataset", "npz", "--data-dir", str(small_npz),
                          "--strategies", "random,margin", "--seeds", "0,1", "--initial", "40", "--query", "30",
                          "--rounds", "1", "--epochs", "1", "--min-steps", "0", "--full-data", "none", "--no-report",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = [l for l in out.stderr.splitlines() if l.startswith("alkit: ")]
    assert len(lines) == 8 and lines[-1].startswith("alkit: 8/8 rounds done")
    assert "\r" not in out.stderr
    assert "results at the final budget" in out.stdout and "labels to random's F1" in out.stdout
    margin = next(l for l in out.stdout.splitlines() if "margin" in l)
    assert " 70 " in margin and "pts (p=" in margin


def test_summary_rows_and_one_seed(small_npz: Path, tmp_path: Path) -> None:
    res = alkit.run("npz", ["random", "entropy"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "s",
                    initial=40, query=30, rounds=1, epochs=1, min_steps=0, full_data="none", progress=False, report=False)
    rows = summary_rows(res.rows, res.full_data)
    assert sorted(r["strategy"] for r in rows) == ["entropy", "random"] and all(r["seeds"] == 1 for r in rows)
    buf = io.StringIO()
    print_summary(res.rows, res.full_data, file=buf)
    assert "(1 seed)" in buf.getvalue()


def test_report_rebuilt_from_the_folder_names_the_classes(small_npz: Path, tmp_path: Path) -> None:
    alkit.run("npz", ["random", "margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "c", initial=40,
              query=30, rounds=1, epochs=1, min_steps=0, full_data="none", progress=False, report=False)
    write_report(tmp_path / "c")  # as `alkit report RUN_DIR` does: no classes passed in
    text = (tmp_path / "c" / "report.md").read_text()
    assert "| strategy | c0 | c1 | c2 |" in text
    assert "recorded once, charged to the first strategy" in text


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress_bar(5, 0, True, io.StringIO()), LineProgress)
    assert not isinstance(progress_bar(5, 0, True, Tty()), LineProgress)
    buf = io.StringIO()
    bar = LineProgress(3, 1, buf)
    bar.set_description("npz seed 0 margin round 1/2")
    bar.update(1)
    bar.update(0)
    assert buf.getvalue().count("\n") == 1 and "2/3 rounds done" in buf.getvalue()
