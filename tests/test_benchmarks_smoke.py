"""The benchmark scripts run end to end at tiny sizes, so they cannot rot. Timings are not checked."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FMNIST_DIR, require_real

ROOT = Path(__file__).resolve().parents[1]


def _run(module: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-m", module, "--smoke", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_scoring_smoke() -> None:
    require_real(FMNIST_DIR)
    out = _run("benchmarks.scoring")
    assert "| int8 static quantisation (x86 backend), batch 256 |" in out and "top-1000 overlap, margin" in out


def test_mc_dropout_smoke() -> None:
    require_real(FMNIST_DIR)
    out = _run("benchmarks.mc_dropout")
    assert "bit-for-bit identical" in out and "whole passes" in out


@pytest.mark.slow
def test_memory_smoke() -> None:
    require_real(FMNIST_DIR)
    out = _run("benchmarks.memory")
    assert "PNG files through the `folder` dataset" in out and "| `badge` | 3,000 x 512 | 100 |" in out


@pytest.mark.slow
def test_label_efficiency_smoke(tmp_path: Path) -> None:
    require_real(FMNIST_DIR)
    out = _run("benchmarks.label_efficiency", "--strategies", "random,margin", "--seeds", "0", "--init", "glorot",
               "--out", str(tmp_path / "le"))
    assert "| margin | 1 |" in out and "labels to random's final F1" in out and "init glorot" in out


@pytest.mark.slow
def test_low_budget_protocol_smoke(tmp_path: Path) -> None:
    require_real(FMNIST_DIR)
    # ProbCover's initial set in a run is tested on a small pool (tests/strategies/test_cold_start.py); here its
    # O(N^2) ball graph over the 60,000-image pool would take a third of this test
    out = _run("benchmarks.label_efficiency", "--protocol", "low-budget", "--arms", "margin,typiclust,tcm",
               "--out", str(tmp_path / "lb"))
    assert "| typiclust, then random | 1 |" in out and "| margin | 1 |" in out and "F1 @40" in out
    assert "| typiclust, then TCM | 1 |" in out
    assert "Label-free initial sets, mean paired gain" in out and "The `--epochs 2` check" in out
    assert "schedule: 20x1" in (tmp_path / "lb" / "config.yaml").read_text()
    assert "probcover" not in out and not (tmp_path / "lb-probcover").exists()


def test_low_budget_protocol_refuses_an_unknown_arm(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.label_efficiency", "--protocol", "low-budget", "--arms",
                          "random,bald", "--out", str(tmp_path / "lb")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and "--arms: bald unknown; choose from random, margin" in out.stderr
    assert not (tmp_path / "lb").exists()


@pytest.mark.slow
def test_peers_smoke() -> None:
    require_real(FMNIST_DIR)
    if importlib.util.find_spec("baal") is None or importlib.util.find_spec("modAL") is None:
        if os.environ.get("CI"):
            pytest.fail("the bench extra (baal, modAL, skorch) must be installed in CI")
        pytest.skip("the bench extra (baal, modAL, skorch) is not installed")
    assert "Selection agreement" in _run("benchmarks.peers")


@pytest.mark.slow
def test_recipe_smoke() -> None:
    require_real(FMNIST_DIR)
    out = _run("benchmarks.recipe")
    assert "| 1 | no | constant | 64 |" in out and "| 1 | yes | cosine | 64 |" in out


@pytest.mark.slow
def test_recipe_low_budget_study_smoke() -> None:
    require_real(FMNIST_DIR)
    out = _run("benchmarks.recipe", "--study", "low-budget")
    assert "`augment`: random shifts" in out
    assert "[20, 0, 'no'," in out and "[20, 20, 'yes'," in out


@pytest.mark.slow
def test_training_step_smoke() -> None:
    require_real(FMNIST_DIR)
    out = _run("benchmarks.training_step")
    assert "plain loop step (fp32, NCHW" in out and "alkit fit, fp32, channels-last batches, batch 64" in out
    capped = _run("benchmarks.training_step", env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert "oneDNN capped at AVX2" in capped and "bf16," not in capped


def test_recipe_paired_variants_table(tmp_path: Path) -> None:
    import argparse
    import json
    from types import SimpleNamespace

    import numpy as np

    from benchmarks.recipe import _paired_variants

    cells = {("a", 0): (0.60, 0.6, 1.0), ("a", 1): (0.70, 0.7, 3.0), ("a", 2): (0.65, 0.6, 2.0),
             ("b", 0): (0.62, 0.6, 1.0), ("b", 1): (0.71, 0.7, 1.0), ("b", 2): (0.64, 0.6, 1.0)}
    args = argparse.Namespace(labels=100, dataset="fashion-mnist", tag="t", smoke=False)
    _paired_variants(args, SimpleNamespace(y_test=np.zeros(50)), ["a", "b"], [0, 1, 2], "bf16", cells,
                     results=tmp_path)
    saved = json.loads((tmp_path / "recipe-fashion-mnist-100-t.json").read_text())
    rows = saved["blocks"][1]["rows"]
    assert rows[0][:2] == ["`a`", pytest.approx(0.65)] and rows[0][3:6] == [None, None, None] and rows[0][6] == 2.0
    assert rows[1][3] == pytest.approx(2 / 3) and rows[1][5] == "2 of 3"  # +2, +1, -1 points
    t = (2 / 3) / (np.std([2, 1, -1], ddof=1) / np.sqrt(3))
    assert rows[1][4] == pytest.approx(1 - t / np.sqrt(t * t + 2))  # the two-sided t-test's p at 2 degrees of freedom
    assert saved["metrics"]["variants"]["b"]["f1_per_seed"] == [0.62, 0.71, 0.64]
    assert "seeds [0, 1, 2]: per seed the same images" in saved["blocks"][0] and "in bf16" in saved["blocks"][0]


def test_recipe_variant_parsing() -> None:
    from benchmarks.recipe import parse_variant, section_name

    assert section_name("cifar10", 10000, 0) == "recipe-cifar10-10000"
    assert section_name("fashion-mnist", 5000, 1, "init") == "recipe-fashion-mnist-5000-init-seed1"

    cfg = parse_variant("15:aug:cosine:32:0.002:0.0001")
    assert (cfg.epochs, cfg.augment, cfg.lr_schedule, cfg.batch_size, cfg.lr, cfg.weight_decay) == \
        (15, True, "cosine", 32, 0.002, 0.0001)
    assert parse_variant("3:no:constant:64").lr == 1e-3
    assert parse_variant("3:no:constant:64").init == "torch"
    cfg = parse_variant("10:aug:cosine:64:min_steps=1000:bn_recalibration=false")
    assert (cfg.epochs, cfg.augment, cfg.min_steps, cfg.bn_recalibration) == (10, True, 1000, False)
    with pytest.raises(SystemExit, match="variant '10:no:cosine:64:min_step=5': .*min_step"):
        parse_variant("10:no:cosine:64:min_step=5")
    with pytest.raises(SystemExit, match="train.min_steps: -1 must be >= 0"):
        parse_variant("10:no:cosine:64:min_steps=-1")
    assert parse_variant("3:no:constant:64:0.001:0:glorot").init == "glorot"
    with pytest.raises(SystemExit, match="expected epochs"):
        parse_variant("10:no")


@pytest.mark.slow
def test_end_to_end_smoke() -> None:
    require_real(FMNIST_DIR)
    out = _run("benchmarks.end_to_end")
    for loop in ("alkit default", "alkit scratch", "alkit fp32", "plain"):
        assert f"| {loop} |" in out
    assert "with alkit's `predict_logits`" in out


def test_minority_recall_pairs_seeds_against_random() -> None:
    from benchmarks.label_efficiency import _minority_recall, _minority_table

    rows = []
    for seed, (rand, marg) in enumerate([(0.40, 0.55), (0.50, 0.60), (0.45, 0.65)]):
        for strategy, minority in (("random", rand), ("margin", marg)):
            for n in (1000, 2000):
                recall = [0.3] * 5 + [0.9] * 5 if n == 1000 else [minority] * 5 + [0.9] * 5
                rows.append({"dataset": "fashion-mnist-imbalanced", "strategy": strategy, "seed": seed,
                             "n_labeled": n, "per_class": {"recall": recall}})
    summary = {"strategies": {"margin": {}, "random": {}}}
    _minority_recall(rows, "fashion-mnist-imbalanced", [2000], summary)
    margin = summary["strategies"]["margin"]
    assert margin["minority_recall"]["2000"] == pytest.approx(0.60)
    assert margin["delta_minority_recall"]["2000"][0] == pytest.approx(15.0)
    assert summary["strategies"]["random"]["delta_minority_recall"]["2000"] is None
    table = _minority_table(summary, [2000])
    assert table["columns"] == ["strategy", "recall @2k", "Δ vs random @2k (p)", "minority share of queries @2k"]
    assert table["rows"][1][2] == "–" and table["rows"][0][2].startswith("+15.00 pts (p=0.")
    assert table["rows"][0][3] == "–"
    plain = {"strategies": {"margin": {}, "random": {}}}
    _minority_recall(rows, "fashion-mnist", [2000], plain)
    assert plain == {"strategies": {"margin": {}, "random": {}}}


def test_minority_query_share_counts_each_strategys_queries_up_to_the_budget() -> None:
    from benchmarks.label_efficiency import minority_query_share

    def row(strategy: str, seed: int, n: int, hist: list[int] | None) -> dict:
        return {"dataset": "d", "strategy": strategy, "seed": seed, "n_labeled": n, "query_hist": hist}

    rows = [row("margin", 0, 1000, [100] * 5 + [100] * 5), row("margin", 0, 2000, [0] * 5 + [200] * 5),
            row("margin", 0, 3000, None),
            row("margin", 1, 1000, [40] * 5 + [160] * 5), row("margin", 1, 2000, [0] * 10),
            row("margin", 1, 3000, None)]
    share = minority_query_share(rows, "d", [2000, 3000, 1000])["margin"]
    assert share["2000"] == pytest.approx((0.5 + 0.2) / 2)
    assert share["3000"] == pytest.approx((500 / 2000 + 200 / 1000) / 2)
    assert share["1000"] is None
    rows[1]["query_hist"] = None
    assert minority_query_share(rows, "d", [3000])["margin"]["3000"] is None


def test_paired_differences_give_no_p_value_for_one_seed() -> None:
    from alkit.reporting.summary import curves
    from benchmarks.label_efficiency import _delta_cell, _paired

    rows = [{"dataset": "d", "strategy": s, "seed": seed, "n_labeled": 2000, "f1_macro": f1}
            for seed, (rand, marg) in enumerate([(0.80, 0.82), (0.81, 0.84)]) for s, f1 in (("random", rand), ("margin", marg))]
    one = curves([r for r in rows if r["seed"] == 0], "d", "f1_macro")
    two = curves(rows, "d", "f1_macro")
    assert _paired("margin", one["margin"], one["random"], [2000]) == {"2000": [2.0, None]}
    assert _delta_cell([2.0, None]) == "+2.00 pts (1 seed, no p)"
    cell = _delta_cell(_paired("margin", two["margin"], two["random"], [2000])["2000"])
    assert cell.startswith("+2.50 pts (p=0.") and "nan" not in cell
    assert _paired("random", two["random"], two["random"], [2000]) == {"2000": None}
    assert _delta_cell(None) == "–"


def test_complete_seeds_leaves_out_a_seed_that_stopped_early() -> None:
    from benchmarks.label_efficiency import complete_seeds

    rows = [{"dataset": "d", "strategy": s, "seed": seed, "n_labeled": n}
            for s in ("random", "margin") for seed in (0, 1, 2) for n in (1000, 2000, 3000)
            if not (seed == 2 and n == 3000 and s == "margin")]
    rows.append({"dataset": "other", "strategy": "random", "seed": 5, "n_labeled": 1000})
    kept, partial = complete_seeds(rows, "d")
    assert partial == [2]
    assert {r["seed"] for r in kept} == {0, 1} and len(kept) == 12
    assert complete_seeds(rows, "other") == ([rows[-1]], [])


def test_a_strategy_that_no_seed_finished_is_left_out_and_named() -> None:
    from benchmarks.label_efficiency import finished_strategies

    rows = [{"dataset": "d", "strategy": s, "seed": seed, "round": r, "n_labeled": 1000 * (r + 1)}
            for s, last in (("random", 9), ("margin", 9), ("badge", 1)) for seed in (0, 1) for r in range(last + 1)]
    kept, stopped = finished_strategies(rows + [{"dataset": "other", "strategy": "x", "seed": 0, "round": 0,
                                                 "n_labeled": 5}], "d")
    assert stopped == {"badge": 2000}
    assert {r["strategy"] for r in kept} == {"random", "margin"} and len(kept) == 40
    assert finished_strategies(rows, "none") == ([], {})


def test_gpu_script_parses_and_rejects_unknown_commands() -> None:
    script = ROOT / "benchmarks" / "gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    out = subprocess.run(["bash", str(script), "nonsense"], capture_output=True, text=True)
    assert out.returncode == 2 and "usage: bash benchmarks/gpu.sh prepare|prepare-cifar|stash|run" in out.stderr


@pytest.mark.slow
def test_workers_smoke() -> None:
    require_real(FMNIST_DIR)
    out = _run("benchmarks.workers", "--workers", "2")
    assert "2 worker processes" in out and "Speed-up: **" in out and "largest F1 difference" in out
    assert "2 Ray tasks (1 CPU each" in out and "every round agrees with the worker processes" in out
