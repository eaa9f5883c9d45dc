"""Sparse against dense initialization for NAG at the same budget (argued, not tabulated, in
Sutskever et al. 2013, Sec. 3).

    python benchmarks/compare_init.py --dataset curves             # reduced scale, 2-core CPU

Each column is best over the config's [table] momenta and learning rates; writes tableinit.md
and tableinit.json under --out. The logic is in tables.py and train.py.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence

import cli
import tables


def main(argv: Sequence[str] | None = None) -> int:
    return cli.table_main(
        argv,
        number="init",
        runner=functools.partial(tables.run_nag_variants, table="init"),
        description="Compares sparse and dense initialization for NAG at the same budget.",
    )


if __name__ == "__main__":
    sys.exit(main())
