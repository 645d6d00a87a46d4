"""Label efficiency: the study's protocol per dataset, summarised against the product targets.

Protocol: the reference CNN and the default recipe, paired seeds, 1,000 random initial labels,
+1,000 per round, all four strategies and the full-data reference (first seed).

    python -m benchmarks.label_efficiency --dataset fashion-mnist --seeds 0,1,2 --max-labels 10000
    python -m benchmarks.label_efficiency --dataset fashion-mnist-imbalanced --seeds 0,1,2
    python -m benchmarks.label_efficiency --dataset cifar10 --seeds 0,1,2 --epochs 20 --augment
    python -m benchmarks.label_efficiency --from-run runs/fmnist   # summarise an existing run folder
    python -m benchmarks.label_efficiency --smoke                   # seconds, for CI (writes nothing)

The run folder (``--out``, default ``runs/bench-<dataset>``) resumes after an interruption, and
the same command with a larger --max-labels, more seeds or strategies extends a finished run.
CIFAR-10 uses 20 epochs with augmentation: the default recipe stays under accuracy 0.70 at 10k
random labels (BENCHMARKS.md, "Training recipe: cifar10, 10,000 labels").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

import alkit
from alkit.models.seeded import INIT_SCHEMES
from alkit.reporting.summary import aubc, curves, labels_to_target, paired_vs
from alkit.storage.run_store import RunStore
from benchmarks.common import command, commit, machine, write_section

MINORITY = (0, 1, 2, 3, 4)


def _at(c, n: int) -> float | None:
    hit = np.flatnonzero(c.n_labeled == n)
    return float(c.mean[hit[0]]) if hit.size else None


def _paired_cells(strategy: str, curve, ref, budgets: list[int]) -> list[str]:
    """The seed-paired difference vs random at each budget, as table cells ("–" where none)."""
    cells = []
    for n in budgets:
        comp = paired_vs(curve, ref, at=n) if ref is not None and strategy != "random" else None
        if comp is None:
            cells.append("–")
        else:
            p_text = f"p={comp.p_value:.3f}" if comp.n_seeds > 1 else "1 seed, no p"
            cells.append(f"{comp.mean_diff * 100:+.2f} pts ({p_text})")
    return cells


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


def summarise(run_dir: Path) -> str:
    with RunStore(run_dir / "runs.sqlite") as store:
        all_rows, full, config = store.rounds(), store.full_data(), store.config() or {}
    out = []
    for ds in sorted({r["dataset"] for r in all_rows}):
        rows, partial = complete_seeds(all_rows, ds)
        f1 = curves(rows, ds, "f1_macro")
        acc = curves(rows, ds, "accuracy")
        budgets = [n for n in (2000, 5000, 10000) if any(n in c.n_labeled for c in f1.values())]
        ref = f1.get("random")
        ref_final = float(ref.mean[-1]) if ref is not None else None
        head = ["strategy", "seeds"] + [f"F1 @{n // 1000}k" for n in budgets] + [f"acc @{n // 1000}k" for n in budgets] \
            + ["AUBC", "labels to random's final F1"] + [f"ΔF1 vs random @{n // 1000}k (p)" for n in budgets]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s, c in sorted(f1.items()):
            cells = [s, str(len(c.per_seed))]
            cells += [f"{v:.4f}" if (v := _at(c, n)) is not None else "–" for n in budgets]
            cells += [f"{v:.4f}" if (v := _at(acc[s], n)) is not None else "–" for n in budgets]
            cells.append(f"{aubc(c.n_labeled, c.mean):.4f}")
            reach = labels_to_target(c.n_labeled, c.mean, ref_final) if ref_final is not None else None
            cells.append(f"{reach:,}" if reach else "not reached")
            cells += _paired_cells(s, c, ref, budgets)
            lines.append("| " + " | ".join(cells) + " |")
        minority = _minority_recall_table(rows, ds, budgets)
        full_ds = [r for r in full if r["dataset"] == ds]
        full_line = (f"Full-data reference ({full_ds[0]['n_labeled']:,} labels): macro F1 "
                     f"{np.mean([r['f1_macro'] for r in full_ds]):.4f}, accuracy {np.mean([r['accuracy'] for r in full_ds]):.4f}."
                     if full_ds else "Full-data reference: not run.")
        left_out = [f"Seeds {partial} have not finished every round and are left out."] if partial else []
        out += [f"### {ds}", "", *lines, "", full_line, *left_out, ""]
        if minority:
            out += ["Minority-class recall (mean recall of classes 0–4, mean over seeds; Δ is paired by seed):", "",
                    *minority, ""]
    loop, train = config.get("loop", {}), config.get("train", {})
    settings = (f"initial {loop.get('initial')}, +{loop.get('query')} per round, {loop.get('rounds')} rounds, "
                f"candidates {loop.get('candidates') or 'whole pool'}, epochs {train.get('epochs')}, batch "
                f"{train.get('batch_size')}, lr {train.get('lr')} ({train.get('lr_schedule', 'constant')}), init {train.get('init', 'glorot')}, "
                f"augment {train.get('augment')}, seeds {config.get('seeds')}")
    return f"Run folder `{run_dir}` ({settings}).\n\n" + "\n".join(out)


def _minority_recall_table(rows: list[dict[str, Any]], dataset: str, budgets: list[int]) -> list[str]:
    if "imbalanced" not in dataset and "[" not in dataset:
        return []
    extended = [{**r, "minority_recall": float(np.mean([r["per_class"]["recall"][c] for c in MINORITY]))}
                for r in rows if r["dataset"] == dataset and r.get("per_class")]
    rec = curves(extended, dataset, "minority_recall")
    ref = rec.get("random")
    head = ["strategy"] + [f"recall @{n // 1000}k" for n in budgets] \
        + [f"Δ vs random @{n // 1000}k (p)" for n in budgets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s, c in sorted(rec.items()):
        cells = [s] + [f"{v:.4f}" if (v := _at(c, n)) is not None else "–" for n in budgets]
        cells += _paired_cells(s, c, ref, budgets)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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
    ap.add_argument("--full-data", default="first-seed")
    ap.add_argument("--out", default=None)
    ap.add_argument("--workers", type=int, default=1, help="processes running seeds in parallel (same results)")
    ap.add_argument("--from-run", type=Path, help="summarise this run folder instead of running")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.from_run:
        run_dir = args.from_run
    else:
        kw: dict[str, Any] = dict(initial=1000, query=1000, rounds=(args.max_labels - 1000) // 1000,
                                  candidates=args.candidates, epochs=args.epochs, batch_size=args.batch_size,
                                  lr_schedule=args.lr_schedule, init=args.init,
                                  augment=args.augment, full_data=args.full_data, workers=args.workers)
        if args.smoke:
            kw.update(initial=60, query=60, rounds=1, candidates=600, epochs=1, full_data="none")
        run_dir = Path(args.out or f"runs/bench-{args.dataset}" + ("-smoke" if args.smoke else ""))
        alkit.run(args.dataset, [s for s in args.strategies.split(",") if s], [int(s) for s in args.seeds.split(",")],
                  out=run_dir, progress=not args.smoke, **kw)
    body = (f"## Label efficiency: {run_dir.name}\n\nCommand: `{command()}` · commit `{commit()}` · "
            f"{time.strftime('%Y-%m-%d')}\nMachine: {machine()}\n\n" + summarise(run_dir))
    print(body)
    if not args.smoke:
        write_section(f"label-efficiency-{run_dir.name}", body)


if __name__ == "__main__":
    main()
