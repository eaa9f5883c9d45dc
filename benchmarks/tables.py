"""The paper's Tables 1-3: grids of runs, the best learning rate per cell, the paper beside us.

Table 1: every optimizer x momentum x learning rate. Table 2: NAG without and with the final
low-momentum phase. Table 3: NAG with the sparse initialization's scale multiplied by 0.25 .. 4.
Each column group runs as one compiled program: its learning rates, momenta and seeds are the
members of one ``jax.vmap`` grid (see ``train.train``), and its run directory is resumable like any
other run.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import report
import settings
import train

# Sutskever et al. (2013), Table 1: train error, best learning rate per cell, 750,000 updates.
PAPER_TABLE1 = {
    "curves": {"sgd": 0.48, "nag": [0.16, 0.096, 0.091, 0.074], "cm": [0.15, 0.10, 0.10, 0.10]},
    "mnist": {"sgd": 2.1, "nag": [1.0, 0.73, 0.75, 0.80], "cm": [1.0, 0.77, 0.84, 0.90]},
    "faces": {"sgd": 36.4, "nag": [14.2, 8.5, 7.8, 7.7], "cm": [15.3, 8.7, 8.3, 9.3]},
}
PAPER_MU_MAXES = (0.9, 0.99, 0.995, 0.999)
# Table 2: NAG without / with the final mu = 0.9 phase.
PAPER_TABLE2 = {"curves": (0.096, 0.074), "mnist": (1.2, 0.73), "faces": (10.83, 7.7)}
# Table 3: NAG on CURVES with the sparse initialization's scale times 0.25, 0.5, 1, 2, 4.
INIT_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
PAPER_TABLE3 = {"curves": (16.0, 16.0, 0.074, 0.083, 0.35)}


def best_cells(members: list[dict[str, Any]], optimizer: str) -> list[dict[str, Any]]:
    """One cell per momentum: the learning rate with the lowest mean final train error.

    Members whose error is not finite (diverged) never win; a cell where every learning rate
    diverged reports NaN.
    """
    cells = []
    momenta = [None] if optimizer == "sgd" else sorted({m["mu_max"] for m in members})
    for mu in momenta:
        mine = [m for m in members if mu is None or m["mu_max"] == mu]
        by_lr: dict[float, list[float]] = {}
        for m in mine:
            by_lr.setdefault(m["learning_rate"], []).append(float(m["train_error"]))
        means = {lr: float(np.mean(errors)) for lr, errors in by_lr.items()}
        finite = {lr: e for lr, e in means.items() if math.isfinite(e)}
        best = min(finite, key=finite.get) if finite else None
        cells.append({
            "optimizer": optimizer,
            "mu_max": 0.0 if mu is None else mu,
            "learning_rate": best,
            "train_error": finite[best] if finite else math.nan,
            "errors_by_learning_rate": means,
        })  # fmt: skip
    return cells


def paper_value(dataset: str, optimizer: str, mu_max: float) -> float | None:
    """The paper's Table 1 value for a cell, if the paper has that cell."""
    row = PAPER_TABLE1.get(dataset, {})
    if optimizer == "sgd":
        return row.get("sgd")
    for mu, value in zip(PAPER_MU_MAXES, row.get(optimizer, []), strict=False):
        if math.isclose(mu, mu_max):
            return value
    return None


def markdown(dataset: str, cells: list[dict[str, Any]], steps: int) -> str:
    """The table in the paper's layout: ours, the paper's, and the learning rate we picked."""
    headers = [
        "SGD" if c["optimizer"] == "sgd" else f"{c['optimizer'].upper()} {c['mu_max']:g}"
        for c in cells
    ]
    ours = [f"{c['train_error']:.4g}" for c in cells]
    paper = [_format(paper_value(dataset, c["optimizer"], c["mu_max"])) for c in cells]
    rates = [_format(c["learning_rate"]) for c in cells]
    lines = [
        f"| {dataset.upper()} | " + " | ".join(headers) + " |",
        "|---" * (len(cells) + 1) + "|",
        f"| ours, {steps:,} updates | " + " | ".join(ours) + " |",
        "| paper, 750,000 updates | " + " | ".join(paper) + " |",
        "| our best learning rate | " + " | ".join(rates) + " |",
    ]
    return "\n".join(lines) + "\n"


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def run_table1(config: settings.TableConfig, workdir: Path, *, progress: bool = True) -> dict:
    """Runs Table 1 for ``config``'s dataset; writes ``table1.md``, ``table1.json`` and a PNG."""
    workdir = Path(workdir)
    task = train.build_task(config.experiment(config.table.optimizers[0]))
    grid_spec = config.table
    cells, seconds = [], 0.0
    for optimizer in grid_spec.optimizers:
        grid = {"learning_rate": grid_spec.learning_rates, "seed": grid_spec.seeds}
        if optimizer != "sgd":
            grid = {"mu_max": grid_spec.mu_maxes, **grid}
        summary = train.train(
            task, config.experiment(optimizer), workdir / optimizer, grid=grid, progress=progress
        )
        seconds += summary["seconds"]
        cells += best_cells(summary["members"], optimizer)
    dataset = config.data.dataset
    result = {
        "dataset": dataset,
        "steps": config.run.steps,
        "seconds": seconds,
        "cells": [{**c, "paper": paper_value(dataset, c["optimizer"], c["mu_max"])} for c in cells],
        "environment": report.environment(),
    }
    if not report.writes_files():
        return result
    report.write_json(workdir / "table1.json", result)
    (workdir / "table1.md").write_text(markdown(dataset, cells, config.run.steps))
    series = [
        (
            "SGD" if c["optimizer"] == "sgd" else f"{c['optimizer']} {c['mu_max']:g}",
            workdir / c["optimizer"] / "metrics.jsonl",
            c["learning_rate"],
            None if c["optimizer"] == "sgd" else c["mu_max"],
        )
        for c in cells
        if c["learning_rate"] is not None
    ]
    _plot_curves(workdir / "table1.png", f"{dataset.upper()}: best learning rate per cell", series)
    return result


