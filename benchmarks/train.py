"""The one training loop shared by every experiment.

Reads top-down as a Flax example: the optimizer from the config, a pure ``train_step``, many steps
in one ``lax.scan`` under one ``jax.jit`` with the state donated, then ``train``, the only function
with side effects (the host loop: it feeds chunks, evaluates, writes JSON lines, checkpoints and
moves the progress bar). Errors are measured at the paper's iterate theta, never at NAG's
look-ahead point.

A run may be a *grid*: several members (learning rates, momenta, seeds) trained together as one
compiled program under ``jax.vmap``. The hyperparameters live in the state, so the same step
function serves one run and a grid.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import NamedTuple

import data as data_lib
import jax
import jax.numpy as jnp
import numpy as np
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
    rng: jax.Array  # raw key data (uint32) of the minibatch order.
    hparams: dict[str, jax.Array]  # learning_rate and mu_max (or mu_0) of this run.
    plan_state: Any  # what the task's batch plan carries between chunks (see tasks.Task).


# How a grid's state is batched: the members train in lockstep, so they share one unbatched
# step; a chunk can then branch on it (lax.cond) instead of evaluating both sides per member.
GRID_AXES = TrainState(step=None, params=0, opt_state=0, rng=0, hparams=0, plan_state=0)


def hyperparameters(config: settings.OptimizerConfig) -> dict[str, float]:
    """The hyperparameters a grid may vary: the learning rate and mu_max (or mu_0 for RNNs)."""
    mu_name = "mu_0" if config.schedule == "rnn" else "mu_max"
    return {"learning_rate": config.learning_rate, mu_name: getattr(config, mu_name)}


def make_optimizer(
    config: settings.OptimizerConfig,
    total_steps: int,
    hparams: dict[str, Any] | None = None,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer of ``config`` and its momentum schedule.

    ``hparams`` (possibly traced) replaces the config's learning rate and momentum parameter.
    """
    hparams = hparams or hyperparameters(config)
    learning_rate = hparams["learning_rate"]
    mu = hparams["mu_0" if config.schedule == "rnn" else "mu_max"]
    if config.schedule == "rnn":
        momentum = nagmom.schedules.rnn_momentum(
            mu, warmup_steps=config.warmup_steps, warmup_value=config.warmup_momentum
        )
    else:
        momentum = nagmom.schedules.with_final_phase(
            nagmom.schedules.sutskever_momentum(mu, stage_length=config.stage_length),
            total_steps=total_steps,
            final_steps=config.final_steps,
            final_value=config.final_momentum,
        )
    if config.name == "nag":
        return nagmom.nesterov(learning_rate, momentum), momentum
    if config.name == "cm":
        return nagmom.momentum(learning_rate, momentum), momentum
    return optax.sgd(learning_rate), lambda count: jnp.zeros([])


def eval_params(state: TrainState, optimizer_name: str) -> Any:
    """The paper's iterate theta: NAG holds theta + mu v, the others hold theta."""
    if optimizer_name == "nag":
        return nagmom.nesterov_eval_params(state.params, state.opt_state)
    return state.params


def train_step(
    state: TrainState,
    data: Any,
    plan: Any,
    *,
    task: tasks.Task,
    config: settings.Config,
    total_steps: int,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> tuple[TrainState, jax.Array]:
    """One update on the minibatch that ``plan`` (this step's part of the chunk's batch plan)
    draws; returns the new state and the minibatch loss.

    With ``batch_sharding`` the minibatch is laid out that way (its cases split over the
    devices), and XLA partitions the forward and backward passes and sums the gradients.
    """
    tx, _ = make_optimizer(config.optimizer, total_steps, state.hparams)
    batch = task.sample_batch(data, plan)
    if batch_sharding is not None:
        batch = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, batch_sharding), batch)
    loss, grads = jax.value_and_grad(task.loss)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state._replace(step=state.step + 1, params=params, opt_state=opt_state), loss


