"""BENCHMARKS.md is generated from the results data: the committed file is what the data gives, and a rerun
of one benchmark replaces its section and the headline and status figures taken from it."""
import json
from pathlib import Path

import pytest
import torch

from benchmarks.common import BENCHMARKS_MD, RESULTS, cpu_isa, machine_line, markdown_blocks, save_result, table
from benchmarks.render import best_strategy, headline, md_table, render
from benchmarks.targets import TARGETS, status_table


def test_committed_benchmarks_md_is_what_the_committed_results_give() -> None:
    assert BENCHMARKS_MD.read_text() == render(RESULTS), "run: python -m benchmarks.render"


def _label_efficiency(gain_5k: float, need: int | None) -> dict:
    def strategy(f1_5k: float, delta: float | None, reach: int | None) -> dict:
        return {"seeds": 3, "f1": {"2000": 0.85, "5000": f1_5k}, "accuracy": {"2000": 0.85, "5000": f1_5k},
                "aubc": 0.86, "labels_to_random_final": reach,
                "delta_f1": {"2000": None if delta is None else [1.0, 0.04], "5000": None if delta is None else [delta, 0.01]}}
    return {"datasets": {"fashion-mnist": {"max_labels": 5000, "strategies": {
        "random": strategy(0.88, None, 5000), "margin": strategy(0.88 + gain_5k / 100, gain_5k, need)}}}}


def test_a_rerun_archives_the_old_result_and_moves_the_headline(tmp_path: Path) -> None:
    blocks = ["A paragraph.", table(["strategy", "F1"], [["margin", 0.9012], ["random", None]], [None, ".3f"])]
    save_result("label-efficiency-x", "label_efficiency", "Label efficiency: x", blocks, _label_efficiency(1.5, 4000),
                results=tmp_path)
    first = render(tmp_path)
    assert "| margin | 0.901 |" in first and "| random | – |" in first
    assert "| Fashion-MNIST | margin (3 seeds) | 4,000 | 5,000 | 1.2x fewer labels |" in first
    assert "| #15 | Fashion-MNIST: best strategy − random at 5k | ≥ +2.5 F1 points | **missed** |" in first
    assert "# Archive" not in first

    save_result("label-efficiency-x", "label_efficiency", "Label efficiency: x", blocks, _label_efficiency(3.0, 2500),
                results=tmp_path)
    second = render(tmp_path)
    assert len(list((tmp_path / "archive").glob("label-efficiency-x-*.json"))) == 1
    assert "| Fashion-MNIST | margin (3 seeds) | 2,500 | 5,000 | 2.0x fewer labels |" in second
    assert "| #15 | Fashion-MNIST: best strategy − random at 5k | ≥ +2.5 F1 points | **met** | margin +3.00 points" in second
    assert second.index("# Archive") > second.index("## Status of the targets")


def test_a_result_summarised_here_can_record_the_machine_its_work_ran_on(tmp_path: Path) -> None:
    there = {"commit": "abc1234", "machine": {"cpu": "Xeon", "isa": "avx512-bf16", "cores": 16, "memory_gib": 126,
                                              "gpu": "NVIDIA H200", "python": "3.12.3", "torch": "2.11", "threads": 1}}
    path = save_result("x", "label_efficiency", "x", ["p"], {}, results=tmp_path, ran_on=there)
    saved = json.loads(path.read_text())
    assert saved["machine"] == there["machine"] and saved["commit"] == "abc1234"
    here = json.loads(save_result("y", "label_efficiency", "y", ["p"], {}, results=tmp_path).read_text())
    assert here["machine"]["gpu"] != "NVIDIA H200" and here["commit"] != "abc1234"


def test_every_target_evaluates_on_the_committed_results() -> None:
    current = [json.loads(p.read_text()) for p in RESULTS.glob("*.json")]
    for target in TARGETS:
        status, figure, keys = target.evaluate(current)
        assert status in ("met", "missed", "not measured"), target.measure
        assert all((RESULTS / f"{k}.json").exists() for k in keys)
    assert status_table([]).count("not measured") == len(TARGETS)


