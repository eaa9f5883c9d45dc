"""Trains an RNN on a long-range problem of Sutskever et al. (2013), Sec. 4 and Table 5.

    python benchmarks/rnn.py --config configs/rnn_addition.toml
    python benchmarks/rnn.py --config configs/rnn_memorization5.toml --mu-0 0.995 --steps 20000

Kept short on purpose: the logic is in train.py, tasks.py and sequences.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import cli
import settings

SUMMARY_KEYS = (
    "task", "length", "optimizer", "mu_0", "learning_rate", "steps", "initial_zero_one_error",
    "zero_one_error", "loss", "seconds", "compile_seconds", "steps_per_second", "out",
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(
        argv,
        description="Trains an RNN on a long-range problem of Sutskever et al. (2013), Sec. 4.",
        default_config=cli.REPO / "configs" / "rnn_addition.toml",
        kind=settings.RnnConfig,
        extra_flags=[("mu_0", float, "momentum after the warm start", "optimizer.mu_0")],
        summary_keys=SUMMARY_KEYS,
    )


if __name__ == "__main__":
    sys.exit(main())
