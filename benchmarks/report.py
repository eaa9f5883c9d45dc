"""Run outputs: JSON lines while training, then a summary and a plot. Never imports the trainer."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax


def environment() -> dict[str, Any]:
    """What the numbers were measured on, so runs on different machines can be compared."""
    devices = jax.devices()
    return {
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def writes_files() -> bool:
    """Whether this process writes a run's files: always, unless it is not the first process of
    a multi-process (``jax.distributed``) launch, where every process trains the same run."""
    return jax.process_index() == 0


class MetricsWriter:
    """Appends one JSON object per log point to ``path``, flushed at once, so nothing is lost."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(_plain(row)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """Writes ``obj`` as indented JSON (atomically: a crash never leaves half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_plain(obj), indent=2) + "\n")
    tmp.replace(path)


def plot_training_curve(
    rows: Sequence[dict[str, Any]],
    path: Path,
    *,
    title: str,
    key: str = "train_error",
    momentum: tuple[Sequence[int], Sequence[float]] | None = None,
) -> None:
    """Saves a PNG of ``key`` against the step (log scale) with the momentum below it.

    ``momentum`` is the schedule as (steps, values); by default it is read from the rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(7, 5), gridspec_kw={"height_ratios": [3, 1]}
    )
    members = sorted({row.get("member", 0) for row in rows})
    for member in members:
        mine = [row for row in rows if row.get("member", 0) == member]
        label = f"lr={mine[0]['learning_rate']:g}" if len(members) > 1 else None
        top.plot(
            [r["step"] for r in mine], [_number(r[key]) for r in mine], marker=".", label=label
        )
    if len(members) > 1:
        top.legend(fontsize="small")
    top.set_yscale("log")
    top.set_ylabel(key.replace("_", " "))
    top.set_title(title)
    top.grid(True, which="both", alpha=0.3)
    if momentum is None:
        first = [row for row in rows if row.get("member", 0) == members[0]]
        momentum = [r["step"] for r in first], [r["momentum"] for r in first]
    bottom.plot(*momentum, drawstyle="steps-post")
    bottom.set_ylabel("momentum")
    bottom.set_xlabel("update")
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _number(value: Any) -> float:
    """A metric value as a float (JSON stores non-finite numbers as strings)."""
    return float(value) if value is not None else math.nan


def format_summary(summary: dict[str, Any], keys: Iterable[str]) -> str:
    """Aligned ``key: value`` lines for the terminal."""
    keys = [k for k in keys if k in summary]
    width = max(map(len, keys), default=0)
    return "\n".join(f"{k.ljust(width)} : {_format_value(summary[k])}" for k in keys)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _plain(obj: Any) -> Any:
    """Converts NumPy/JAX scalars to Python numbers and non-finite floats to strings for JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
