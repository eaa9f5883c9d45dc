"""Trains a deep autoencoder of Sutskever et al. (2013), Table 1.

    python benchmarks/autoencoder.py                # short CURVES run, a few minutes on CPU
    python benchmarks/autoencoder.py --config configs/mnist.toml --steps 2000 --out runs/mnist

Kept short on purpose: the logic is in train.py, tasks.py, data.py and report.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import cli
import settings

SUMMARY_KEYS = (
    "dataset", "optimizer", "mu_max", "learning_rate", "steps", "initial_train_error",
    "train_error", "test_error", "seconds", "compile_seconds", "steps_per_second", "out",
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(
        argv,
        description="Trains a deep autoencoder of Sutskever et al. (2013), Table 1.",
        default_config=cli.REPO / "configs" / "curves_quick.toml",
        kind=settings.Config,
        extra_flags=[
            ("mu_max", float, "largest momentum of the schedule", "optimizer.mu_max"),
            ("data_dir", str, "directory of the data files (MNIST, FACES)", "data.data_dir"),
        ],
        summary_keys=SUMMARY_KEYS,
    )


if __name__ == "__main__":
    sys.exit(main())
