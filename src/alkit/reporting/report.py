"""The run report: figures plus summary tables, as self-contained HTML and as Markdown."""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from alkit.errors import RunStoreError
from alkit.reporting.plots import learning_curve, query_histogram
from alkit.reporting.summary import curves, paired_vs, queried_class_counts, summary_table
from alkit.storage.run_store import RunStore

CURVE_METRICS = ("f1_macro", "accuracy", "balanced_accuracy")
COLUMNS = [("strategy", "strategy"), ("n_labeled", "labels"), ("seeds", "seeds"), ("precision_macro", "precision"),
           ("recall_macro", "recall"), ("f1_macro", "F1"), ("f1_std", "F1 std"), ("accuracy", "accuracy"),
           ("aubc", "AUBC"), ("labels_to_random_final", "labels to random's final F1"),
           ("labels_to_99pct_full", "labels to 99% of full-data F1"), ("diff_vs_random", "ΔF1 vs random"),
           ("p_value", "p (paired t)"), ("aubc_diff_vs_random", "ΔAUBC vs random"), ("aubc_p_value", "p AUBC")]


WARM_START_CAVEAT = ("Rounds after the first continued from the previous round's model (warm start, the default). "
                     "Random sampling measured lower that way than retrained from scratch, so these differences vs "
                     "random can run larger than in the papers' protocol; rerun with --no-warm-start "
                     "to compare strategies that way (BENCHMARKS.md, label-efficiency-bench-fashion-mnist-warm).")


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        return "nan" if np.isnan(v) else f"{v:.4f}"
    return f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)


def _diff_table(rows: list[dict[str, Any]], dataset: str) -> list[list[str]]:
    f1 = curves(rows, dataset)
    ref = f1.get("random")
    if ref is None:
        return []
    out = []
    for strategy, c in sorted(f1.items()):
        if strategy == "random":
            continue
        for n in c.n_labeled:
            comp = paired_vs(c, ref, at=int(n))
            if comp:
                out.append([strategy, f"{int(n):,}", f"{comp.mean_diff * 100:+.2f}", f"{comp.std_diff * 100:.2f}",
                            str(comp.n_seeds), _fmt(comp.p_value)])
    return out


def _queried_per_class(rows: list[dict[str, Any]], dataset: str,
                       classes: list[str] | None) -> tuple[list[str], list[list[str]]]:
    totals = queried_class_counts(rows, dataset)
    if not totals:
        return [], []
    n = len(next(iter(totals.values())))
    names = classes if classes and len(classes) == n else [str(i) for i in range(n)]
    return ["strategy", *names], [[s, *(f"{int(v):,}" for v in t)] for s, t in totals.items()]