def batch_plan(state: TrainState, data: Any, task: tasks.Task, length: int) -> tuple[Any, Any]:
    """What the next ``length`` steps need to draw their minibatches (leading axis = step), and
    the plan state after them."""
    key = jax.random.wrap_key_data(state.rng)
    return task.batch_plan(data, key, state.step, length, state.plan_state)


def train_chunk(
    state: TrainState, data: Any, *, length: int, **step_kwargs: Any
) -> tuple[TrainState, jax.Array]:
    """``length`` steps in one ``lax.scan``; returns the state and the mean minibatch loss."""
    plan, plan_state = batch_plan(state, data, step_kwargs["task"], length)
    step = functools.partial(train_step, **step_kwargs)
    state, losses = jax.lax.scan(lambda s, p: step(s, data, p), state, plan)
    return state._replace(plan_state=plan_state), losses.mean()


def grid_chunk(
    state: TrainState, data: Any, *, length: int, **step_kwargs: Any
) -> tuple[TrainState, jax.Array]:
    """``train_chunk`` for every member of a grid at once (``state`` batched as ``GRID_AXES``);
    returns the state and each member's mean minibatch loss."""
    chunk = functools.partial(train_chunk, length=length, **step_kwargs)
    return jax.vmap(chunk, in_axes=(GRID_AXES, None), out_axes=(GRID_AXES, 0))(state, data)


def init_state(
    task: tasks.Task,
    config: settings.Config,
    total_steps: int,
    hparams: dict[str, Any],
    seed: jax.typing.ArrayLike,
) -> TrainState:
    """Fresh parameters, optimizer state and minibatch key for one member."""
    init_key, order_key = jax.random.split(jax.random.key(seed))
    params = task.init_params(init_key)
    tx, _ = make_optimizer(config.optimizer, total_steps, hparams)
    hparams = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
    return TrainState(
        step=jnp.zeros([], jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.key_data(order_key),
        hparams=hparams,
        plan_state=task.init_plan_state(order_key),
    )


def grid_members(config: settings.Config, grid: dict[str, Sequence[float]] | None) -> list[dict]:
    """The members of a run: the product of ``grid`` values ("learning_rate", "mu_max" or "mu_0",
    "seed") over the config's own values; ``None`` is the config's single run."""
    base = {**hyperparameters(config.optimizer), "seed": config.run.seed}
    members = [base]
    for key, values in (grid or {}).items():
        if key not in base:
            raise settings.ConfigError(f"grid key {key!r} must be one of {', '.join(base)}.")
        members = [{**m, key: v} for m in members for v in values]
    return members


def data_parallel_devices(batch_size: int) -> list[jax.Device]:
    """All devices (of every process), checked to split a minibatch of ``batch_size`` evenly."""
    devices = jax.devices()
    if batch_size % len(devices):
        raise settings.ConfigError(
            f"run.batch_size ({batch_size}) does not split evenly over the {len(devices)} devices "
            f"of run.data_parallel: use a multiple of {len(devices)}, or fewer devices (e.g. "
            "CUDA_VISIBLE_DEVICES)."
        )
    return devices


def data_parallel(
    state: TrainState, data: Any, batch_size: int, batch_axis: int = 0
) -> tuple[TrainState, Any, jax.sharding.Sharding]:
    """Places ``state`` and ``data`` replicated on a one-axis mesh of all devices (of every
    process) and returns them with the sharding that splits a minibatch's axis ``batch_axis``
    over that mesh axis."""
    devices = data_parallel_devices(batch_size)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("batch",))  # sharding propagated by XLA
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    spec = jax.sharding.PartitionSpec(*[None] * batch_axis, "batch")
    batch_sharding = jax.sharding.NamedSharding(mesh, spec)
    return jax.device_put(state, replicated), jax.device_put(data, replicated), batch_sharding


