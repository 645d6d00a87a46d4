"""Label efficiency: the study's protocol per dataset, summarised against the product targets.

Protocol: the reference CNN and the default recipe, paired seeds, 1,000 random initial labels,
+1,000 per round, all four strategies and the full-data reference (first seed). Both protocols retrain
every round from fresh weights (``warm_start=False``), as the papers they follow do; alkit's default
continues from the last round's model instead. ``--warm-start`` runs a protocol that way, into its own
folders and result (``...-warm``), to check that the strategies rank the same under alkit's default.

    python -m benchmarks.label_efficiency --dataset fashion-mnist --seeds 0,1,2 --max-labels 10000
    python -m benchmarks.label_efficiency --dataset fashion-mnist-imbalanced --seeds 0,1,2
    python -m benchmarks.label_efficiency --dataset cifar10 --seeds 0,1,2 --epochs 20 --augment
    python -m benchmarks.label_efficiency --dataset cifar10 --strategies random,margin,bald,coreset,badge --epochs 20 \
        --augment --warm-start --full-data none --workers 15 --unit strategy --out runs/bench-cifar10-field-warm  # GPU
    python -m benchmarks.label_efficiency --from-run runs/fmnist   # summarise an existing run folder
    python -m benchmarks.label_efficiency --protocol low-budget --seeds 0,1,2,3,4
    python -m benchmarks.label_efficiency --protocol low-budget --schedule 20x4 --arms random,typiclust,tcm --tag window
    python -m benchmarks.label_efficiency --protocol low-budget --schedule 20x4 --arms random --initial-sets random \
        --augment --pseudo-labels 1000 --tag window-self-training --seeds 0,1,2,3,4
    python -m benchmarks.label_efficiency --smoke                   # seconds, for CI (writes nothing)

The low-budget protocol: 20 random initial labels, +20 per round up to 200, then +100 per round up to
500 (``--schedule``, default ``20x9,100x3``: the loop's query schedule; a folder run to 200 with an
older version grows into it), ``random`` and ``margin`` from the random initial set, ``random`` from
each label-free initial set (TypiClust and ProbCover on the default embedder), and from the TypiClust
set the strategy ``switch:first=typiclust:then=margin:at=200`` (TCM: TypiClust on the model's embeddings
to 200 labels, margin after), all with the default training rule; plus the 200-label ``--epochs 2``
check. It summarises F1 per budget, AUBC and the seed-paired differences against random sampling from
a random initial set, and evaluates the issue's targets.

The run folder (``--out``, default ``runs/bench-<dataset>``) resumes after an interruption, and
the same command with a larger --max-labels, more seeds or strategies extends a finished run.
CIFAR-10 uses 20 epochs with augmentation: the default recipe stays under accuracy 0.70 at 10k
random labels (BENCHMARKS.md, "Training recipe: cifar10, 10,000 labels").
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

import alkit
from alkit.loop.config import LoopConfig
from alkit.models.seeded import INIT_SCHEMES
from alkit.reporting.summary import aubc, curves, labels_to_target, p_text, paired_vs, queried_class_counts
from alkit.storage.run_store import RunStore
from alkit.strategies import StrategySpec
from alkit.strategies.cold_start import DEFAULT_EMBEDDER
from alkit.training.config import CLASS_BALANCES, WARM_EPOCHS_FRACTION
from benchmarks.common import save_result, table
from benchmarks.render import render_blocks

MINORITY = (0, 1, 2, 3, 4)
MINORITY_POOL_SHARE = 3_000 / 33_000  # fashion-mnist-imbalanced: classes 0-4 keep 600 of 6,000


def _at(c, n: int) -> float | None:
    hit = np.flatnonzero(c.n_labeled == n)
    return float(c.mean[hit[0]]) if hit.size else None


def _paired(strategy: str, curve, ref, budgets: list[int]) -> dict[str, list[float | None] | None]:
    """The seed-paired difference vs random at each budget, in points, with its p-value (None for 1 seed)."""
    out: dict[str, list[float | None] | None] = {}
    for n in budgets:
        comp = paired_vs(curve, ref, at=n) if ref is not None and strategy != "random" else None
        out[str(n)] = None if comp is None else [round(comp.mean_diff * 100, 2),
                                                 comp.p_value if comp.n_seeds > 1 else None]
    return out


def _delta_cell(d: list[float | None] | None) -> str:
    if d is None:
        return "–"
    return f"{d[0]:+.2f} pts ({p_text(d[1], '1 seed, no p')})"


def finished_strategies(rows: list[dict[str, Any]], dataset: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The dataset's rows without the strategies that no seed ran to the last round, and those strategies with
    the most labels they reached: a run stopped part-way keeps its finished strategies comparable."""
    mine = [r for r in rows if r["dataset"] == dataset]
    final = max((r["round"] for r in mine), default=0)
    reached: dict[str, int] = {}
    for r in mine:
        reached[r["strategy"]] = max(reached.get(r["strategy"], 0), r["n_labeled"])
    done = {r["strategy"] for r in mine if r["round"] == final}
    return [r for r in mine if r["strategy"] in done], {s: n for s, n in sorted(reached.items()) if s not in done}


