"""The command line shared by the entry scripts: parse, load the config, train, print."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import data
import report
import settings
import train

REPO = Path(__file__).resolve().parent.parent

# Command-line overrides shared by every experiment: flag -> config key.
OVERRIDES = {
    "steps": "run.steps",
    "log_every": "run.log_every",
    "optimizer": "optimizer.name",
    "learning_rate": "optimizer.learning_rate",
    "seed": "run.seed",
}


def parse_args(
    argv: Sequence[str] | None,
    *,
    description: str,
    default_config: Path,
    momentum_flag: str,
    extra_flags: Sequence[tuple[str, type, str]] = (),
) -> argparse.Namespace:
    """Parses the shared flags, ``--{momentum_flag}`` and ``extra_flags`` (flag, type, help)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, default=default_config, help="TOML config file")
    parser.add_argument("--steps", type=int, help="number of updates")
    parser.add_argument("--log-every", type=int, help="updates per compiled chunk and log point")
    parser.add_argument("--optimizer", choices=("nag", "cm", "sgd"))
    parser.add_argument(f"--{momentum_flag.replace('_', '-')}", type=float, dest=momentum_flag)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--seed", type=int, help="seed of the initialization and minibatches")
    for flag, flag_type, help_text in extra_flags:
        parser.add_argument(
            f"--{flag.replace('_', '-')}", type=flag_type, dest=flag, help=help_text
        )
    parser.add_argument("--out", type=Path, help="output directory (default: runs/<config>/<time>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None,
    *,
    description: str,
    default_config: Path,
    kind: type,
    overrides: dict[str, str],
    summary_keys: Sequence[str],
    extra_flags: Sequence[tuple[str, type, str]] = (),
) -> int:
    """Runs one experiment from the command line; returns the exit status.

    ``overrides`` maps the experiment's own flags to config keys; its first entry is the
    momentum flag. Problems a user can fix (config, data, divergence) print one line and return 1.
    """
    momentum_flag = next(iter(overrides))
    args = parse_args(
        argv,
        description=description,
        default_config=default_config,
        momentum_flag=momentum_flag,
        extra_flags=extra_flags,
    )
    flags = {**OVERRIDES, **overrides}
    values = {key: getattr(args, flag) for flag, key in flags.items()}
    out = args.out or Path("runs") / args.config.stem / time.strftime("%Y%m%d-%H%M%S")
    try:
        config = settings.load(
            args.config, {k: v for k, v in values.items() if v is not None}, kind=kind
        )
        if out.exists() and not out.is_dir():
            raise settings.ConfigError(f"--out {out} is a file, not a directory.")
        print(f"Training with {config.optimizer.name}; outputs in {out}")
        summary = train.train_and_evaluate(config, out, progress=not args.no_progress)
    except (settings.ConfigError, data.DataError, train.TrainingDivergedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the state is saved in {out}/checkpoints; run the same command with "
            f"--out {out} to resume.",
            file=sys.stderr,
        )
        return 130
    print(report.format_summary({**summary, "out": str(out)}, summary_keys))
    return 0
