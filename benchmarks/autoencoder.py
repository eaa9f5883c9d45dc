"""Trains a deep autoencoder of Sutskever et al. (2013), Table 1.

    python benchmarks/autoencoder.py                # short CURVES run, a few minutes on CPU
    python benchmarks/autoencoder.py --config configs/mnist.toml --steps 2000 --out runs/mnist

Kept short on purpose: the logic is in train.py, tasks.py, data.py and report.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import data
import report
import settings
import train

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "configs" / "curves_quick.toml"

# Command-line overrides: flag -> config key.
OVERRIDES = {
    "steps": "run.steps",
    "optimizer": "optimizer.name",
    "mu_max": "optimizer.mu_max",
    "learning_rate": "optimizer.learning_rate",
    "seed": "run.seed",
    "data_dir": "data.data_dir",
}
SUMMARY_KEYS = (
    "dataset", "optimizer", "mu_max", "learning_rate", "steps", "initial_train_error",
    "train_error", "test_error", "seconds", "compile_seconds", "steps_per_second", "out",
)  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="TOML config file")
    parser.add_argument("--steps", type=int, help="number of updates")
    parser.add_argument("--optimizer", choices=("nag", "cm", "sgd"))
    parser.add_argument("--mu-max", type=float, help="largest momentum of the schedule")
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--seed", type=int, help="seed of the initialization and minibatches")
    parser.add_argument("--data-dir", type=str, help="directory of the data files (MNIST)")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/<config>/<time>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {
        key: getattr(args, flag)
        for flag, key in OVERRIDES.items()
        if getattr(args, flag) is not None
    }
    out = args.out or Path("runs") / args.config.stem / time.strftime("%Y%m%d-%H%M%S")
    try:
        config = settings.load(args.config, overrides)
        if (out / "summary.json").exists():
            raise settings.ConfigError(f"{out} already holds a finished run; choose another --out.")
        print(f"Training {config.data.dataset} with {config.optimizer.name}; outputs in {out}")
        print("Initial compilation, this might take a minute...")
        summary = train.train_and_evaluate(config, out, progress=not args.no_progress)
    except (settings.ConfigError, data.DataError, train.TrainingDivergedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.format_summary({**summary, "out": str(out)}, SUMMARY_KEYS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
