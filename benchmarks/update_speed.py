"""Time of one optimizer update against Optax and against the memory-bandwidth bound.

    python benchmarks/update_speed.py                       # 1e5 .. 3e7 float32 + the MNIST tree
    python benchmarks/update_speed.py --sizes 1e5 1e6 --repeats 5

One update is ``tx.update`` followed by ``optax.apply_updates``, jitted as one function with the
parameters and optimizer state donated, as in a training loop. An update must read the
parameters, gradients and velocity and write the parameters and velocity: 5 arrays of the
parameters' size. The bound is those bytes over the memory bandwidth, measured in the same run
by a donated elementwise triad ``a <- a + s * b`` (3 arrays moved). Every candidate and the triad
are timed interleaved, in one process; medians, effective GB/s and ratios are printed and
written to ``update_speed.json`` with the environment.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import models
import optax
import timing

import nagmom

LEARNING_RATE, MU_MAX = 0.01, 0.99
UPDATE_ARRAYS = 5  # read params, grads, velocity; write params, velocity
TRIAD_ARRAYS = 3  # read a, b; write a


def optimizers() -> dict[str, optax.GradientTransformation]:
    """The candidates: ours with the paper's momentum schedule, Optax's with a constant and with
    the same schedule injected (the usual way to schedule momentum in Optax)."""
    schedule = nagmom.schedules.sutskever_momentum(MU_MAX)
    return {
        "nagmom.nesterov": nagmom.nesterov(LEARNING_RATE, schedule),
        "nagmom.momentum": nagmom.momentum(LEARNING_RATE, schedule),
        "optax.sgd(nesterov)": optax.sgd(LEARNING_RATE, momentum=MU_MAX, nesterov=True),
        "optax.inject_hyperparams(sgd)": optax.inject_hyperparams(optax.sgd)(
            learning_rate=LEARNING_RATE, momentum=schedule, nesterov=True
        ),
    }


def update_step(tx: optax.GradientTransformation) -> Callable[..., Any]:
    """``(params, state, grads) -> (params, state)``, un-jitted."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def hand_written_step(params: Any, velocity: Any, grads: Any) -> tuple[Any, Any]:
    """The same NAG update written by hand, in one function over plain arrays (constant
    momentum, no ``GradientTransformation``): the fastest this backend compiles it, the yardstick
    for what a transform and a separate ``apply_updates`` cost."""
    velocity = jax.tree.map(lambda v, g: MU_MAX * v - LEARNING_RATE * g, velocity, grads)
    params = jax.tree.map(
        lambda p, v, g: p + MU_MAX * v - LEARNING_RATE * g, params, velocity, grads
    )
    return params, velocity


def _triad(a: jax.Array, b: jax.Array, s: jax.Array) -> tuple[jax.Array]:
    return (a + s * b,)


def _flat_name(n: int) -> str:
    """ "flat 1e7" where that is exact, else "flat 150,000" (names must not collide)."""
    short = f"{n:.0e}"
    return f"flat {short.replace('e+0', 'e')}" if float(short) == n else f"flat {n:,}"


def parameter_trees(sizes: list[int], with_mnist: bool) -> dict[str, Any]:
    """Flat float32 vectors of each size, and the MNIST autoencoder's parameter tree."""
    trees = {_flat_name(n): jnp.zeros((n,), jnp.float32) for n in sizes}
    if with_mnist:
        model = models.MnistAutoencoder()
        trees["MNIST autoencoder"] = jax.jit(model.init)(
            jax.random.key(0), jnp.zeros((1, 784), jnp.float32)
        )["params"]
    return trees


