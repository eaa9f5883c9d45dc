"""The command line shared by the entry scripts: parse, load the config, train, print."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import data
import jax
import numpy as np
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
    "data_parallel": "run.data_parallel",
}


def parse_args(
    argv: Sequence[str] | None,
    *,
    description: str,
    default_config: Path,
    extra_flags: Sequence[tuple[str, type, str]] = (),
) -> argparse.Namespace:
    """Parses the shared flags and ``extra_flags`` (flag, type, help)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, default=default_config, help="TOML config file")
    parser.add_argument("--steps", type=int, help="number of updates")
    parser.add_argument("--log-every", type=int, help="updates per compiled chunk and log point")
    parser.add_argument("--optimizer", choices=("nag", "cm", "sgd"))
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--seed", type=int, help="seed of the initialization and minibatches")
    parser.add_argument(
        "--data-parallel",
        action=argparse.BooleanOptionalAction,
        help="shard each minibatch over all devices (sets run.data_parallel)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-process launch, e.g. SLURM); "
        "implies --data-parallel",
    )
    for flag, flag_type, help_text in extra_flags:
        parser.add_argument(
            f"--{flag.replace('_', '-')}", type=flag_type, dest=flag, help=help_text
        )
    parser.add_argument("--out", type=Path, help="output directory (default: runs/<config>/<time>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def default_out(config_path: Path) -> Path:
    """``runs/<config name>/<local time>``; in a multi-process launch every process takes the
    first one's time, so that all of them write to one directory."""
    stamp = np.asarray(time.localtime()[:6], np.int32)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        stamp = multihost_utils.broadcast_one_to_all(stamp)
    year, month, day, hour, minute, second = (int(v) for v in stamp)
    name = f"{year:04d}{month:02d}{day:02d}-{hour:02d}{minute:02d}{second:02d}"
    return Path("runs") / config_path.stem / name


def main(
    argv: Sequence[str] | None,
    *,
    description: str,
    default_config: Path,
    kind: type,
    extra_flags: Sequence[tuple[str, type, str, str]] = (),
    runner: Callable[..., dict[str, Any]] = train.train_and_evaluate,
    summary_keys: Sequence[str] = (),
    show: Callable[[dict[str, Any]], str] | None = None,
) -> int:
    """Runs one experiment from the command line; returns the exit status.

    ``extra_flags`` are the experiment's own flags as (flag, type, help, config key).
    ``runner(config, out, progress=...)`` trains; its result is printed by ``show`` (default:
    the ``summary_keys`` of it). Problems a user can fix (config, data, divergence) print one
    line and return 1.
    """
    args = parse_args(
        argv,
        description=description,
        default_config=default_config,
        extra_flags=[flag[:3] for flag in extra_flags],
    )
    if args.distributed:
        jax.distributed.initialize()
    flags = {**OVERRIDES, **{flag[0]: flag[3] for flag in extra_flags}}
    values = {key: getattr(args, flag) for flag, key in flags.items()}
    if args.distributed and args.data_parallel is None:
        values["run.data_parallel"] = True  # the processes split every minibatch
    out = args.out or default_out(args.config)
    speaks = report.writes_files()  # of several processes, only the first prints and writes
    try:
        config = settings.load(
            args.config, {k: v for k, v in values.items() if v is not None}, kind=kind
        )
        if out.exists() and not out.is_dir():
            raise settings.ConfigError(f"--out {out} is a file, not a directory.")
        if speaks:
            print(f"Training with {config.optimizer.name}; outputs in {out}")
        summary = runner(config, out, progress=not args.no_progress)
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
    show = show or (lambda s: report.format_summary(s, summary_keys))
    if speaks:
        print(show({**summary, "out": str(out)}))
    return 0


def table_main(
    argv: Sequence[str] | None,
    *,
    number: int | str,
    runner: Callable[..., dict[str, Any]],
    description: str | None = None,
) -> int:
    """The command line of ``table<number>.py``: ``--dataset`` picks the reduced config."""
    import tables

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--dataset", choices=("curves", "mnist", "faces"), default="curves")
    known, rest = pre.parse_known_args(argv)
    show = (
        (lambda r: tables.markdown(r["dataset"], r["cells"], r["steps"]))
        if number == 1
        else tables.variants_markdown
    )
    return main(
        rest,
        description=(description or f"Reproduces Table {number} of Sutskever et al. (2013).")
        + " --dataset {curves,mnist,faces} picks configs/table1_<dataset>.toml (reduced scale).",
        default_config=REPO / "configs" / f"table1_{known.dataset}.toml",
        kind=settings.TableConfig,
        extra_flags=[("data_dir", str, "directory of the data files", "data.data_dir")],
        runner=runner,
        show=lambda r: show(r) + f"\n{r['seconds']:.0f} s; outputs in {r['out']}",
    )
