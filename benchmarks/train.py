"""The one training loop shared by every experiment.

Reads top-down as a Flax example: the optimizer from the config, a pure ``train_step``, many steps
in one ``lax.scan`` under one ``jax.jit`` with the state donated, then ``train``, the only function
with side effects (the host loop: it feeds chunks, evaluates, writes JSON lines and moves the
progress bar). Errors are measured at the paper's iterate theta, never at NAG's look-ahead point.
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Any
from typing import NamedTuple

import data
import jax
import jax.numpy as jnp
import optax
import report
import settings
import tasks
from tqdm.auto import tqdm

import nagmom


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the message names the steps."""


class TrainState(NamedTuple):
    """Everything that changes during training: one pytree, so it scans, vmaps and saves whole."""

    step: jax.Array  # shape=(), int32: updates applied so far.
    params: Any  # for NAG: the look-ahead point phi.
    opt_state: Any
    rng: jax.Array  # key of the minibatch order.


def make_optimizer(
    config: settings.OptimizerConfig, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer of ``config`` and its momentum schedule."""
    if config.schedule == "rnn":
        momentum = nagmom.schedules.rnn_momentum(
            config.mu_0, warmup_steps=config.warmup_steps, warmup_value=config.warmup_momentum
        )
    else:
        momentum = nagmom.schedules.with_final_phase(
            nagmom.schedules.sutskever_momentum(config.mu_max, stage_length=config.stage_length),
            total_steps=total_steps,
            final_steps=config.final_steps,
            final_value=config.final_momentum,
        )
    if config.name == "nag":
        return nagmom.nesterov(config.learning_rate, momentum), momentum
    if config.name == "cm":
        return nagmom.momentum(config.learning_rate, momentum), momentum
    return optax.sgd(config.learning_rate), lambda count: jnp.zeros([])


def eval_params(state: TrainState, optimizer_name: str) -> Any:
    """The paper's iterate theta: NAG holds theta + mu v, the others hold theta."""
    if optimizer_name == "nag":
        return nagmom.nesterov_eval_params(state.params, state.opt_state)
    return state.params


def train_step(
    state: TrainState, data: Any, *, task: tasks.Task, tx: optax.GradientTransformation
) -> tuple[TrainState, jax.Array]:
    """One update on one minibatch; returns the new state and the minibatch loss."""
    batch = task.sample_batch(data, state.rng, state.step)
    loss, grads = jax.value_and_grad(task.loss)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state._replace(step=state.step + 1, params=params, opt_state=opt_state), loss


def train_chunk(
    state: TrainState,
    data: Any,
    *,
    task: tasks.Task,
    tx: optax.GradientTransformation,
    length: int,
) -> tuple[TrainState, jax.Array]:
    """``length`` steps in one ``lax.scan``; returns the state and the mean minibatch loss."""
    step = functools.partial(train_step, task=task, tx=tx)
    state, losses = jax.lax.scan(lambda s, _: step(s, data), state, None, length=length)
    return state, losses.mean()


def init_state(task: tasks.Task, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """Fresh parameters (sparse init), optimizer state and minibatch key from ``seed``."""
    init_key, order_key = jax.random.split(jax.random.key(seed))
    params = task.init_params(init_key)
    return TrainState(jnp.zeros([], jnp.int32), params, tx.init(params), order_key)


def train(
    task: tasks.Task,
    config: settings.Config | settings.RnnConfig,
    workdir: Path,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains ``task`` as ``config`` says, writing everything under ``workdir``.

    Writes ``config.json`` at the start, a ``metrics.jsonl`` row after every compiled chunk
    (``step``, the task's errors, ``train_loss``, ``momentum``, ``learning_rate``, ``seconds``),
    and at the end
    ``summary.json`` and ``training_curve.png``.

    Raises:
      TrainingDivergedError: the loss became non-finite; the rows written so far are kept.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run = config.run
    tx, momentum = make_optimizer(config.optimizer, run.steps)
    learning_rate = config.optimizer.learning_rate
    report.write_json(
        workdir / "config.json", {"config": config.to_dict(), "environment": report.environment()}
    )

    state = init_state(task, tx, run.seed)
    evaluate = jax.jit(
        lambda state, data: task.evaluate(eval_params(state, config.optimizer.name), data)
    )
    chunk = jax.jit(
        functools.partial(train_chunk, task=task, tx=tx),
        static_argnames="length",
        donate_argnums=0,
    )
    lengths = [run.log_every] * (run.steps // run.log_every)
    if run.steps % run.log_every:
        lengths.append(run.steps % run.log_every)

    start = time.perf_counter()
    compile_start = time.perf_counter()
    compiled = {n: chunk.lower(state, task.data, length=n).compile() for n in set(lengths)}
    compile_seconds = time.perf_counter() - compile_start
    initial = {k: float(v) for k, v in evaluate(state, task.data).items()}
    metrics_path = workdir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    rows = []
    train_seconds = 0.0

    def log(step: int, errors: dict[str, float], loss: float | None) -> None:
        row = {
            "step": step,
            **errors,
            "train_loss": loss,
            "momentum": float(momentum(step)),
            "learning_rate": learning_rate,
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        writer.write(row)

    # disable=None: tqdm shows the bar only on a terminal.
    disable_bar = None if progress else True
    with (
        report.MetricsWriter(metrics_path) as writer,
        tqdm(total=run.steps, unit="step", disable=disable_bar, desc=task.name) as bar,
    ):
        log(0, initial, None)
        done = 0
        for n in lengths:
            chunk_start = time.perf_counter()
            state, loss = compiled[n](state, task.data)
            loss = float(loss)  # waits for the chunk
            train_seconds += time.perf_counter() - chunk_start
            if not math.isfinite(loss):
                log(done + n, {}, loss)
                raise TrainingDivergedError(
                    f"training loss became {loss} between steps {done} and {done + n} "
                    f"(learning_rate={learning_rate}); metrics so far are in {metrics_path}."
                )
            done += n
            errors = {k: float(v) for k, v in evaluate(state, task.data).items()}
            log(done, errors, loss)
            bar.update(n)
            bar.set_postfix({task.metric: f"{errors[task.metric]:.4g}"})

    summary = {
        **task.info,
        "optimizer": config.optimizer.name,
        **config.optimizer.momentum_summary,
        "learning_rate": learning_rate,
        "steps": run.steps,
        "batch_size": run.batch_size,
        "seed": run.seed,
        f"initial_{task.metric}": initial[task.metric],
        **errors,
        "train_loss": loss,
        "seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "steps_per_second": run.steps / train_seconds,
        "environment": report.environment(),
    }
    report.write_json(workdir / "summary.json", summary)
    momentum_name, momentum_value = next(iter(config.optimizer.momentum_summary.items()))
    report.plot_training_curve(
        rows,
        workdir / "training_curve.png",
        title=f"{task.name}: {config.optimizer.name}, {momentum_name}={momentum_value}, "
        f"lr={learning_rate}",
        key=task.metric,
    )
    return summary


def train_and_evaluate(
    config: settings.Config | settings.RnnConfig, workdir: Path, *, progress: bool = True
) -> dict[str, Any]:
    """Builds the task of ``config`` (loading its data) and trains it."""
    if isinstance(config, settings.RnnConfig):
        return train(tasks.sequence(config), config, workdir, progress=progress)
    dataset = data.load_dataset(
        config.data.dataset,
        data_dir=config.data.data_dir,
        seed=config.data.seed,
        num_train=config.data.num_train,
        num_test=config.data.num_test,
    )
    return train(tasks.autoencoder(config, dataset), config, workdir, progress=progress)
