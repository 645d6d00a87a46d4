import subprocess
import sys
from pathlib import Path

import pytest

from alkit import __version__
from alkit.cli import main


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alkit", *args], capture_output=True, text=True)


def _help(capsys: pytest.CaptureFixture, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_version_and_help(capsys: pytest.CaptureFixture) -> None:
    out = _cli("--version")  # the installed entry point, in a process of its own
    assert out.returncode == 0 and out.stdout.strip() == f"alkit {__version__}"
    help_text = _help(capsys)
    for command in ("datasets", "fetch", "model", "run", "experiment", "report", "demo"):
        assert command in help_text
    run_help = _help(capsys, "run")
    assert "--candidates" in run_help and "--schedule" in run_help


def test_model_summary(capsys: pytest.CaptureFixture) -> None:
    assert main(["model", "--input-shape", "32x32x3"]) == 0
    assert "Trainable params: 3,349,418" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["run", "--strategies", "random,bold"], "strategy 'bold' is unknown"),
    (["run", "--dataset", "npz"], "dataset 'npz' needs a path"),
    (["run", "--dataset", "npz", "--data-dir", "/nonexistent.npz"], "/nonexistent.npz: no such file"),
    (["experiment", "/nonexistent.yaml"], "/nonexistent.yaml: cannot read config"),
    (["report", "/tmp"], "/tmp: no runs.sqlite here"),
    (["model", "--input-shape", "8x8x1"], "--input-shape: input shape (8, 8, 1) is too small"),
    (["run", "--workers", "0"], "config: workers must be an integer >= 1"),
    (["run", "--schedule", "20x9,100"], "loop.schedule: '100' is not SIZExROUNDS"),
    (["run", "--schedule", "20x9", "--rounds", "3"], "give schedule, or rounds or budget, not both"),
    (["run", "--no-warm-start", "--warm-epochs", "3"], "train.warm_epochs: 3 is set but train.warm_start is off"),
    (["run", "--pseudo-labels", "-2"], "train.pseudo_labels: -2 must be >= 0"),
])
def test_errors_are_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # in-process: any exception but the one-line error would fail the test
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alkit: error: ") and message in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_budget_too_large_for_pool(small_npz: Path, tmp_path: Path) -> None:
    out = _cli("run", "--dataset", "npz", "--data-dir", str(small_npz), "--initial", "100", "--query", "100",
               "--rounds", "5", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "exceeds the 400 training images" in out.stderr
    assert not (tmp_path / "x").exists()
    out = _cli("run", "--dataset", "npz", "--data-dir", str(small_npz), "--initial", "100", "--schedule", "50x2,100x3",
               "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "(initial 100 + 2 rounds x 50, 3 rounds x 100) exceeds the 400" in out.stderr


def test_experiment_and_report_commands(small_npz: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(f"datasets: [{{name: npz, data_dir: {small_npz}}}]\nstrategies: [random, entropy]\nseeds: [0]\n"
                   "loop: {initial: 40, query: 20, rounds: 1}\ntrain: {epochs: 1, min_steps: 0}\nfull_data: none\n")
    bad = _cli("experiment", str(cfg), "--workers", "0")
    assert bad.returncode == 2 and "--workers 0: workers must be an integer >= 1" in bad.stderr
    cfg.write_text(cfg.read_text().replace("seeds: [0]", "seeds: [0, 1]"))
    out = _cli("experiment", str(cfg), "--out", str(tmp_path / "run"), "--workers", "2", "-q")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "run" / "rounds.csv").read_text().count("\nnpz,") == 2 * 2 * 2
    assert "report: " in out.stdout and (tmp_path / "run" / "report.html").exists()
    (tmp_path / "run" / "report.html").unlink()
    assert _cli("report", str(tmp_path / "run")).returncode == 0
    assert (tmp_path / "run" / "report.md").read_text().count("| entropy |") >= 1


def test_datasets_command_lists_local_copies(tmp_path: Path) -> None:
    from tests.conftest import write_fmnist
    write_fmnist(tmp_path / "fm")
    out = _cli("datasets", "--data-dir", str(tmp_path / "fm"))
    assert out.returncode == 0
    assert f"found: {tmp_path / 'fm'}" in out.stdout
    assert "differ from the official 6000 per class" in out.stdout
