"""Training throughput of the harness against a hand-written pure-JAX step and the hardware.

    python benchmarks/train_speed.py                          # CURVES, MNIST and FACES nets
    python benchmarks/train_speed.py --nets mnist --steps 20 --repeats 3

For each autoencoder (batch 200, NAG with the paper's momentum schedule) it times, interleaved in
one process: the harness's compiled chunk (``train.train_chunk``: ``--steps`` updates in one
``lax.scan``, state donated), and a minimal hand-written step of the same network, loss and NAG
update (plain ``jnp``, parameters as a list of arrays, contiguous minibatches), on synthetic
training sets as large as the real ones. Achieved GFLOP/s count the matrix products (forward,
weight gradient, and input gradient except at the first layer), against the peak of a large
float32 matmul timed in the same run. On the first net it also times chunks of 1 and
10 steps (dispatch overhead) and an undonated chunk (copies); compile times go to the JSON.
Medians and ratios are printed and written to ``train_speed.json`` with the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cli
import data
import jax
import jax.numpy as jnp
import numpy as np
import settings
import timing
import train

INPUT_SIZES = {"curves": 784, "mnist": 784, "faces": 625}
# Training cases of the real sets: the harness permutes all of them every epoch.
NUM_CASES = {"curves": 20_000, "mnist": 60_000, "faces": 103_500}


def synthetic_dataset(net: str) -> data.Dataset:
    """Uniform random "images" of the net's input size (speed does not depend on the pixels)."""
    rng = np.random.default_rng(0)
    size = INPUT_SIZES[net]
    return data.Dataset(
        rng.random((NUM_CASES[net], size), np.float32), rng.random((1000, size), np.float32)
    )


def _layer_names(params: dict[str, Any]) -> list[str]:
    return sorted(params, key=lambda name: int(name.split("_")[-1]))  # Dense_0, Dense_1, ...