def _run_identity(record: dict[str, Any]) -> Any:
    """What must match for ``--out`` to resume a run: the record less how it is executed."""
    identity = json.loads(json.dumps(record))
    run = (identity.get("config") or {}).get("run")
    if isinstance(run, dict):
        run.pop("data_parallel", None)
    return identity


class _Checkpoints:
    """Orbax checkpoints of the whole state under ``workdir/checkpoints``; the last two are kept."""

    def __init__(self, workdir: Path):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.manager = ocp.CheckpointManager(
            (workdir / "checkpoints").absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=2),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState) -> None:
        if self.manager.latest_step() != step:
            self.manager.save(step, args=self._ocp.args.StandardSave(state))
            self.manager.wait_until_finished()

    def restore(self, abstract_state: TrainState) -> TrainState:
        step = self.manager.latest_step()
        try:
            restored = self.manager.restore(
                step, args=self._ocp.args.StandardRestore(abstract_state)
            )
        except (ValueError, KeyError, TypeError) as e:  # another layout: an older harness's
            reason = (str(e).splitlines() or [repr(e)])[0]
            raise settings.ConfigError(
                f"the checkpoint at step {step} in {self.manager.directory} does not hold this "
                f"harness's training state ({reason}); it was written by another version: "
                "choose another --out."
            ) from e
        return TrainState(*restored)

    def close(self) -> None:
        self.manager.close()


def _chunk_lengths(start: int, total: int, every: int) -> list[int]:
    """Chunks from ``start`` to ``total`` that end on multiples of ``every`` (and at ``total``)."""
    if start >= total:
        return []
    ends = [s for s in range(every, total, every) if s > start] + [total]
    return [b - a for a, b in zip([start] + ends[:-1], ends, strict=True)]