def run_nag_variants(
    config: settings.TableConfig, workdir: Path, *, table: int | str, progress: bool = True
) -> dict[str, Any]:
    """Table 2 (``table=2``), Table 3 (``table=3``) or the sparse-vs-dense initialization
    comparison (``table="init"``, which the paper argues but does not tabulate): NAG variants,
    each best over the grid's momenta and learning rates at the same budget; writes
    ``table<table>.md``, ``table<table>.json`` and ``table<table>.png``."""
    dataset = config.data.dataset
    base = config.experiment("nag")
    if table == "init":
        dense = dataclasses.replace(base.model, init="dense")
        columns = [
            ("sparse init", base),
            ("dense init (Glorot normal)", dataclasses.replace(base, model=dense)),
        ]
        paper = (None, None)
    elif table == 2:
        without = dataclasses.replace(base.optimizer, final_steps=0)
        columns = [
            ("without final phase", dataclasses.replace(base, optimizer=without)),
            ("with final phase", base),
        ]
        paper = PAPER_TABLE2.get(dataset, (None, None))
    else:
        columns = [
            (
                f"init scale x{scale:g}",
                dataclasses.replace(
                    base,
                    model=dataclasses.replace(base.model, init_scale=base.model.init_scale * scale),
                ),
            )
            for scale in INIT_SCALES
        ]
        paper = PAPER_TABLE3.get(dataset, (None,) * len(INIT_SCALES))
    cases = train.load_dataset(base)
    base_task = train.build_task(base, cases)
    grid = {
        "mu_max": config.table.mu_maxes,
        "learning_rate": config.table.learning_rates,
        "seed": config.table.seeds,
    }
    cells, seconds = [], 0.0
    for i, ((label, column), paper_value_) in enumerate(zip(columns, paper, strict=True)):
        # The data are loaded once; the initialization (Table 3, init) is part of each task.
        task = base_task if table == 2 else train.build_task(column, cases)
        summary = train.train(task, column, workdir / f"column{i}", grid=grid, progress=progress)
        seconds += summary["seconds"]
        finite = [c for c in best_cells(summary["members"], "nag") if c["learning_rate"]]
        best = min(finite, key=lambda c: c["train_error"]) if finite else None
        cells.append({
            "column": label,
            "train_error": best["train_error"] if best else math.nan,
            "mu_max": best["mu_max"] if best else None,
            "learning_rate": best["learning_rate"] if best else None,
            "paper": paper_value_,
        })  # fmt: skip
    result = {
        "table": table,
        "dataset": dataset,
        "steps": config.run.steps,
        "seconds": seconds,
        "cells": cells,
        "environment": report.environment(),
    }
    if not report.writes_files():
        return result
    report.write_json(workdir / f"table{table}.json", result)
    (workdir / f"table{table}.md").write_text(variants_markdown(result))
    series = [
        (c["column"], workdir / f"column{i}" / "metrics.jsonl", c["learning_rate"], c["mu_max"])
        for i, c in enumerate(cells)
        if c["learning_rate"] is not None
    ]
    title = f"{dataset.upper()} NAG: best momentum and learning rate per column"
    _plot_curves(workdir / f"table{table}.png", title, series)
    return result


def variants_markdown(result: dict[str, Any]) -> str:
    """Table 2 or 3 in the paper's layout: a column per variant, ours beside the paper's."""
    cells = result["cells"]
    rows = [
        (f"ours, {result['steps']:,} updates", [f"{c['train_error']:.4g}" for c in cells]),
        ("paper, 750,000 updates", [_format(c["paper"]) for c in cells]),
        ("our best mu_max, learning rate",
         [f"{_format(c['mu_max'])}, {_format(c['learning_rate'])}" for c in cells]),
    ]  # fmt: skip
    lines = [
        f"| {result['dataset'].upper()} NAG | " + " | ".join(c["column"] for c in cells) + " |",
        "|---" * (len(cells) + 1) + "|",
    ]
    lines += [f"| {name} | " + " | ".join(values) + " |" for name, values in rows]
    return "\n".join(lines) + "\n"


def _plot_curves(
    path: Path, title: str, series: list[tuple[str, Path, float, float | None]]
) -> None:
    """One PNG of train-error curves; ``series`` is (label, metrics.jsonl, learning rate,
    mu_max or None for SGD), each curve the first seed of that grid member. A series with no
    rows is an error (the table itself is written before the plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, metrics, learning_rate, mu_max in series:
        rows = report.read_metrics(metrics)
        mine = [
            r
            for r in rows
            if r["learning_rate"] == learning_rate
            and (mu_max is None or r["mu_max"] == mu_max)
            and r["seed"] == rows[0]["seed"]
        ]
        if not mine:
            plt.close(fig)
            raise ValueError(
                f"no rows for {label!r} (learning rate {learning_rate}, mu_max {mu_max}) in "
                f"{metrics}; nothing to plot."
            )
        ax.plot([r["step"] for r in mine], [float(r["train_error"]) for r in mine], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("update")
    ax.set_ylabel("train error")
    ax.set_title(title)
    ax.legend(fontsize="small", ncol=3)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