def test_headline_prefers_the_run_with_more_seeds_and_names_the_fastest_strategy() -> None:
    ds = _label_efficiency(2.0, 3000)["datasets"]["fashion-mnist"]
    ds["strategies"]["entropy"] = {**ds["strategies"]["margin"], "labels_to_random_final": None}
    assert best_strategy(ds)[0] == "margin"
    one_seed = json.loads(json.dumps(ds))
    for s in one_seed["strategies"].values():
        s["seeds"] = 1
    runs = [{"key": k, "kind": "label_efficiency", "metrics": {"datasets": {"fashion-mnist": d}}}
            for k, d in (("few", one_seed), ("many", ds))]
    assert "[many](#many)" in headline(runs) and "[few](#few)" not in headline(runs)


def test_the_gain_target_takes_the_best_strategy_of_every_run_with_the_most_seeds() -> None:
    target = next(t for t in TARGETS if t.measure == "Fashion-MNIST: best strategy − random at 5k")

    def run(key: str, gain: float, seeds: int, warm: bool = False) -> dict:
        metrics = _label_efficiency(gain, None)
        for s in metrics["datasets"]["fashion-mnist"]["strategies"].values():
            s["seeds"] = seeds
        return {"key": key, "kind": "label_efficiency", "metrics": {**metrics, "warm_start": warm}}

    study, field = run("study", 1.9, 3), run("field", 2.6, 3)
    assert target.evaluate([study, field]) == ("met", "margin +2.60 points (p=0.010, 3 seeds)", ["field"])
    assert target.evaluate([study])[0] == "missed"
    assert target.evaluate([study, run("one-seed", 4.0, 1), run("warm", 4.0, 3, warm=True)])[2] == ["study"]


def test_the_warm_start_and_query_size_gain_rows_read_only_their_own_runs() -> None:
    from benchmarks.targets import best_gain

    def run(key: str, gain: float, warm: bool, query: int | None) -> dict:
        metrics = {**_label_efficiency(gain, None), "warm_start": warm} | ({"query": query} if query else {})
        return {"key": key, "kind": "label_efficiency", "metrics": metrics}

    current = [run("scratch", 0.9, False, None), run("warm", 1.6, True, 1000), run("q500", 2.7, True, 500),
               run("scratch-q500", 3.0, False, 500)]
    assert best_gain("fashion-mnist", 5000, 2.0)(current)[2] == ["scratch"]
    assert best_gain("fashion-mnist", 5000, 2.0, warm=True)(current)[::2] == ("missed", ["warm"])
    assert best_gain("fashion-mnist", 5000, 2.0, warm=True, query=500)(current)[::2] == ("met", ["q500"])
    assert best_gain("fashion-mnist", 5000, 2.0, warm=True, query=500)(current[:2])[0] == "not measured"


def test_the_labels_needed_rows_read_runs_to_10k_of_their_own_variant() -> None:
    from benchmarks.targets import labels_needed

    def run(key: str, need: int, query: int | None, max_labels: int = 10_000) -> dict:
        metrics = _label_efficiency(2.0, need) | ({"query": query} if query else {})
        metrics["datasets"]["fashion-mnist"]["max_labels"] = max_labels
        for s in metrics["datasets"]["fashion-mnist"]["strategies"].values():
            s["f1"][str(max_labels)] = s["f1"]["5000"]
        return {"key": key, "kind": "label_efficiency", "metrics": metrics}

    current = [run("scratch", 5000, None), run("q500-5k", 3000, 500, 5000), run("q500", 4000, 500)]
    assert labels_needed("fashion-mnist", 4000)(current) == ("missed", "margin: 5,000", ["scratch"])
    assert labels_needed("fashion-mnist", 4000, query=500)(current) == ("met", "margin: 4,000", ["q500"])
    assert labels_needed("fashion-mnist", 4000, query=500)(current[:2])[0] == "not measured"
    for runs in ([run("scratch", 5000, None), run("field", 4000, None)], [run("field", 4000, None), run("scratch", 5000, None)]):
        assert labels_needed("fashion-mnist", 4000)(runs) == ("met", "margin: 4,000", ["field"])
        assert "[field](#field)" in headline(runs) and "[scratch](#scratch)" not in headline(runs)


def test_a_warm_start_run_never_speaks_for_the_protocol() -> None:
    ds = _label_efficiency(2.0, 3000)["datasets"]["fashion-mnist"]
    runs = [{"key": "warm", "kind": "label_efficiency", "metrics": {"datasets": {"fashion-mnist": ds}, "warm_start": True}},
            {"key": "scratch", "kind": "label_efficiency", "metrics": {"datasets": {"fashion-mnist": ds}}}]
    assert "[scratch](#scratch)" in headline(runs) and "[warm](#warm)" not in headline(runs)
    q500 = {"key": "q500", "kind": "label_efficiency", "metrics": {"datasets": {"fashion-mnist": ds}, "query": 500}}
    assert "[scratch](#scratch)" in headline([q500, runs[1]]) and "[q500](#q500)" not in headline([q500, runs[1]])


