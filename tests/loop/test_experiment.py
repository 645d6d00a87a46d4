import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torch import nn

import alkit
from alkit.errors import RunStoreError
from alkit.storage.run_store import CSV_COLUMNS

# min_steps=0: these tests check the loop's mechanics, not learning; the step-floor rule has its own tests
FAST = dict(initial=40, query=30, rounds=3, epochs=2, min_steps=0, batch_size=32, full_data="none", progress=False)
TIMING = {"train_seconds", "score_seconds", "select_seconds"}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _assert_same_results(a: Path, b: Path) -> None:
    ra, rb = _csv(a), _csv(b)
    assert len(ra) == len(rb) and ra
    for x, y in zip(ra, rb):
        for k in CSV_COLUMNS:
            if k in TIMING:
                continue
            try:
                assert abs(float(x[k]) - float(y[k])) <= 1e-6, (k, x, y)
            except ValueError:
                assert x[k] == y[k], (k, x, y)


def test_run_writes_every_column_and_never_queries_labeled(small_npz: Path, tmp_path: Path) -> None:
    res = alkit.run("npz", ["random", "margin", "entropy", "least-confidence"], seeds=[0, 1], data_dir=str(small_npz),
                    out=tmp_path / "r", **FAST)
    rows = _csv(tmp_path / "r" / "rounds.csv")
    assert list(rows[0]) == CSV_COLUMNS
    assert len(rows) == 4 * 2 * 4
    for r in rows:
        assert 0 <= float(r["f1_macro"]) <= 1 and 0 <= float(r["accuracy"]) <= 1
        assert r["precision_used"] in ("fp32", "bf16")
        # round 0's shared model is charged once, to the first strategy; later rounds train per strategy
        shared = r["round"] == "0" and r["strategy"] != "random"
        assert (float(r["train_seconds"]) == 0) if shared else (float(r["train_seconds"]) > 0)
    assert [int(r["n_labeled"]) for r in rows[:4]] == [40, 70, 100, 130]
    for strategy in ("random", "margin", "entropy", "least-confidence"):
        for seed in (0, 1):
            seq = [r for r in res.rows if r["strategy"] == strategy and r["seed"] == seed]
            seen: set[int] = set()
            labeled = set(alkit.loop.experiment.RunStore(tmp_path / "r" / "runs.sqlite").initial_set("npz", seed).tolist())
            for r in seq:
                q = set(r["queried"].tolist())
                assert not q & labeled and not q & seen
                seen |= q
    assert (tmp_path / "r" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "r" / "queries.csv").exists()


def test_paired_seeds_share_round_zero(small_npz: Path, tmp_path: Path) -> None:
    res = alkit.run("npz", ["random", "margin"], seeds=[3], data_dir=str(small_npz), out=tmp_path / "p", **FAST)
    r0 = {r["strategy"]: r for r in res.rows if r["round"] == 0}
    assert r0["random"]["f1_macro"] == r0["margin"]["f1_macro"]
    assert r0["random"]["confusion"] == r0["margin"]["confusion"]
    assert r0["random"]["queried"].tolist() != r0["margin"]["queried"].tolist()