def write_report(run_dir: str | Path, classes: dict[str, list[str]] | None = None) -> Path:
    """Build ``report.html`` and ``report.md`` (and figures under ``figures/``) from a run folder."""
    run_dir = Path(run_dir)
    db = run_dir / "runs.sqlite"
    if not db.exists():
        raise RunStoreError(f"{run_dir}: no runs.sqlite here; is this an alkit run folder?")
    with RunStore(db) as store:
        rows, full, config = store.rounds(), store.full_data(), store.config() or {}
        stored_classes = store.classes()
    if not rows:
        raise RunStoreError(f"{db}: the run has no finished rounds yet")
    classes = {**stored_classes, **(classes or {})}
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    datasets = sorted({r["dataset"] for r in rows})
    md = ["# alkit run report", "", f"Run folder: `{run_dir}`", ""]
    body = [f"<h1>alkit run report</h1><p>Run folder: <code>{html.escape(str(run_dir))}</code></p>"]
    for ds in datasets:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in ds)
        md += [f"## {ds}", ""]
        body.append(f"<h2>{html.escape(ds)}</h2>")
        table = summary_table(rows, full, ds)
        header = [label for _, label in COLUMNS]
        cells = [[_fmt(t.get(k)) for k, _ in COLUMNS] for t in table]
        md += ["Final budget, mean over seeds (macro averages). Δ is the seed-paired difference vs random.", "",
               "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(c) + " |" for c in cells]
        body.append(_html_table(header, cells))
        full_ds = [r for r in full if r["dataset"] == ds]
        if full_ds:
            f1 = np.mean([r["f1_macro"] for r in full_ds])
            acc = np.mean([r["accuracy"] for r in full_ds])
            line = (f"Full-data reference ({full_ds[0]['n_labeled']:,} labels, {len(full_ds)} seed(s)): "
                    f"macro F1 {f1:.4f}, accuracy {acc:.4f}.")
        elif config.get("full_data", "none") == "none":
            line = "Full-data reference: not computed in this run (full_data: none)."
        else:
            line = (f"Full-data reference: not finished yet (full_data: {config['full_data']}); rerun the same "
                    "command to resume and compute it.")
        md += ["", line, ""]
        body.append(f"<p>{html.escape(line)}</p>")
        diffs = _diff_table(rows, ds)
        if diffs:
            dh = ["strategy", "labels", "ΔF1 vs random (points)", "std", "seeds", "p (paired t)"]
            md += ["Paired difference vs random at each budget:", "", "| " + " | ".join(dh) + " |", "|" + "---|" * len(dh)]
            md += ["| " + " | ".join(d) + " |" for d in diffs] + [""]
            body.append("<h3>Paired difference vs random</h3>" + _html_table(dh, diffs))
            if config.get("train", {}).get("warm_start"):
                md += [WARM_START_CAVEAT, ""]
                body.append(f"<p>{html.escape(WARM_START_CAVEAT)}</p>")
        for metric in CURVE_METRICS:
            paths = learning_curve(rows, full, ds, metric, fig_dir / f"{safe}-{metric}")
            md += [f"![{metric}](figures/{paths[0].name})", ""]
            body.append(_img(paths[0]))
        paths = query_histogram(rows, ds, classes.get(ds), fig_dir / f"{safe}-query-histogram")
        md += [f"![query histogram](figures/{paths[0].name})", ""]
        body.append(_img(paths[0]))
        qh, qrows = _queried_per_class(rows, ds, classes.get(ds))
        if qrows:
            md += ["Labels queried per class, summed over seeds and rounds:", "", "| " + " | ".join(qh) + " |",
                   "|" + "---|" * len(qh)] + ["| " + " | ".join(r) + " |" for r in qrows] + [""]
            body.append("<h3>Labels queried per class</h3>" + _html_table(qh, qrows))
        timing = _timing(rows, ds)
        md += ["Mean seconds per round. Work shared by strategies that use the same trained model (always round "
               "0) is recorded once, charged to the first strategy that did it: its training, and each model "
               "output (score) it computed.", "",
               "| strategy | train | score | select |", "|---|---|---|---|"]
        md += [f"| {s} | {t:.2f} | {sc:.2f} | {se:.4f} |" for s, t, sc, se in timing] + [""]
        body.append("<h3>Mean seconds per round</h3>" + _html_table(
            ["strategy", "train", "score", "select"], [[s, f"{t:.2f}", f"{sc:.2f}", f"{se:.4f}"] for s, t, sc, se in timing]))
    md += ["## Configuration", "", "```json", json.dumps(config, indent=2), "```", ""]
    body.append(f"<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=2))}</pre>")
    _atomic_write(run_dir / "report.md", "\n".join(md))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>alkit report</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
            "th{background:#f3f3f3}img{max-width:100%}pre{background:#f7f7f7;padding:1em;font-size:12px}"
            "</style></head><body>" + "\n".join(body) + "</body></html>")
    _atomic_write(run_dir / "report.html", page)
    return run_dir / "report.html"


def _timing(rows: list[dict[str, Any]], dataset: str) -> list[tuple[str, float, float, float]]:
    out = []
    for s in sorted({r["strategy"] for r in rows if r["dataset"] == dataset}):
        rs = [r for r in rows if r["dataset"] == dataset and r["strategy"] == s]
        out.append((s, float(np.mean([r["train_seconds"] for r in rs])), float(np.mean([r["score_seconds"] for r in rs])),
                    float(np.mean([r["select_seconds"] for r in rs]))))
    return out


def _html_table(header: list[str], cells: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<p><img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'></p>"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