def test_the_low_budget_targets_read_the_fashion_mnist_run_only() -> None:
    from benchmarks.targets import low_budget

    def run(key: str, dataset: str, figure: str) -> dict:
        return {"key": key, "kind": "label_efficiency", "metrics": {
            "low_budget": {"random_at_100": {"status": "missed", "figure": figure}},
            "low_budget_curves": {dataset: {}}}}

    current = [run("cifar", "cifar10", "0.2395 (3 seeds)"), run("fmnist", "fashion-mnist", "0.6879 (3 seeds)")]
    assert low_budget("random_at_100")(current) == ("missed", "0.6879 (3 seeds)", ["fmnist"])
    assert low_budget("random_at_100", opt_in=True)(current)[0] == "not measured"


def test_the_default_recipe_targets_never_read_a_run_with_opt_in_options() -> None:
    from benchmarks.targets import low_budget

    def run(key: str, figure: str, recipe: dict) -> dict:
        return {"key": key, "kind": "label_efficiency", "metrics": {
            "low_budget": {"random_at_100": {"status": "met" if figure > "0.70" else "missed", "figure": figure}},
            "low_budget_curves": {"fashion-mnist": {}}, "recipe": recipe}}

    opt_in = run("self-training", "0.7108 (5 seeds)", {"augment": True, "pseudo_labels": 1000})
    plain = run("window", "0.6926 (5 seeds)", {"augment": False, "pseudo_labels": 0})
    older = {**plain, "key": "older", "metrics": {k: v for k, v in plain["metrics"].items() if k != "recipe"}}
    for current in ([opt_in, plain], [plain, opt_in]):
        assert low_budget("random_at_100")(current) == ("missed", "0.6926 (5 seeds)", ["window"])
        assert low_budget("random_at_100", opt_in=True)(current) == ("met", "0.7108 (5 seeds)", ["self-training"])
    assert low_budget("random_at_100")([opt_in, older])[2] == ["older"]


def test_the_label_free_target_reads_a_run_on_todays_default_embedder_first() -> None:
    from benchmarks.targets import CURRENT_EMBEDDER, low_budget

    def run(key: str, figure: str, embedder: str | None, warm: bool = False) -> dict:
        metrics = {"low_budget": {"label_free_gain": {"status": "missed", "figure": figure}},
                   "low_budget_curves": {"fashion-mnist": {}}, "warm_start": warm}
        return {"key": key, "kind": "label_efficiency", "metrics": metrics | ({"embedder": embedder} if embedder else {})}

    old, new, warm = run("main", "+3.31", None), run("window", "+6.28", CURRENT_EMBEDDER), run("w", "+9", "x", True)
    assert low_budget("label_free_gain")([old, new, warm])[1:] == ("+6.28", ["window"])
    assert low_budget("label_free_gain")([warm, new, old])[1:] == ("+6.28", ["window"])
    assert low_budget("label_free_gain")([old, warm])[1:] == ("+3.31", ["main"])
    assert low_budget("label_free_gain")([warm])[0] == "not measured"
    five, three = dict(new), run("unit", "+4.95", CURRENT_EMBEDDER)
    five["metrics"] = {**new["metrics"], "low_budget_curves": {"fashion-mnist": {"strategies": {
        "random": {"seeds": 5}, "typiclust, then random": {"seeds": 5}}}}}
    three["metrics"]["low_budget_curves"] = {"fashion-mnist": {"strategies": {
        "random": {"seeds": 5}, "typiclust, then random": {"seeds": 3}}}}
    assert low_budget("label_free_gain")([three, five, old])[1:] == ("+6.28", ["window"])
    assert low_budget("label_free_gain")([five, three])[1:] == ("+6.28", ["window"])
    assert low_budget("label_free_gain", warm=True)([old, new, warm])[1:] == ("+9", ["w"])
    assert low_budget("label_free_gain", warm=True)([old, new])[0] == "not measured"