def test_rerun_is_exactly_reproducible_and_resume_is_a_noop(small_npz: Path, tmp_path: Path) -> None:
    a = alkit.run("npz", ["margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "a", **FAST)
    b = alkit.run("npz", ["margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "b", **FAST)
    _assert_same_results(tmp_path / "a" / "rounds.csv", tmp_path / "b" / "rounds.csv")
    again = alkit.run("npz", ["margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "a", **FAST)
    assert len(again.rows) == len(a.rows) == len(b.rows)


def test_resume_refuses_a_different_config_and_keeps_the_folder_as_it_was(small_npz: Path, tmp_path: Path) -> None:
    alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "c", **FAST)
    before = {f.name: f.read_bytes() for f in (tmp_path / "c").iterdir() if f.is_file()}
    with pytest.raises(RunStoreError, match=r"made with a different configuration \(differs in: train.epochs\)"):
        alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "c", **{**FAST, "epochs": 3})
    assert {f.name: f.read_bytes() for f in (tmp_path / "c").iterdir() if f.is_file()} == before


def test_extending_a_finished_run_matches_running_the_larger_one(small_npz: Path, tmp_path: Path) -> None:
    small = {**FAST, "rounds": 2}
    alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "e", **small)
    bigger = {**FAST, "full_data": "first-seed"}
    ext = alkit.run("npz", ["random", "margin"], seeds=[0, 1], data_dir=str(small_npz), out=tmp_path / "e", **bigger)
    whole = alkit.run("npz", ["random", "margin"], seeds=[0, 1], data_dir=str(small_npz), out=tmp_path / "whole",
                      **bigger)
    _assert_same_results(tmp_path / "e" / "rounds.csv", tmp_path / "whole" / "rounds.csv")
    assert len(ext.rows) == 2 * 2 * 4
    assert [r["f1_macro"] for r in ext.full_data] == [r["f1_macro"] for r in whole.full_data] != []
    assert "rounds: 3" in (tmp_path / "e" / "config.yaml").read_text()
    with pytest.raises(RunStoreError, match="full_data"):
        alkit.run("npz", ["random", "margin"], seeds=[0, 1], data_dir=str(small_npz), out=tmp_path / "e", **FAST)


def test_extending_a_budget_reopens_the_partial_round(small_npz: Path, tmp_path: Path) -> None:
    opts = {**FAST, "rounds": None}
    alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "b", budget=95, **opts)
    res = alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "b", budget=130, **opts)
    assert [r["n_labeled"] for r in res.rows] == [40, 70, 100, 130]
    assert [len(r["queried"]) for r in res.rows] == [30, 30, 30, 0]


def test_extending_a_warm_run_trains_again_only_from_the_last_kept_checkpoint(small_npz: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import alkit.training.self_training as self_training

    trained = []

    def recording_fit(model, x, y, indices, *args, **kwargs):
        trained.append(len(indices))
        return real_fit(model, x, y, indices, *args, **kwargs)

    real_fit = self_training.fit
    monkeypatch.setattr(self_training, "fit", recording_fit)
    opts = {**FAST, "rounds": None}
    alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "r", **FAST | {"rounds": 2})
    trained.clear()
    alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "r", **FAST | {"rounds": 3})
    assert trained == [100, 130]  # the old last round (it now queries), from round 1's checkpoint, then the new one
    alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "b", budget=95, **opts)
    trained.clear()
    alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "b", budget=130, **opts)
    assert trained == [40, 70, 100, 130]  # round 1 changed its query, and round 0's checkpoint is gone: all again


