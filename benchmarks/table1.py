"""Reproduces Table 1 of Sutskever et al. (2013): train error per optimizer and momentum.

    python benchmarks/table1.py --dataset curves                   # reduced scale, 2-core CPU
    python benchmarks/table1.py --config configs/table1_curves_full.toml   # the paper's scale

Writes table1.md (ours beside the paper's), table1.json and table1.png under --out; each column
group's run is resumable. The logic is in tables.py and train.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import cli
import tables


def main(argv: Sequence[str] | None = None) -> int:
    return cli.table_main(argv, number=1, runner=tables.run_table1)


if __name__ == "__main__":
    sys.exit(main())
