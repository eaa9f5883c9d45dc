"""Reproduces Table 2 of Sutskever et al. (2013): NAG without and with the final low-momentum phase.

    python benchmarks/table2.py --dataset curves                   # reduced scale, 2-core CPU
    python benchmarks/table2.py --config configs/table1_curves_full.toml   # the paper's scale

Each column is best over the config's [table] momenta and learning rates (NAG); writes
table2.md and table2.json under --out. The logic is in tables.py and train.py.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence

import cli
import tables


def main(argv: Sequence[str] | None = None) -> int:
    runner = functools.partial(tables.run_nag_variants, table=2)
    return cli.table_main(argv, number=2, runner=runner)


if __name__ == "__main__":
    sys.exit(main())
