"""Reproduces Table 1 of Sutskever et al. (2013): train error per optimizer and momentum.

    python benchmarks/table1.py --dataset curves                   # reduced scale, 2-core CPU
    python benchmarks/table1.py --config configs/table1_curves_full.toml   # the paper's scale

Writes table1.md (ours beside the paper's), table1.json and table1.png under --out; each column
group's run is resumable. The logic is in tables.py and train.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import cli
import settings
import tables


def main(argv: Sequence[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--dataset", choices=("curves", "mnist", "faces"), default="curves")
    known, rest = pre.parse_known_args(argv)
    return cli.main(
        rest,
        description="Reproduces Table 1 of Sutskever et al. (2013). --dataset {curves,mnist,faces}"
        " picks configs/table1_<dataset>.toml (reduced scale).",
        default_config=cli.REPO / "configs" / f"table1_{known.dataset}.toml",
        kind=settings.TableConfig,
        extra_flags=[("data_dir", str, "directory of the data files", "data.data_dir")],
        runner=tables.run_table1,
        show=lambda result: (
            tables.markdown(result["dataset"], result["cells"], result["steps"])
            + f"\n{result['seconds']:.0f} s; outputs in {result['out']}"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