def layer_shapes(params: dict[str, Any]) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each Dense layer, in order."""
    return [params[name]["kernel"].shape for name in _layer_names(params)]


def flat_weights(params: dict[str, Any]) -> list[jax.Array]:
    """The Flax autoencoder's parameters as the hand-written step's list [W0, b0, W1, ...]."""
    return [params[name][kind] for name in _layer_names(params) for kind in ("kernel", "bias")]


def flops_per_step(shapes: list[tuple[int, int]], batch_size: int) -> int:
    """2 x the multiply-adds of one step's matrix products: per layer the forward product and the
    weight gradient, and the input gradient of every layer but the first (the data need none)."""
    products = 3 * sum(fan_in * fan_out for fan_in, fan_out in shapes)
    first_in, first_out = shapes[0]
    return 2 * batch_size * (products - first_in * first_out)


def hand_written_loss(
    config: settings.Config, num_layers: int
) -> Callable[[list[jax.Array], jax.Array], jax.Array]:
    """``(weights, cases) -> mean loss`` of the autoencoder in plain ``jnp``; ``weights`` is the
    list [W0, b0, W1, b1, ...]. Sigmoid hidden units, a linear code layer, and cross-entropy on
    logistic outputs or squared error on linear ones, as in ``tasks.autoencoder``."""
    code_layer = num_layers // 2 - 1
    logistic = config.model.outputs == "logistic"

    def loss(weights, x):
        out = x
        for i in range(num_layers):
            out = out @ weights[2 * i] + weights[2 * i + 1]
            if i not in (code_layer, num_layers - 1):
                out = jax.nn.sigmoid(out)
        if logistic:  # cross-entropy with logits
            per_case = (jnp.logaddexp(0.0, out) - x * out).sum(-1)
        else:
            per_case = jnp.square(out - x).sum(-1)
        return per_case.mean()

    return loss


def hand_written_chunk(
    config: settings.Config, steps: int, num_layers: int
) -> Callable[..., tuple[list[jax.Array], list[jax.Array], jax.Array, jax.Array]]:
    """``steps`` updates of the plain-JAX autoencoder with NAG, in one ``lax.scan``.

    Carry: (weights, velocities, step). Minibatches are contiguous slices of a fixed order; the
    momentum schedule is the paper's, inline.
    """
    loss = hand_written_loss(config, num_layers)
    batch_size = config.run.batch_size
    lr, mu_max, stage = (
        config.optimizer.learning_rate,
        config.optimizer.mu_max,
        config.optimizer.stage_length,
    )

    def mu(t):
        return jnp.minimum(1.0 - 1.0 / (2.0 * (t // stage + 1)), mu_max)

    def one_step(carry, _, cases):
        weights, velocities, t = carry
        start = (t % (cases.shape[0] // batch_size)) * batch_size
        x = jax.lax.dynamic_slice_in_dim(cases, start, batch_size)
        value, grads = jax.value_and_grad(loss)(weights, x)
        mu_t, mu_next = mu(t), mu(t + 1)
        velocities = [mu_t * v - lr * g for v, g in zip(velocities, grads, strict=True)]
        weights = [
            w - lr * g + mu_next * v for w, g, v in zip(weights, grads, velocities, strict=True)
        ]
        return (weights, velocities, t + 1), value

    def chunk(weights, velocities, t, cases):
        step = functools.partial(one_step, cases=cases)
        (weights, velocities, t), losses = jax.lax.scan(
            step, (weights, velocities, t), length=steps
        )
        return weights, velocities, t, losses.mean()

    return chunk


def matmul_peak(repeats: int, size: int | None = None) -> float:
    """GFLOP/s of a ``size`` x ``size`` float32 matmul on the default device, at the default
    matmul precision, the one the training steps use (TF32 on recent NVIDIA GPUs). ``None``:
    2048 on a CPU, 8192 on an accelerator, where a smaller product is too short to time."""
    size = size or (2048 if jax.default_backend() == "cpu" else 8192)
    # Random operands: some accelerators clock higher on constant inputs.
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    seconds = timing.interleaved_medians({"matmul": lambda: matmul(a, a)}, repeats=repeats)
    return 2 * size**3 / seconds["matmul"] / 1e9


def measure_net(
    net: str, *, steps: int, repeats: int, extras: bool, batch_sizes: tuple[int, ...] = ()
) -> dict[str, Any]:
    """Times the harness and the hand-written step on ``net``; with ``extras`` also chunks of 1
    and 10 steps, an undonated chunk, and the harness at each of ``batch_sizes``."""
    config = settings.load(cli.REPO / "configs" / f"{net}.toml")
    dataset = synthetic_dataset(net)
    task = train.build_task(config, dataset)
    hparams = train.hyperparameters(config.optimizer)
    state = jax.jit(functools.partial(train.init_state, task, config, config.run.steps))(
        hparams, config.run.seed
    )
    shapes = layer_shapes(state.params)
    candidates, work = {}, {}  # name -> (steps per call, batch size)

    def add_harness(name: str, length: int, donate: bool = True, batch_size: int | None = None):
        cfg, tsk = config, task
        if batch_size is not None:
            cfg = dataclasses.replace(
                config, run=dataclasses.replace(config.run, batch_size=batch_size)
            )
            tsk = train.build_task(cfg, dataset)
        chunk = functools.partial(
            train.train_chunk, length=length, task=tsk, config=cfg, total_steps=cfg.run.steps
        )
        jitted = jax.jit(chunk, donate_argnums=0 if donate else ())
        candidates[name] = timing.Carried(jitted, (jax.tree.map(jnp.copy, state),), tsk.data)
        work[name] = (length, cfg.run.batch_size)
        return jitted

    compile_seconds = {
        "harness": timing.compile_seconds(add_harness("harness", steps), state, task.data)
    }
    weights = [jnp.copy(w) for w in flat_weights(state.params)]
    velocities = [jnp.zeros_like(w) for w in weights]
    cases = jnp.asarray(task.data["train"])
    plain = jax.jit(hand_written_chunk(config, steps, len(shapes)), donate_argnums=(0, 1, 2))
    compile_seconds["hand-written"] = timing.compile_seconds(
        plain, weights, velocities, jnp.int32(0), cases
    )
    candidates["hand-written"] = timing.Carried(plain, (weights, velocities, jnp.int32(0)), cases)
    work["hand-written"] = (steps, config.run.batch_size)
    if extras:
        for length in (1, 10):
            add_harness(f"harness, {length}-step chunks", length)
        add_harness("harness, not donated", steps, donate=False)
        for batch_size in batch_sizes:
            add_harness(f"harness, batch {batch_size}", steps, batch_size=batch_size)
    seconds = timing.interleaved_medians(candidates, repeats=repeats)
    steps_per_second = {name: work[name][0] / s for name, s in seconds.items()}
    gflops = {
        name: rate * flops_per_step(shapes, work[name][1]) / 1e9
        for name, rate in steps_per_second.items()
    }
    return {
        "net": net,
        "layers": [list(s) for s in shapes],
        "parameters": int(sum(a * b + b for a, b in shapes)),
        "batch_size": config.run.batch_size,
        "steps_per_call": steps,
        "steps_per_second": steps_per_second,
        "batch_sizes": {name: w[1] for name, w in work.items()},
        "gflops_per_second": gflops,
        "harness_over_hand_written": steps_per_second["harness"] / steps_per_second["hand-written"],
        "compile_seconds": compile_seconds,
    }


def table(rows: list[dict[str, Any]], peak: float) -> str:
    """Markdown: steps/s, GFLOP/s and the fraction of the matmul peak, per net and candidate."""
    lines = [
        "| net (params) | candidate | steps/s | cases/s | GFLOP/s | of matmul peak "
        "| steps/s vs hand-written |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = r["steps_per_second"]["hand-written"]
        for name, rate in r["steps_per_second"].items():
            gflops = r["gflops_per_second"][name]
            lines.append(
                f"| {r['net']} ({r['parameters']:,}) | {name} | {rate:.1f} "
                f"| {rate * r['batch_sizes'][name]:,.0f} | {gflops:.1f} "
                f"| {gflops / peak:.0%} | {rate / base:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nets", nargs="+", choices=tuple(INPUT_SIZES), default=["mnist", "curves", "faces"]
    )
    parser.add_argument("--steps", type=int, default=50, help="updates per compiled call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="*",
        default=[50, 800],
        help="further batch sizes for the harness on the first net (cost vs batch size)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/train_speed"))
    args = parser.parse_args(argv)
    if min(args.steps, args.repeats, *args.batch_sizes) < 1:
        parser.error("--steps, --repeats and --batch-sizes must be at least 1")
    too_large = [b for b in args.batch_sizes if b > NUM_CASES[args.nets[0]]]
    if too_large:
        parser.error(
            f"--batch-sizes {too_large} exceed the {NUM_CASES[args.nets[0]]:,} training cases "
            f"of {args.nets[0]}"
        )
    start = time.perf_counter()
    peak = matmul_peak(args.repeats)
    print(f"matmul peak: {peak:.1f} GFLOP/s", flush=True)
    rows = []
    for i, net in enumerate(args.nets):
        rows.append(
            measure_net(
                net,
                steps=args.steps,
                repeats=args.repeats,
                extras=i == 0,
                batch_sizes=tuple(args.batch_sizes),
            )
        )
        print(table(rows[-1:], peak), end="", flush=True)
    result = {
        "matmul_peak_gflops_per_second": peak,
        "rows": rows,
        "repeats": args.repeats,
        "seconds": time.perf_counter() - start,
    }
    markdown = f"matmul peak {peak:.1f} GFLOP/s\n\n" + table(rows, peak)
    timing.write_results(args.out, "train_speed", result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