def train(
    task: tasks.Task,
    config: settings.Config | settings.RnnConfig,
    workdir: Path,
    *,
    grid: dict[str, Sequence[float]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains ``task`` as ``config`` says, writing everything under ``workdir``.

    Writes ``config.json`` at the start, a ``metrics.jsonl`` row after every compiled chunk
    (``step``, the task's errors, ``train_loss``, ``momentum``, ``learning_rate``, ``seconds``;
    for a grid one row per member, with ``member`` and its hyperparameters), checkpoints every
    ``run.checkpoint_every`` updates and on Ctrl-C, and at the end ``summary.json`` and
    ``training_curve.png``. If ``workdir`` holds a checkpoint of the same run, training resumes
    from it; the rows written after that checkpoint are dropped and written again.

    Raises:
      TrainingDivergedError: the loss of a single run became non-finite; the rows written so far
        and the last checkpoint are kept. (In a grid a diverging member is recorded, not raised.)
      settings.ConfigError: ``workdir`` holds a different run.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run = config.run
    members = grid_members(config, grid)
    is_grid = grid is not None
    record = {"config": config.to_dict(), "grid": grid}
    if jax.process_count() > 1 and not run.data_parallel:
        raise settings.ConfigError(
            f"this run has {jax.process_count()} processes (jax.distributed) and must split its "
            "minibatches over them: set run.data_parallel (--data-parallel)."
        )
    config_path = workdir / "config.json"
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if _run_identity({k: previous.get(k) for k in record}) != _run_identity(record):
            raise settings.ConfigError(
                f"{workdir} holds a run with another config; choose another --out."
            )
    # Launched as several processes (jax.distributed), all train and only the first writes files
    # and prints (orbax coordinates the checkpoints itself); barriers keep reads before rewrites.
    writes = report.writes_files()
    summary_path = workdir / "summary.json"
    if config_path.exists() and summary_path.exists():
        if writes:
            print(f"{workdir} already holds this finished run.")
        return json.loads(summary_path.read_text())
    num_devices = len(data_parallel_devices(run.batch_size)) if run.data_parallel else 1
    _barrier("nagmom: config checked")
    if writes:
        report.write_json(config_path, {**record, "environment": report.environment()})

    step_kwargs = {"task": task, "config": config, "total_steps": run.steps}
    hparams = {
        k: jnp.asarray([m[k] for m in members], jnp.float32)
        for k in hyperparameters(config.optimizer)
    }
    seeds = jnp.asarray([m["seed"] for m in members])
    init = functools.partial(init_state, task, config, run.steps)
    evaluate = functools.partial(_evaluate, task=task, optimizer_name=config.optimizer.name)

    def chunk(state: TrainState, data: Any, length: int):
        return (grid_chunk if is_grid else train_chunk)(state, data, length=length, **step_kwargs)

    if is_grid:
        init = jax.vmap(init, out_axes=GRID_AXES)
        evaluate = jax.vmap(evaluate, in_axes=(GRID_AXES, None))
        state = jax.jit(init)(hparams, seeds)
    else:
        state = jax.jit(init)({k: v[0] for k, v in hparams.items()}, seeds[0])
    evaluate = jax.jit(evaluate)
    data = task.data
    jit_kwargs = {}
    if run.data_parallel:
        state, data, batch_sharding = data_parallel(state, data, run.batch_size, task.batch_axis)
        step_kwargs["batch_sharding"] = batch_sharding
        # The state stays replicated (as it came in, so that it can be donated and fed back).
        replicated = jax.sharding.NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
        jit_kwargs["out_shardings"] = (replicated, replicated)

    checkpoints = _Checkpoints(workdir)
    metrics_path = workdir / "metrics.jsonl"
    start_step = 0
    if checkpoints.latest_step() is not None:
        state = checkpoints.restore(state)
        start_step = checkpoints.latest_step()
        kept = [r for r in report.read_metrics(metrics_path) if r["step"] <= start_step]
        if writes:
            print(f"Resuming from the checkpoint at step {start_step} in {workdir}")
    else:
        kept = []
    _barrier("nagmom: metrics read")
    if writes:
        metrics_path.unlink(missing_ok=True)

    lengths = _chunk_lengths(start_step, run.steps, run.log_every)
    jitted = jax.jit(chunk, static_argnames="length", donate_argnums=0, **jit_kwargs)
    progress = progress and writes
    if progress:
        print("Compiling the training step, this might take a minute...")
    start = time.perf_counter()
    compiled = {n: jitted.lower(state, data, length=n).compile() for n in set(lengths)}
    compile_seconds = time.perf_counter() - start
    schedules = [make_optimizer(config.optimizer, run.steps, m)[1] for m in members]
    seconds_offset = kept[-1]["seconds"] if kept else 0.0
    rows = list(kept)
    train_seconds = 0.0

    def log(step: int, errors: dict[str, np.ndarray], losses: np.ndarray | None) -> None:
        for i, member in enumerate(members):
            row = {"step": step}
            if is_grid:
                row.update(member=i, **member)
            row.update({k: float(np.ravel(v)[i]) for k, v in errors.items()})
            row.update(
                train_loss=None if losses is None else float(np.ravel(losses)[i]),
                momentum=float(schedules[i](step)),
                learning_rate=member["learning_rate"],
                seconds=seconds_offset + time.perf_counter() - start,
            )
            rows.append(row)
            writer.write(row)

    def save() -> None:
        checkpoints.save(int(np.ravel(state.step)[0]), state)

    with report.MetricsWriter(metrics_path if writes else Path(os.devnull)) as writer, tqdm(
        total=run.steps, initial=start_step, unit="step", disable=None if progress else True,
        desc=task.name,
    ) as bar:  # fmt: skip
        for row in kept:
            writer.write(row)
        if not kept:
            log(0, jax.device_get(evaluate(state, data)), None)
        done = last_saved = logged = start_step
        try:
            for n in lengths:
                chunk_start = time.perf_counter()
                state, losses = compiled[n](state, data)
                losses = np.asarray(losses)  # waits for the chunk
                train_seconds += time.perf_counter() - chunk_start
                done += n
                if not is_grid and not math.isfinite(float(losses)):
                    log(done, {}, losses)
                    raise TrainingDivergedError(
                        f"training loss became {float(losses)} between steps {done - n} and "
                        f"{done} (learning_rate={config.optimizer.learning_rate}); metrics so far "
                        f"are in {metrics_path}, the last good checkpoint in {workdir}."
                    )
                errors = jax.device_get(evaluate(state, data))
                logged = done
                log(done, errors, losses)
                bar.update(n)
                bar.set_postfix({task.metric: f"{np.nanmin(errors[task.metric]):.4g}"})
                if run.checkpoint_every and done - last_saved >= run.checkpoint_every:
                    save()
                    last_saved = done
            save()
        except KeyboardInterrupt:
            # Keep what was computed: the state of the last chunk, logged, then saved.
            if done != logged:
                log(done, jax.device_get(evaluate(state, data)), losses)
            save()
            checkpoints.close()
            raise
    checkpoints.close()

    finals = [r for r in rows if r["step"] == run.steps]
    initials = [r for r in rows if r["step"] == 0]
    summary = {
        **task.info,
        "optimizer": config.optimizer.name,
        **config.optimizer.momentum_summary,
        "learning_rate": config.optimizer.learning_rate,
        "steps": run.steps,
        "batch_size": run.batch_size,
        "seed": run.seed,
        "seconds": seconds_offset + time.perf_counter() - start,
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "steps_per_second": (run.steps - start_step) / max(train_seconds, 1e-9),
        "resumed_from_step": start_step,
        "devices": num_devices,
        "environment": report.environment(),
    }
    error_keys = [k for k in finals[0] if k == "loss" or k.endswith("_error")]
    if is_grid:
        summary["members"] = [
            {**m, f"initial_{task.metric}": r0[task.metric], **{k: r[k] for k in error_keys}}
            for m, r0, r in zip(members, initials, finals, strict=True)
        ]
    else:
        summary[f"initial_{task.metric}"] = initials[0][task.metric]
        summary.update({k: finals[0][k] for k in error_keys + ["train_loss"]})
    if not writes:
        return summary
    report.write_json(summary_path, summary)
    momentum_name, momentum_value = next(iter(config.optimizer.momentum_summary.items()))
    steps = np.arange(0, run.steps + 1, max(1, run.steps // 2000))
    report.plot_training_curve(
        rows,
        workdir / "training_curve.png",
        title=f"{task.name}: {config.optimizer.name}, {momentum_name}={momentum_value}",
        key=task.metric,
        momentum=(steps, np.asarray(jax.vmap(schedules[0])(steps))),
    )
    return summary


def _barrier(name: str) -> None:
    """Waits for every process of a multi-process run (nothing to wait for in one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _evaluate(
    state: TrainState, data: Any, *, task: tasks.Task, optimizer_name: str
) -> dict[str, jax.Array]:
    return task.evaluate(eval_params(state, optimizer_name), data)


def load_dataset(config: settings.Config) -> data_lib.Dataset:
    """The data of an autoencoder config."""
    return data_lib.load_dataset(
        config.data.dataset,
        data_dir=config.data.data_dir,
        seed=config.data.seed,
        num_train=config.data.num_train,
        num_test=config.data.num_test,
    )


def build_task(
    config: settings.Config | settings.RnnConfig, dataset: data_lib.Dataset | None = None
) -> tasks.Task:
    """The task of ``config``; an autoencoder's data are loaded unless ``dataset`` is given."""
    if isinstance(config, settings.RnnConfig):
        return tasks.sequence(config)
    return tasks.autoencoder(config, load_dataset(config) if dataset is None else dataset)


def train_and_evaluate(
    config: settings.Config | settings.RnnConfig, workdir: Path, *, progress: bool = True
) -> dict[str, Any]:
    """Builds the task of ``config`` (loading its data) and trains it."""
    return train(build_task(config), config, workdir, progress=progress)