def test_the_self_training_target_reads_the_best_pseudo_label_variant_of_its_study() -> None:
    from benchmarks.targets import self_training_f1

    variants = {"10:no:cosine:64": {"f1": 0.68, "delta_pts": None, "p": None},
                "10:no:cosine:64:pseudo_labels=1000": {"f1": 0.705, "delta_pts": 2.5, "p": 0.01},
                "10:aug:cosine:64:pseudo_labels=1000": {"f1": 0.69, "delta_pts": 1.0, "p": 0.3},
                "10:aug:cosine:64": {"f1": 0.75, "delta_pts": 7.0, "p": 0.001}}
    run = {"key": "recipe-fashion-mnist-100-pseudo-labels", "kind": "recipe",
           "metrics": {"seeds": [0, 1, 2, 3, 4], "variants": variants}}
    status, figure, keys = self_training_f1("fashion-mnist", 100, 0.70)([run])
    assert (status, keys) == ("met", [run["key"]])
    assert figure == ("`10:no:cosine:64:pseudo_labels=1000` 0.7050, +2.50 points over the default's 0.6800 on the "
                      "same labels (p=0.010, 5 seeds)")
    assert self_training_f1("fashion-mnist", 100, 0.71)([run])[0] == "missed"
    augmented = {"key": "recipe-fashion-mnist-100-pseudo-labels-augment", "kind": "recipe",
                 "metrics": {"seeds": [0, 1, 2], "variants": {
                     "10:no:cosine:64": {"f1": 0.67, "delta_pts": None, "p": None},
                     "10:aug:cosine:64:pseudo_labels=1000": {"f1": 0.71, "delta_pts": 4.0, "p": 0.02}}}}
    other = {**augmented, "key": "recipe-fashion-mnist-1000-pseudo-labels"}
    assert self_training_f1("fashion-mnist", 100, 0.70)([run, augmented, other])[2] == [augmented["key"]]
    assert self_training_f1("fashion-mnist", 100, 0.70)([run, other])[2] == [run["key"]]
    assert self_training_f1("cifar10", 100, 0.70)([run])[0] == "not measured"


def test_the_targets_name_the_embedder_that_runs_record() -> None:
    from alkit.strategies.cold_start import DEFAULT_EMBEDDER, embedder_key
    from benchmarks.targets import CURRENT_EMBEDDER

    assert CURRENT_EMBEDDER == DEFAULT_EMBEDDER == embedder_key(None) == embedder_key("pca")


def _end_to_end(arms: dict[str, dict]) -> dict:
    return {"key": "e2e", "kind": "end_to_end", "machine": {"isa": "avx2", "gpu": None, "cores": 2},
            "metrics": {"plain_wall_s": 1000.0, "seeds": [0, 1, 2], "arms": {
                name: {"wall_s": wall, "largest_f1_shortfall_pts": short, "options": options}
                for name, (options, wall, short) in arms.items()}}}


def test_the_end_to_end_target_reads_the_arm_that_ran_todays_defaults() -> None:
    from benchmarks.end_to_end import arm_options, default_arm
    from benchmarks.targets import end_to_end

    evaluate = end_to_end("avx2", 0.5)
    scratch, warm3, warm5 = arm_options("scratch", "auto"), arm_options("warm-3", "auto"), arm_options("warm-5", "auto")
    run = _end_to_end({"alkit scratch": (scratch, 700.0, 0.0), "alkit warm-5": (warm5, 450.0, 0.0),
                       "alkit warm-3": (warm3, 400.0, 0.2)})
    assert default_arm(run["metrics"])[0] == "alkit warm-3"
    assert default_arm({"arms": {"alkit default": {"options": arm_options("default", "auto")}}})[0] == "alkit default"
    assert evaluate([run])[:2] == ("met", "0.40x the plain loop's time; F1 at most 0.2 points under it (3 seeds)")
    run["metrics"]["arms"]["alkit warm-3"]["largest_f1_shortfall_pts"] = 0.4
    assert evaluate([run])[0] == "missed"
    no_default = _end_to_end({"alkit scratch": (scratch, 700.0, 0.0), "alkit fp32": (arm_options("fp32", "auto"), 900.0, 0.0),
                              "alkit bf16": (arm_options("default", "bf16"), 600.0, 0.0)})
    assert default_arm(no_default["metrics"]) is None and evaluate([no_default]) == ("not measured", "–", [])