def test_a_schedule_changes_the_query_size_and_grows_like_rounds(small_npz: Path, tmp_path: Path) -> None:
    opts = {**FAST, "rounds": None}
    alkit.run("npz", ["margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "s", schedule="30x2", **opts)
    ext = alkit.run("npz", ["margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "s",
                    schedule="30x2,15x2", **opts)
    alkit.run("npz", ["margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "w", schedule="30x2,15x2", **opts)
    assert [r["n_labeled"] for r in ext.rows] == [40, 70, 100, 115, 130]
    assert [len(r["queried"]) for r in ext.rows] == [30, 30, 15, 15, 0]
    _assert_same_results(tmp_path / "s" / "rounds.csv", tmp_path / "w" / "rounds.csv")
    assert "schedule: 30x2,15x2" in (tmp_path / "s" / "config.yaml").read_text()
    with pytest.raises(RunStoreError, match="loop.schedule"):
        alkit.run("npz", ["margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "s", schedule="30x1", **opts)


@pytest.mark.parametrize("change, field", [
    ({"rounds": 1}, "loop.rounds"),
    ({"rounds": 4, "epochs": 3}, "train.epochs"),
    ({"seeds": [1]}, "seeds"),
    ({"strategies": ["margin"]}, "strategies"),
])
def test_a_run_shrinks_or_changes_settings_never(small_npz: Path, tmp_path: Path, change: dict, field: str) -> None:
    alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "s", **FAST)
    args = {"strategies": ["random"], "seeds": [0], **FAST, **change}
    with pytest.raises(RunStoreError, match=field):
        alkit.run("npz", args.pop("strategies"), seeds=args.pop("seeds"), data_dir=str(small_npz),
                  out=tmp_path / "s", **args)
    assert len(_csv(tmp_path / "s" / "rounds.csv")) == 4


def test_warm_start_budget_candidates_and_balanced(small_npz: Path, tmp_path: Path) -> None:
    opts = {**FAST, "rounds": None}
    res = alkit.run("npz", ["entropy"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "w", budget=95,
                    candidates=60, warm_start=True, initial_set="balanced", **opts)
    assert [r["n_labeled"] for r in res.rows] == [40, 70, 95]
    assert all(r["n_candidates"] == 60 for r in res.rows[:-1])
    assert sorted(p.name[-6:] for p in (tmp_path / "w" / "checkpoints").glob("*.pt")) == ["-r1.pt", "-r2.pt"]


def test_warm_epochs_train_later_rounds_shorter_from_the_last_model(small_npz: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import alkit.training.self_training as self_training

    calls = []

    def recording_fit(model, x, y, indices, cfg, *args, **kwargs):
        calls.append((len(indices), cfg.epochs, cfg.warm_epochs))
        return real_fit(model, x, y, indices, cfg, *args, **kwargs)

    real_fit = self_training.fit
    monkeypatch.setattr(self_training, "fit", recording_fit)
    opts = {**FAST, "rounds": 2, "epochs": 3}
    default = alkit.run("npz", ["margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "default", **opts)
    assert calls == [(40, 3, None), (70, 1, None), (100, 1, None)]  # warm start, 30% of the epochs
    calls.clear()
    longer = alkit.run("npz", ["margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "longer",
                       warm_epochs=2, **opts)
    assert calls == [(40, 3, 2), (70, 2, 2), (100, 2, 2)]
    calls.clear()
    scratch = alkit.run("npz", ["margin"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "scratch",
                        warm_start=False, **opts)
    assert [c[1] for c in calls] == [3, 3, 3]
    assert default.rows[0]["f1_macro"] == longer.rows[0]["f1_macro"] == scratch.rows[0]["f1_macro"]
    assert len({default.rows[1]["train_loss"], longer.rows[1]["train_loss"], scratch.rows[1]["train_loss"]}) == 3
    assert not (tmp_path / "scratch" / "checkpoints").exists() and (tmp_path / "default" / "checkpoints").is_dir()


def test_full_data_reference_and_custom_model(small_npz: Path, tmp_path: Path) -> None:
    def tiny(shape: tuple[int, int, int], n: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], n))

    res = alkit.run("npz", ["random"], seeds=[0], data_dir=str(small_npz), out=tmp_path / "f",
                    model=tiny, **{**FAST, "full_data": "first-seed"})
    assert len(res.full_data) == 1 and res.full_data[0]["n_labeled"] == 400
    assert res.full_data[0]["f1_macro"] > 0.5  # the learnable toy task is learned from all labels
    assert "Full-data reference (400 labels" in (tmp_path / "f" / "report.md").read_text()


def _rounds_committed(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def kill_mid_run_then_resume(args: list[str], env: dict[str, str], tmp_path: Path, at_least: int,
                             total: int) -> list[dict[str, str]]:
    """Run ``args`` once uninterrupted; once SIGKILLed after ``at_least`` committed rounds, then again to
    finish. Asserts both runs' rounds.csv agree and returns the resumed one's rows."""
    subprocess.run(args + ["--out", str(tmp_path / "ref")], check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while _rounds_committed(killed / "runs.sqlite") < at_least and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert at_least <= _rounds_committed(killed / "runs.sqlite") < total
    out = subprocess.run(args + ["--out", str(killed)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    _assert_same_results(tmp_path / "ref" / "rounds.csv", killed / "rounds.csv")
    rows = _csv(killed / "rounds.csv")
    assert len(rows) == total
    return rows


def test_sigkill_mid_run_then_resume_matches_uninterrupted(small_npz: Path, tmp_path: Path) -> None:
    args = [sys.executable, "-m", "alkit", "run", "--dataset", "npz", "--data-dir", str(small_npz),
            "--strategies", "random,bald:samples=5,badge", "--seeds", "0,1", "--initial", "40", "--query", "30",
            "--rounds", "4", "--epochs", "3", "--min-steps", "12", "--batch-size", "32", "--full-data", "none",
            "--no-report", "-q"]
    rows = kill_mid_run_then_resume(args, {**os.environ, "OMP_NUM_THREADS": "1"}, tmp_path, 4, 30)
    assert {r["strategy"] for r in rows} == {"random", "bald:samples=5", "badge"}


def test_field_strategies_share_one_round_zero_model_and_two_settings_run_side_by_side(small_npz: Path,
                                                                                       tmp_path: Path) -> None:
    strategies = ["bald:samples=4", {"name": "bald", "samples": 6, "label": "bald-6"}, "coreset", "badge",
                  "class-balanced:base=margin", "subsample:base=batchbald:size=50"]
    res = alkit.run("npz", strategies, seeds=[0], data_dir=str(small_npz), out=tmp_path / "b", **FAST)
    rows = {(r["strategy"], r["round"]): r for r in res.rows}
    labels = ["bald:samples=4", "bald-6", "coreset", "badge", "class-balanced:base=margin",
              "subsample:base=batchbald:size=50"]
    assert {s for s, _ in rows} == set(labels)
    for label in labels:
        assert len(_queried(res, label, 0)) == 30 and rows[(label, 0)]["f1_macro"] == rows[("badge", 0)]["f1_macro"]
    # round 0's forward passes are shared: badge follows coreset, which already computed logits and embeddings
    assert rows[("coreset", 0)]["score_seconds"] > 0 and rows[("badge", 0)]["score_seconds"] == 0
    assert _queried(res, "bald:samples=4", 0) != _queried(res, "coreset", 0)
    cfg = (tmp_path / "b" / "config.yaml").read_text()
    assert "bald:samples=6:label=bald-6" in cfg


def test_switch_runs_its_first_strategy_then_its_second_and_computes_only_what_each_needs(small_npz: Path,
                                                                                          tmp_path: Path) -> None:
    res = alkit.run("npz", ["random", "switch:first=random:then=margin:at=70"], seeds=[0], data_dir=str(small_npz),
                    out=tmp_path / "s", **FAST)
    rows = {(r["strategy"], r["round"]): r for r in res.rows}
    switch = "switch:at=70:first=random:then=margin"  # the label lists parameters in name order
    assert _queried(res, switch, 0) == _queried(res, "random", 0)  # 40 labels: random, from the same generator
    assert rows[(switch, 0)]["score_seconds"] == 0 and rows[(switch, 1)]["score_seconds"] > 0  # 70: margin scores
    assert rows[(switch, 1)]["scoring"] != "" and _queried(res, switch, 1) != _queried(res, "random", 1)


def test_class_balance_reaches_training_and_the_run_fingerprint(small_npz: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    from alkit.cli import main

    args = ["run", "--dataset", "npz", "--data-dir", str(small_npz), "--strategies", "random", "--initial", "40",
            "--rounds", "0", "--epochs", "2", "--min-steps", "0", "--batch-size", "32", "--full-data", "none",
            "--no-report", "-q"]
    assert main(args + ["--out", str(tmp_path / "plain")]) == 0
    assert main(args + ["--out", str(tmp_path / "la"), "--class-balance", "logit-adjust"]) == 0
    plain, adjusted = _csv(tmp_path / "plain" / "rounds.csv")[0], _csv(tmp_path / "la" / "rounds.csv")[0]
    assert plain["train_loss"] != adjusted["train_loss"]  # 40 random labels of 10 classes are not balanced
    assert "class_balance: logit-adjust" in (tmp_path / "la" / "config.yaml").read_text()
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "plain"), "--class-balance", "reweight"]) == 2
    assert "differs in: train.class_balance" in capsys.readouterr().err


def test_pseudo_labels_train_each_round_twice_on_the_pool_and_enter_the_fingerprint(
        small_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import alkit.training.self_training as self_training
    from alkit.cli import main

    trainings = []

    def recording_fit(model, x, y, indices, *args, **kwargs):
        trainings.append((len(indices), int((y[indices] < 0).sum())))
        return real_fit(model, x, y, indices, *args, **kwargs)

    real_fit = self_training.fit
    monkeypatch.setattr(self_training, "fit", recording_fit)
    args = ["run", "--dataset", "npz", "--data-dir", str(small_npz), "--strategies", "margin", "--initial", "40",
            "--query", "30", "--rounds", "1", "--epochs", "2", "--min-steps", "0", "--batch-size", "32",
            "--full-data", "none", "--no-report", "-q", "--out", str(tmp_path / "st")]
    assert main(args + ["--pseudo-labels", "3"]) == 0
    # per round: the labeled images, then those plus at most 3 per class of the 10 from the unlabeled pool
    assert [n for n, _ in trainings[::2]] == [40, 70] and all(unknown == 0 for _, unknown in trainings)
    assert all(0 < second - first <= 30 for (first, _), (second, _) in zip(trainings[::2], trainings[1::2]))
    assert len(trainings) == 4
    rows = _csv(tmp_path / "st" / "rounds.csv")
    assert [int(r["n_labeled"]) for r in rows] == [40, 70]
    assert "pseudo_labels: 3" in (tmp_path / "st" / "config.yaml").read_text()
    capsys.readouterr()
    assert main(args) == 2
    assert "differs in: train.pseudo_labels" in capsys.readouterr().err


def _queried(res: "alkit.api.RunResult", strategy: str, round_: int) -> list[int]:
    return sorted(next(r for r in res.rows if r["strategy"] == strategy and r["round"] == round_)["queried"].tolist())