def measure(params: Any, *, repeats: int, donate: bool = True) -> dict[str, Any]:
    """Times every candidate's update and the triad on ``params``; returns one result row."""
    n = sum(x.size for x in jax.tree.leaves(params))
    key = jax.random.key(1)
    grads = jax.tree.map(lambda p: jax.random.normal(key, p.shape, p.dtype), params)
    donate_argnums = (0, 1) if donate else ()
    candidates = {}
    for name, tx in optimizers().items():
        step = jax.jit(update_step(tx), donate_argnums=donate_argnums)
        fresh = jax.tree.map(jnp.copy, params)
        candidates[name] = timing.Carried(step, (fresh, tx.init(fresh)), grads)
    fresh = jax.tree.map(jnp.copy, params)
    candidates["hand-written"] = timing.Carried(
        jax.jit(hand_written_step, donate_argnums=donate_argnums),
        (fresh, jax.tree.map(jnp.zeros_like, params)),
        grads,
    )
    flat_a = jnp.zeros((n,), jnp.float32)
    flat_b = jnp.ones((n,), jnp.float32)
    triad = jax.jit(_triad, donate_argnums=(0,))
    candidates["triad"] = timing.Carried(triad, (flat_a,), flat_b, jnp.float32(0.5))
    seconds = timing.interleaved_medians(candidates, repeats=repeats)
    triad_seconds = seconds.pop("triad")
    bandwidth = TRIAD_ARRAYS * 4 * n / triad_seconds
    bound = UPDATE_ARRAYS * 4 * n / bandwidth
    ours = seconds["nagmom.nesterov"]
    return {
        "elements": n,
        "donated": donate,
        "triad_seconds": triad_seconds,
        "bandwidth_gb_per_s": bandwidth / 1e9,
        "bound_seconds": bound,
        "seconds": seconds,
        "effective_gb_per_s": {k: UPDATE_ARRAYS * 4 * n / t / 1e9 for k, t in seconds.items()},
        "nesterov_over_optax_sgd": ours / seconds["optax.sgd(nesterov)"],
        "nesterov_over_optax_inject": ours / seconds["optax.inject_hyperparams(sgd)"],
        "nesterov_over_bound": ours / bound,
        "nesterov_over_hand_written": ours / seconds["hand-written"],
        "hand_written_over_bound": seconds["hand-written"] / bound,
        "momentum_over_bound": seconds["nagmom.momentum"] / bound,
        "optax_sgd_over_bound": seconds["optax.sgd(nesterov)"] / bound,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table: microseconds per update and the ratios."""
    lines = [
        "| params | donated | GB/s (triad) | bound us | nagmom.nesterov us | optax.sgd us "
        "| optax inject us | hand-written us | nesterov/optax | nesterov/inject "
        "| nesterov/hand-written | nesterov/bound | hand-written/bound |",
        "|---" * 13 + "|",
    ]
    for r in rows:
        s = r["seconds"]
        lines.append(
            f"| {r['name']} ({r['elements']:,}) | {'yes' if r['donated'] else 'no'} "
            f"| {r['bandwidth_gb_per_s']:.1f} | {r['bound_seconds'] * 1e6:.0f} "
            f"| {s['nagmom.nesterov'] * 1e6:.0f} | {s['optax.sgd(nesterov)'] * 1e6:.0f} "
            f"| {s['optax.inject_hyperparams(sgd)'] * 1e6:.0f} | {s['hand-written'] * 1e6:.0f} "
            f"| {r['nesterov_over_optax_sgd']:.2f} | {r['nesterov_over_optax_inject']:.2f} "
            f"| {r['nesterov_over_hand_written']:.2f} | {r['nesterov_over_bound']:.2f} "
            f"| {r['hand_written_over_bound']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7, 3e7], help="flat param counts"
    )
    parser.add_argument("--no-mnist", action="store_true", help="skip the MNIST parameter tree")
    parser.add_argument("--no-undonated", action="store_true", help="skip the undonated rows")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("runs/update_speed"))
    args = parser.parse_args(argv)
    if any(s < 1 or s != int(s) for s in args.sizes):
        parser.error(f"--sizes must be positive whole numbers, got {args.sizes}")
    start = time.perf_counter()
    rows = []
    trees = parameter_trees([int(s) for s in args.sizes], with_mnist=not args.no_mnist)
    for name, params in trees.items():
        for donate in (True,) if args.no_undonated else (True, False):
            rows.append({"name": name, **measure(params, repeats=args.repeats, donate=donate)})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    result = {
        "rows": rows,
        "learning_rate": LEARNING_RATE,
        "mu_max": MU_MAX,
        "repeats": args.repeats,
        "seconds": time.perf_counter() - start,
    }
    timing.write_results(args.out, "update_speed", result, table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
