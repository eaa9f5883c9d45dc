"""Timing shared by the speed benchmarks: interleaved repetitions in one process, medians.

These machines are noisy, so every benchmark times the things it compares side by side: each
repetition runs every candidate once, in turn, and only the medians (and their ratios) are kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import report


class Carried:
    """A compiled step applied to its own output, as in a training loop.

    Each call runs ``out = step(*carry, *constants)`` and carries the first ``len(carry)``
    outputs into the next call (further outputs, such as a loss, are returned but not carried).
    The step may donate its carried arguments (``donate_argnums``) to update them in place.
    """

    def __init__(self, step: Callable[..., Any], carry: tuple[Any, ...], *constants: Any) -> None:
        self.step, self.carry, self.constants = step, tuple(carry), constants

    def __call__(self) -> Any:
        out = self.step(*self.carry, *self.constants)
        self.carry = tuple(out[: len(self.carry)])
        return out


def seconds_per_call(fn: Callable[[], Any], calls: int) -> float:
    """Wall seconds per call of ``calls`` back-to-back calls of ``fn``, waited for at the end."""
    start = time.perf_counter()
    for _ in range(calls):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def interleaved_medians(
    candidates: dict[str, Callable[[], Any]], *, repeats: int, min_seconds: float = 0.05
) -> dict[str, float]:
    """Median seconds per call of each candidate, from ``repeats`` interleaved repetitions.

    Each candidate is called once first (compilation, warm-up), then, unless ``min_seconds`` is
    0, calibrated so that one timed sample lasts about ``min_seconds`` (short calls are timed in
    batches).
    """
    calls = {}
    for name, fn in candidates.items():
        jax.block_until_ready(fn())
        calls[name] = 1
        if min_seconds > 0:
            once = seconds_per_call(fn, 1)
            calls[name] = max(1, math.ceil(min_seconds / max(once, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            samples[name].append(seconds_per_call(fn, calls[name]))
    return {name: float(np.median(times)) for name, times in samples.items()}


def compile_seconds(fn: Callable[..., Any], *args: Any) -> float:
    """Seconds to lower and compile ``jax.jit``-ed ``fn`` for ``args`` (nothing runs)."""
    start = time.perf_counter()
    fn.lower(*args).compile()
    return time.perf_counter() - start


def write_results(out: Path, name: str, result: dict[str, Any], markdown: str) -> None:
    """Writes ``<name>.json`` (``result`` and the environment) and ``<name>.md`` under ``out``
    and prints the markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / f"{name}.json", {**result, "environment": report.environment()})
    (out / f"{name}.md").write_text(markdown)
    print(markdown, end="")
    print(f"wrote {out / name}.json and .md")