def test_a_run_with_onednn_capped_below_bf16_counts_only_as_an_avx2_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.common import device_key, machine_info
    from benchmarks.end_to_end import arm_options
    from benchmarks.targets import end_to_end

    run = _end_to_end({"alkit default": (arm_options("default", "auto"), 400.0, 0.1)})
    run["machine"] = {"isa": "avx512-bf16", "isa_cap": "AVX2", "gpu": None, "cores": 2}
    assert end_to_end("avx512-bf16", 0.5)([run]) == ("not measured", "–", [])
    assert end_to_end("avx2", 0.5)([run]) == ("not measured", "–", [])
    assert end_to_end("avx2-stand-in", 0.5)([run])[0] == "met"
    run["metrics"]["arms"]["alkit default"]["largest_f1_shortfall_pts"] = -0.1
    assert end_to_end("avx2-stand-in", 0.5)([run])[1] == (
        "0.40x the plain loop's time; F1 at least 0.1 points over it at every budget (3 seeds)")
    run["machine"]["isa_cap"] = "AVX512_CORE_BF16"  # a cap that keeps bf16 stands in for nothing
    assert end_to_end("avx2-stand-in", 0.5)([run]) == ("not measured", "–", [])

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    info = machine_info()
    assert info["isa_cap"] == "AVX2" and "oneDNN capped at AVX2" in machine_line(info)
    assert device_key("peers", torch.device("cpu")).endswith(f"-cpu-{info['isa']}-onednn-avx2")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert "isa_cap" not in machine_info() and "onednn" not in device_key("peers", torch.device("cpu"))


def test_the_scoring_target_reads_fashion_mnist_runs_only() -> None:
    from benchmarks.targets import scoring_speedup

    def run(key: str, speedup: float, dataset: str | None) -> dict:
        metrics = {"default_path": {"speedup": speedup, "exact": True}}
        if dataset:
            metrics["dataset"] = dataset
        return {"key": key, "kind": "scoring", "command": "python -m benchmarks.scoring",
                "machine": {"isa": "avx512-bf16", "gpu": None, "cores": 2}, "metrics": metrics}

    older, cifar = run("scoring-cpu-avx512-bf16", 2.04, None), run("scoring-cifar10-cpu-avx512-bf16", 1.29, "cifar10")
    assert scoring_speedup("avx512-bf16", 2.5)([older, cifar]) == ("missed", "2.04x, identical selection", [older["key"]])
    fmnist = run("scoring-cpu-avx512-bf16", 2.6, "fashion-mnist")
    assert scoring_speedup("avx512-bf16", 2.5)([cifar, fmnist, cifar])[0] == "met"


def test_markdown_blocks_and_tables_round_trip() -> None:
    body = "Intro line\nsecond line.\n\n| a | b |\n|---|---|\n| 1 | x |\n\nAfter."
    blocks = markdown_blocks(body)
    assert blocks[0] == "Intro line\nsecond line." and blocks[2] == "After."
    assert blocks[1]["columns"] == ["a", "b"] and blocks[1]["rows"] == [["1", "x"]]
    assert md_table(blocks[1]["columns"], blocks[1]["rows"]) == "| a | b |\n|---|---|\n| 1 | x |"
    assert md_table(["n"], [["a|b"]]) == "| n |\n|---|\n| a\\|b |"


@pytest.mark.parametrize(("flags", "isa"), [("fpu avx2 avx512f avx512_bf16", "avx512-bf16"), ("avx2 amx_bf16", "avx512-bf16"),
                                            ("sse4_2 avx2 fma", "avx2"), ("sse4_2", "none")])
def test_cpu_type_comes_from_the_flags(flags: str, isa: str) -> None:
    assert cpu_isa(flags) == isa
    info = {"cpu": "X", "isa": isa, "cores": 2, "memory_gib": 24, "gpu": None, "python": "3.11", "torch": "2", "threads": 2}
    assert machine_line(info).startswith("X [") and "no GPU" in machine_line(info)


def test_results_data_is_valid_json_with_the_required_fields() -> None:
    for path in [*RESULTS.glob("*.json"), *(RESULTS / "archive").glob("*.json")]:
        r = json.loads(path.read_text())
        assert {"key", "kind", "title", "command", "commit", "date", "machine", "blocks", "metrics"} <= set(r), path
        assert r["machine"]["isa"] in ("avx512-bf16", "avx2", "none", "unknown"), path
