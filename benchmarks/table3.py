"""Reproduces Table 3 of Sutskever et al. (2013): NAG with the sparse init scaled by 0.25 .. 4.

    python benchmarks/table3.py --dataset curves                   # reduced scale, 2-core CPU
    python benchmarks/table3.py --config configs/table1_curves_full.toml   # the paper's scale

Each column is best over the config's [table] momenta and learning rates (NAG); writes
table3.md and table3.json under --out. The logic is in tables.py and train.py.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence

import cli
import tables


def main(argv: Sequence[str] | None = None) -> int:
    runner = functools.partial(tables.run_nag_variants, table=3)
    return cli.table_main(argv, number=3, runner=runner)


if __name__ == "__main__":
    sys.exit(main())