def complete_seeds(rows: list[dict[str, Any]], dataset: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows of seeds that finished every round for every strategy, and the seeds left out.

    A run stopped part-way (or being extended) has a last seed with fewer rounds; keeping it
    would cut every curve to that seed's budgets.
    """
    count: dict[tuple[str, int], int] = {}
    for r in rows:
        if r["dataset"] == dataset:
            count[(r["strategy"], r["seed"])] = count.get((r["strategy"], r["seed"]), 0) + 1
    most = max(count.values(), default=0)
    partial = sorted({seed for (_, seed), n in count.items() if n < most})
    return [r for r in rows if r["dataset"] == dataset and r["seed"] not in partial], partial


def summarise(run_dir: Path, budgets_wanted: tuple[int, ...] = (2000, 5000, 10000)
              ) -> tuple[list[str | dict[str, Any]], dict[str, Any]]:
    """The section's blocks (settings, tables per dataset) and its metrics (what the headline reads)."""
    with RunStore(run_dir / "runs.sqlite") as store:
        all_rows, full, config, classes = store.rounds(), store.full_data(), store.config() or {}, store.classes()
    blocks: list[str | dict[str, Any]] = []
    train = config.get("train", {})
    metrics: dict[str, Any] = {"datasets": {}, "warm_start": bool(train.get("warm_start", False)),
                               "query": (config.get("loop") or {}).get("query", 1000)}
    for ds in sorted({r["dataset"] for r in all_rows}):
        rows, stopped = finished_strategies(all_rows, ds)
        rows, partial = complete_seeds(rows, ds)
        f1 = curves(rows, ds, "f1_macro")
        acc = curves(rows, ds, "accuracy")
        budgets = [n for n in budgets_wanted if any(n in c.n_labeled for c in f1.values())]
        ref = f1.get("random")
        ref_final = float(ref.mean[-1]) if ref is not None else None
        summary: dict[str, Any] = {"max_labels": int(max(c.n_labeled[-1] for c in f1.values())), "strategies": {}}
        for s, c in sorted(f1.items()):
            reach = labels_to_target(c.n_labeled, c.mean, ref_final) if ref_final is not None else None
            summary["strategies"][s] = {
                "seeds": len(c.per_seed), "curve": {str(int(n)): round(float(v), 4) for n, v in zip(c.n_labeled, c.mean)},
                "f1": {str(n): _at(c, n) for n in budgets}, "accuracy": {str(n): _at(acc[s], n) for n in budgets},
                "aubc": aubc(c.n_labeled, c.mean), "labels_to_random_final": int(reach) if reach else None,
                "delta_f1": _paired(s, c, ref, budgets)}
        _minority_recall(rows, ds, budgets, summary)
        full_ds = [r for r in full if r["dataset"] == ds]
        if full_ds:
            summary["full_data"] = {"n_labeled": full_ds[0]["n_labeled"], "f1": float(np.mean([r["f1_macro"] for r in full_ds])),
                                    "accuracy": float(np.mean([r["accuracy"] for r in full_ds]))}
        metrics["datasets"][ds] = summary
        blocks += [f"### {ds}", _main_table(summary, budgets)]
        fd = summary.get("full_data")
        blocks.append(f"Full-data reference ({fd['n_labeled']:,} labels): macro F1 {fd['f1']:.4f}, accuracy "
                      f"{fd['accuracy']:.4f}." if fd else "Full-data reference: not run.")
        if partial:
            blocks.append(f"Seeds {partial} have not finished every round and are left out.")
        if stopped:
            summary["stopped"] = stopped
            blocks.append("Stopped before the last round and left out: " + ", ".join(
                f"{s} (to {n:,} labels)" for s, n in stopped.items()) + ".")
        top = summary["max_labels"]
        by_class = per_class(rows, ds, top)
        for name, figures in by_class.items():
            summary["strategies"][name].update(figures)
        if by_class:
            blocks += [f"Per class: each strategy's queries after the shared initial set, up to {top:,} labels (mean per "
                       f"seed), and its recall at {top:,} (mean over seeds):", _per_class_table(by_class, classes.get(ds))]
        if "minority_recall" in next(iter(summary["strategies"].values())):
            pool = (f" (they are {MINORITY_POOL_SHARE:.1%} of the pool, the share random sampling converges to)"
                    if ds == "fashion-mnist-imbalanced" else "")
            blocks += ["Minority-class recall (mean recall of classes 0–4, mean over seeds; Δ is paired by seed), and the "
                       f"share of classes 0–4 among each strategy's queries after the shared initial set{pool}:",
                       _minority_table(summary, budgets)]
    loop = config.get("loop", {})
    settings = (f"initial {loop.get('initial')}, +{loop.get('query')} per round, {loop.get('rounds')} rounds, "
                f"initial set {loop.get('initial_set', 'random')}, candidates {loop.get('candidates') or 'whole pool'}, "
                f"epochs {train.get('epochs')}, min_steps {train.get('min_steps', 0)}, batch {train.get('batch_size')}, "
                f"lr {train.get('lr')} ({train.get('lr_schedule', 'constant')}), init {train.get('init', 'glorot')}, "
                f"augment {train.get('augment')}, class balance {train.get('class_balance', 'none')}, "
                + (f"warm start ({train.get('warm_epochs')} epochs per later round)" if metrics["warm_start"]
                   else "every round from fresh weights") + f", seeds {config.get('seeds')}")
    return [f"Run folder `{run_dir}` ({settings}).", *blocks], metrics


def _main_table(summary: dict[str, Any], budgets: list[int]) -> dict[str, Any]:
    k = [f"@{n // 1000}k" if n % 1000 == 0 else f"@{n}" for n in budgets]
    columns = (["strategy", "seeds"] + [f"F1 {b}" for b in k] + [f"acc {b}" for b in k]
               + ["AUBC", "labels to random's final F1"] + [f"ΔF1 vs random {b} (p)" for b in k])
    rows = []
    for name, st in summary["strategies"].items():
        reach = st["labels_to_random_final"]
        rows.append([name, st["seeds"]] + [st["f1"][str(n)] for n in budgets] + [st["accuracy"][str(n)] for n in budgets]
                    + [st["aubc"], f"{reach:,}" if reach else "not reached"]
                    + [_delta_cell(st["delta_f1"][str(n)]) for n in budgets])
    return table(columns, rows, [None, None] + [".4f"] * (2 * len(budgets)) + [".4f", None] + [None] * len(budgets))


def per_class(rows: list[dict[str, Any]], dataset: str, budget: int) -> dict[str, dict[str, list[float]]]:
    """Per strategy, the classes of its queries up to ``budget`` (``queries_per_class``, mean per seed; the shared
    initial set is in no round's ``query_hist``) and its recall per class at ``budget`` (``recall_per_class``, mean
    over seeds). A strategy with a seed that lacks either is left out."""
    out: dict[str, dict[str, list[float]]] = {}
    for strategy in sorted({r["strategy"] for r in rows if r["dataset"] == dataset}):
        mine = [r for r in rows if r["dataset"] == dataset and r["strategy"] == strategy]
        hists = queried_per_seed(mine, dataset, strategy, budget)
        at = [r for r in mine if r["n_labeled"] == budget and r.get("per_class")]
        if hists is None or len(at) != len(hists):
            continue
        queries = np.mean(hists, axis=0)
        recall = np.mean([r["per_class"]["recall"] for r in at], axis=0)
        out[strategy] = {"queries_per_class": [round(float(q), 1) for q in queries],
                         "recall_per_class": [round(float(v), 4) for v in recall]}
    return out


def _per_class_table(by_class: dict[str, dict[str, list[float]]], classes: list[str] | None) -> dict[str, Any]:
    n = len(next(iter(by_class.values()))["recall_per_class"])
    names = classes if classes and len(classes) == n else [str(c) for c in range(n)]
    rows = []
    for name, figures in by_class.items():
        rows.append([name, "queries"] + [f"{q:,.0f}" for q in figures["queries_per_class"]])
        rows.append([name, "recall"] + [f"{v:.3f}" for v in figures["recall_per_class"]])
    return table(["strategy", "per class", *names], rows)


def _minority_recall(rows: list[dict[str, Any]], dataset: str, budgets: list[int], summary: dict[str, Any]) -> None:
    """Adds each strategy's minority recall (classes 0–4) and its paired gain, on imbalanced datasets."""
    if "imbalanced" not in dataset and "[" not in dataset:
        return
    extended = [{**r, "minority_recall": float(np.mean([r["per_class"]["recall"][c] for c in MINORITY]))}
                for r in rows if r["dataset"] == dataset and r.get("per_class")]
    rec = curves(extended, dataset, "minority_recall")
    ref = rec.get("random")
    share = minority_query_share(rows, dataset, budgets)
    for s, c in rec.items():
        summary["strategies"][s]["minority_recall"] = {str(n): _at(c, n) for n in budgets}
        summary["strategies"][s]["delta_minority_recall"] = _paired(s, c, ref, budgets)
        summary["strategies"][s]["minority_query_share"] = share.get(s, {str(n): None for n in budgets})


def minority_query_share(rows: list[dict[str, Any]], dataset: str, budgets: list[int]
                         ) -> dict[str, dict[str, float | None]]:
    """Per strategy and budget, the share of minority classes (0–4) among the labels it queried on the way there.

    It reads each round's stored ``query_hist`` (the classes of that round's queries) up to the budget, so the
    shared initial set is left out, and averages the share over seeds. None where a seed lacks the histograms.
    """
    rows = [r for r in rows if r["dataset"] == dataset]
    out: dict[str, dict[str, float | None]] = {}
    for strategy in sorted({r["strategy"] for r in rows}):
        mine = [r for r in rows if r["strategy"] == strategy]
        out[strategy] = {}
        for n in budgets:
            hists = queried_per_seed(mine, dataset, strategy, n)
            out[strategy][str(n)] = None if hists is None else float(np.mean(
                [h[list(MINORITY)].sum() / h.sum() if h.sum() else 0.0 for h in hists]))
    return out


def queried_per_seed(rows: list[dict[str, Any]], dataset: str, strategy: str, budget: int) -> list[np.ndarray] | None:
    """Per seed, the class counts of the labels ``strategy`` queried on ``dataset`` on the way to ``budget`` (the
    ``query_hist`` of every round of ``rows``, its rows, below it; the shared initial set is in none). None where a
    seed has no round below ``budget`` or lacks a histogram."""
    out = []
    for seed in sorted({r["seed"] for r in rows}):
        before = [r for r in rows if r["seed"] == seed and r["n_labeled"] < budget]
        if not before or any(r.get("query_hist") is None for r in before):
            return None
        out.append(queried_class_counts(before, dataset)[strategy])
    return out


def _minority_table(summary: dict[str, Any], budgets: list[int]) -> dict[str, Any]:
    k = [f"@{n // 1000}k" if n % 1000 == 0 else f"@{n}" for n in budgets]
    columns = (["strategy"] + [f"recall {b}" for b in k] + [f"Δ vs random {b} (p)" for b in k]
               + [f"minority share of queries {b}" for b in k])
    rows = [[name] + [st["minority_recall"][str(n)] for n in budgets]
            + [_delta_cell(st["delta_minority_recall"][str(n)]) for n in budgets]
            + [_share_cell(st.get("minority_query_share", {}).get(str(n))) for n in budgets]
            for name, st in summary["strategies"].items()]
    return table(columns, rows, [None] + [".4f"] * len(budgets) + [None] * (2 * len(budgets)))


def _share_cell(share: float | None) -> str:
    return "–" if share is None else f"{share:.1%}"


TCM = StrategySpec.parse("switch:first=typiclust:then=margin:at=200").label
LOW_BUDGET_ARMS = {"random": ("random", "random"), "margin": ("random", "margin"),
                   "typiclust, then random": ("typiclust", "random"), "probcover, then random": ("probcover", "random"),
                   "typiclust, then TCM": ("typiclust", TCM)}
ARM_NAMES = {"random": "random", "margin": "margin", "typiclust": "typiclust, then random",
             "probcover": "probcover, then random", "tcm": "typiclust, then TCM"}  # --arms
LABEL_FREE_WINDOW = (20, 100)


def low_budget(args: argparse.Namespace) -> None:
    """Run (or resume) the low-budget protocol's folders, then summarise them as one result."""
    seeds = [int(x) for x in args.seeds.split(",")]
    schedule = args.schedule or "20x9,100x3"
    warm = "-warm" if args.warm_start else ""
    tag = f"-{args.tag}" if args.tag else ""
    if args.pseudo_labels < 0:
        raise SystemExit(f"--pseudo-labels: {args.pseudo_labels} must be >= 0 (images per class; 0 is off)")
    unknown = set(args.arms.split(",")) - set(ARM_NAMES)
    if unknown:
        raise SystemExit(f"--arms: {', '.join(sorted(unknown))} unknown; choose from {', '.join(ARM_NAMES)}")
    arms = {ARM_NAMES[a] for a in args.arms.split(",")} | {"random"}  # random from a random set: the reference
    base = Path(args.out or f"runs/low-budget-{args.dataset}{warm}{tag}")
    recipe = {"augment": args.augment, "pseudo_labels": args.pseudo_labels}
    common: dict[str, Any] = dict(initial=20, schedule=schedule, full_data="none", warm_start=args.warm_start,
                                  progress=not args.smoke, report=False, **recipe)
    if args.smoke:
        seeds, schedule = [0], "20x1"
        common.update(schedule=schedule, candidates=600, epochs=1, min_steps=5)
    top = LoopConfig(initial=20, schedule=schedule).final_labels()
    folders = {}
    for initial_set in args.initial_sets.split(","):
        if initial_set not in ("random", "typiclust", "probcover"):
            raise SystemExit(f"--initial-sets: '{initial_set}' is not random, typiclust or probcover")
        strategies = sorted({s for arm, (init, s) in LOW_BUDGET_ARMS.items() if init == initial_set and arm in arms})
        if not strategies:
            continue
        folders[initial_set] = base.with_name(base.name + ("" if initial_set == "random" else f"-{initial_set}"))
        if not args.summarise_only:
            alkit.run(args.dataset, strategies, seeds, out=folders[initial_set], initial_set=initial_set, **common)
    check = base.with_name(base.name + "-epochs2")
    opt_in = any(recipe.values())
    if not args.summarise_only and not args.warm_start and not opt_in:  # one round: warm start changes nothing
        alkit.run(args.dataset, ["random"], seeds, out=check, initial=200 if not args.smoke else 40, rounds=0,
                  epochs=2 if not args.smoke else 1, full_data="none", progress=False, report=False,
                  **({"min_steps": 5} if args.smoke else {}))
    rows = []
    for arm, (initial_set, strategy) in LOW_BUDGET_ARMS.items():
        if arm in arms and initial_set in folders and (folders[initial_set] / "runs.sqlite").exists():
            with RunStore(folders[initial_set] / "runs.sqlite") as store:
                arm_rows = [{**r, "strategy": arm} for r in store.rounds() if r["strategy"] == strategy]
            rows += complete_seeds(arm_rows, args.dataset)[0]
    epochs2: list[tuple[int, float]] = []
    if (check / "runs.sqlite").exists():
        with RunStore(check / "runs.sqlite") as store:
            epochs2 = [(r["n_labeled"], r["f1_macro"]) for r in store.rounds()]
    blocks, metrics = low_budget_summary(rows, args.dataset, epochs2, folders, check, args.warm_start,
                                         recipe if opt_in else None)
    print(render_blocks(blocks))
    if not args.smoke:
        save_result(f"label-efficiency-low-budget-{args.dataset}{warm}{tag}", "label_efficiency",
                    f"Low-budget protocol: {args.dataset}, 20 to {top} labels"
                    + (", warm start" if args.warm_start else "") + (f" ({args.tag})" if args.tag else "")
                    + (f", with {_recipe_options(recipe).replace('`', '')}" if opt_in else ""),
                    blocks, metrics)


def _recipe_options(recipe: dict[str, Any]) -> str:
    return " ".join(["`--augment`"] * bool(recipe["augment"])
                    + [f"`--pseudo-labels {recipe['pseudo_labels']}`"] * bool(recipe["pseudo_labels"]))


def low_budget_summary(rows: list[dict[str, Any]], dataset: str, epochs2: list[tuple[int, float]], folders: dict[str, Path],
                       check: Path, warm_start: bool = False, recipe: dict[str, Any] | None = None
                       ) -> tuple[list[str | dict[str, Any]], dict[str, Any]]:
    """The protocol's tables and target figures; ``recipe`` names opt-in training options every arm ran with
    (None: the default recipe), recorded so the default-recipe targets never read such a run."""
    f1 = curves(rows, dataset, "f1_macro")
    ref = f1["random"]
    f1 = {arm: c for arm, c in f1.items() if np.array_equal(c.n_labeled, ref.n_labeled)}  # arms not yet finished: left out
    budgets = [int(n) for n in ref.n_labeled]
    k = [f"@{n}" for n in budgets]
    curve_rows = [[arm, len(c.per_seed)] + [float(v) for v in c.mean] + [aubc(c.n_labeled, c.mean)]
                  for arm, c in f1.items()]
    diff_rows, deltas = [], {}
    for arm, c in f1.items():
        if arm == "random":
            continue
        deltas[arm] = _paired(arm, c, ref, budgets)
        area = paired_vs(c, ref, use_aubc=True)
        diff_rows.append([arm] + [_delta_cell(deltas[arm][str(n)]) for n in budgets]
                         + [_delta_cell([round(area.mean_diff * 100, 2), area.p_value if area.n_seeds > 1 else None])])
    lo, hi = LABEL_FREE_WINDOW
    window = [i for i, n in enumerate(budgets) if lo <= n <= hi]
    label_free = {}
    for arm in ("typiclust, then random", "probcover, then random"):
        if arm in f1:
            c = f1[arm]
            per_seed = [float(np.mean(c.per_seed[s][window] - ref.per_seed[s][window])) * 100
                        for s in sorted(set(ref.per_seed) & set(c.per_seed))]
            p = float(stats.ttest_1samp(per_seed, 0.0).pvalue) if len(per_seed) > 1 else None
            label_free[arm] = (float(np.mean(per_seed)), p)
    best_free = max(label_free, key=lambda a: label_free[a][0]) if label_free else None
    random_100 = float(ref.mean[budgets.index(100)]) if 100 in budgets else None
    margin_floor = min((deltas["margin"][str(n)][0], n) for n in budgets if n >= 100) if "margin" in deltas and \
        any(n >= 100 for n in budgets) else None
    targets: dict[str, Any] = {}
    if random_100 is not None:
        targets["random_at_100"] = {"status": "met" if random_100 >= 0.70 else "missed",
                                    "figure": f"{random_100:.4f} ({len(ref.per_seed)} seeds)"}
    if epochs2:
        e2 = float(np.mean([f for _, f in epochs2]))
        targets["epochs2_at_200"] = {"status": "met" if e2 >= 0.60 else "missed",
                                     "figure": f"{e2:.4f} ({len(epochs2)} seeds)"}
    if best_free:
        gain, p = label_free[best_free]
        targets["label_free_gain"] = {"status": "met" if gain >= 3 and p is not None and p < 0.05 else "missed",
                                      "figure": f"{best_free.split(',')[0]} {gain:+.2f} points, mean over {lo}–{hi} "
                                                f"labels ({p_text(p)})"}
    if margin_floor is not None:
        targets["margin_floor"] = {"status": "met" if margin_floor[0] >= -1 else "missed",
                                   "figure": f"lowest {margin_floor[0]:+.2f} points (at {margin_floor[1]})"}
    blocks: list[str | dict[str, Any]] = [
        "Run folders: " + ", ".join(f"`{p}`" for p in folders.values())
        + ("" if warm_start or recipe else f", and `{check}` (the `--epochs 2` check)") + ". "
        "Every arm trains with the default rule (at least 50 optimizer steps per epoch, BatchNorm re-estimated on "
        "the labeled images) and scores the whole pool; the label-free initial sets use the default embedder (PCA of "
        "the standardised pixels, each row scaled to unit length). "
        + (f"Every round after the first continues from the last round's model for {WARM_EPOCHS_FRACTION:.0%} of the "
           "epochs (warm start, alkit's default)." if warm_start else "Every round retrains from fresh weights.")
        + (f" Every arm also trains with {_recipe_options(recipe)}, options that are off by default."
           if recipe else ""),
        f"Macro-F1 on the test set, mean over seeds, at each budget; AUBC over {budgets[0]}–{budgets[-1]}:",
        table(["arm", "seeds", *[f"F1 {b}" for b in k], "AUBC"], curve_rows,
              [None, None, *[".4f"] * len(budgets), ".4f"]),
    ]
    if diff_rows:
        blocks += ["Seed-paired difference against random sampling from a random initial set, in F1 points (p from a "
                   "paired t-test):", table(["arm", *[f"Δ {b}" for b in k], "Δ AUBC"], diff_rows)]
    if label_free:
        blocks.append(f"Label-free initial sets, mean paired gain over {lo}–{hi} labels: " + "; ".join(
            f"{arm.split(',')[0]} {g:+.2f} points ({p_text(p)})"
            for arm, (g, p) in label_free.items()) + ".")
    if epochs2:
        n = epochs2[0][0]
        blocks.append(f"The `--epochs 2` check (`alkit run --initial {n} --rounds 0 --epochs 2`; the rule makes that at "
                      f"least 100 optimizer steps): macro-F1 {np.mean([f for _, f in epochs2]):.4f} at {n} labels, per seed "
                      + ", ".join(f"{v:.4f}" for _, v in epochs2) + ".")
    summary = {"max_labels": budgets[-1], "strategies": {
        arm: {"seeds": len(c.per_seed), "curve": {str(n): round(float(v), 4) for n, v in zip(budgets, c.mean)},
              "f1": {str(n): float(v) for n, v in zip(budgets, c.mean)}, "aubc": aubc(c.n_labeled, c.mean),
              "labels_to_random_final": labels_to_target(c.n_labeled, c.mean, float(ref.mean[-1])),
              "delta_f1": deltas.get(arm, {str(n): None for n in budgets})} for arm, c in f1.items()}}
    return blocks, {"low_budget": targets, "low_budget_curves": {dataset: summary}, "warm_start": warm_start,
                    "embedder": DEFAULT_EMBEDDER, "recipe": recipe or {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--max-labels", type=int, default=10_000)
    ap.add_argument("--strategies", default="random,margin,entropy,least-confidence")
    ap.add_argument("--candidates", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr-schedule", default="cosine", choices=["constant", "cosine"])
    ap.add_argument("--init", default="torch", choices=INIT_SCHEMES,
                    help="initial weights; glorot resumes run folders made before torch became the default")
    ap.add_argument("--augment", action="store_true")
    ap.add_argument("--pseudo-labels", type=int, default=0,
                    help="low-budget protocol: self-training, as alkit run --pseudo-labels "
                         "(with --tag: its own result)")
    ap.add_argument("--class-balance", default="none", choices=CLASS_BALANCES,
                    help="the loss's class balance for every strategy (alkit run --class-balance)")
    ap.add_argument("--full-data", default="first-seed")
    ap.add_argument("--out", default=None)
    ap.add_argument("--query", type=int, default=1000,
                    help="standard protocol: labels per round (default 1000; 500 halves the query batch)")
    ap.add_argument("--workers", type=int, default=1, help="processes running units in parallel (same results)")
    ap.add_argument("--unit", choices=["seed", "strategy"], default="seed",
                    help="one unit of parallel work per seed, or per (seed, strategy) for more workers than seeds "
                         "(alkit run --unit)")
    ap.add_argument("--from-run", type=Path, help="summarise this run folder instead of running")
    ap.add_argument("--machine-from", type=Path,
                    help="with --from-run: record the machine and commit of this result file instead of this "
                         "machine's, for a folder whose rounds ran there (e.g. on a GPU machine, beside that result)")
    ap.add_argument("--protocol", choices=["standard", "low-budget"], default="standard",
                    help="standard: 1k initial, +1k per round; low-budget: 20 initial, +20 per round to 200, "
                         "+100 to 500 (see above)")
    ap.add_argument("--schedule", help="low-budget protocol: the query schedule after 20 initial labels "
                                       "(default 20x9,100x3: +20 per round to 200, then +100 to 500)")
    ap.add_argument("--initial-sets", default="random,typiclust,probcover",
                    help="low-budget protocol: the initial sets whose arms run (default: all three)")
    ap.add_argument("--arms", default=",".join(ARM_NAMES),
                    help="low-budget protocol: the arms to run, from " + ", ".join(ARM_NAMES)
                         + " (default: all; random always runs, as the reference)")
    ap.add_argument("--tag", default="",
                    help="low-budget protocol: a suffix for its folders and result, for a variant run beside the main one")
    ap.add_argument("--warm-start", action="store_true",
                    help="continue each round from the last model, as alkit's default does, into -warm folders")
    ap.add_argument("--summarise-only", action="store_true",
                    help="low-budget protocol: summarise the seeds its folders have finished, without running")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.protocol == "low-budget":
        low_budget(args)
        return
    if args.from_run:
        run_dir = args.from_run
        if not (run_dir / "runs.sqlite").is_file():
            raise SystemExit(f"--from-run: {run_dir} has no runs.sqlite; give the folder of an alkit run (its --out)")
    else:
        kw: dict[str, Any] = dict(initial=1000, query=args.query, rounds=(args.max_labels - 1000) // args.query,
                                  candidates=args.candidates, epochs=args.epochs, batch_size=args.batch_size,
                                  lr_schedule=args.lr_schedule, init=args.init,
                                  augment=args.augment, class_balance=args.class_balance,
                                  full_data=args.full_data, warm_start=args.warm_start,
                                  workers=args.workers, unit=args.unit)
        if args.smoke:
            kw.update(initial=60, query=60, rounds=1, candidates=600, epochs=1, min_steps=0, full_data="none")
        run_dir = Path(args.out or f"runs/bench-{args.dataset}" + ("-warm" if args.warm_start else "")
                       + ("-smoke" if args.smoke else ""))
        alkit.run(args.dataset, [s for s in args.strategies.split(",") if s], [int(s) for s in args.seeds.split(",")],
                  out=run_dir, progress=not args.smoke, **kw)
    blocks, metrics = summarise(run_dir)
    print(render_blocks(blocks))
    if not args.smoke:
        save_result(f"label-efficiency-{run_dir.name}", "label_efficiency", f"Label efficiency: {run_dir.name}",
                    blocks, metrics, ran_on=json.loads(args.machine_from.read_text()) if args.machine_from else None)


if __name__ == "__main__":
    main()
