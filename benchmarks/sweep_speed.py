"""Measures a learning-rate sweep run as one vmapped program against the same runs one by one.

    python benchmarks/sweep_speed.py --config configs/table1_curves.toml --steps 200

Both sides run the harness's own compiled chunk (``train.train_chunk``; for the grid
``train.grid_chunk``) on the same task, with the same members, interleaved over ``--repeats``
repetitions in one process; the median times and their ratio are printed and written to
``sweep_speed.json`` with the environment.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import cli
import jax
import numpy as np
import report
import settings
import timing
import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=cli.REPO / "configs" / "table1_curves.toml")
    parser.add_argument("--steps", type=int, default=200, help="updates per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/sweep_speed"))
    args = parser.parse_args(argv)
    try:
        table = settings.load(args.config, kind=settings.TableConfig)
    except settings.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    config = table.experiment("nag")
    task = train.build_task(config)
    learning_rates = table.table.learning_rates
    hparams = train.hyperparameters(config.optimizer)
    members = {
        "learning_rate": np.asarray(learning_rates, np.float32),
        "mu_max": np.full(len(learning_rates), hparams["mu_max"], np.float32),
    }
    seeds = np.zeros(len(learning_rates), np.int32)
    init = functools.partial(train.init_state, task, config, args.steps)
    chunk_kwargs = {"length": args.steps, "task": task, "config": config, "total_steps": args.steps}
    grid_init = jax.jit(jax.vmap(init, out_axes=train.GRID_AXES))
    grid_chunk = jax.jit(functools.partial(train.grid_chunk, **chunk_kwargs))
    one_init = jax.jit(init)
    one_chunk = jax.jit(functools.partial(train.train_chunk, **chunk_kwargs))

    def run_grid():
        return grid_chunk(grid_init(members, seeds), task.data)

    def run_sequential():
        return [
            one_chunk(one_init({k: v[i] for k, v in members.items()}, seeds[i]), task.data)
            for i in range(len(learning_rates))
        ]

    seconds = timing.interleaved_medians(
        {"grid": run_grid, "sequential": run_sequential}, repeats=args.repeats, min_seconds=0
    )
    result = {
        "members": len(learning_rates),
        "steps": args.steps,
        "dataset": config.data.dataset,
        "grid_seconds": seconds["grid"],
        "sequential_seconds": seconds["sequential"],
    }
    result["speedup"] = result["sequential_seconds"] / result["grid_seconds"]
    timing.write_results(
        args.out, "sweep_speed", result, report.format_summary(result, list(result)) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
