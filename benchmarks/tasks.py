"""What differs between experiments: the model, the minibatches, the loss and the error measure.

A :class:`Task` is a bundle of pure functions that the one training loop in ``train.py`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import models
import optax
import sequences
import settings
from data import Dataset


class Task(NamedTuple):
    """Pure, jit-able pieces of one experiment.

    ``data`` is a pytree of device arrays passed to ``batch_plan``, ``sample_batch`` and
    ``evaluate`` as an argument (not baked into the compiled program as a constant). Once per
    compiled chunk, ``batch_plan`` computes what every step of the chunk needs to draw its
    minibatch (rows or keys, leading axis = step), so per-step work stays small. It carries a
    ``plan_state`` from chunk to chunk in the training state (``init_plan_state(key)`` makes
    the first): the autoencoders keep the current epoch's order there, so that each epoch's
    permutation is computed once, not once per chunk.
    """

    name: str
    metric: str  # the key of ``evaluate`` that the progress bar, plot and summary lead with
    info: dict[str, Any]  # what identifies the run in its summary (dataset, model, ...)
    init_params: Callable[[jax.Array], Any]  # key -> params
    init_plan_state: Callable[[jax.Array], Any]  # key -> plan_state before step 0
    # (data, key, start, length, plan_state) -> (plan, plan_state after the chunk)
    batch_plan: Callable[[Any, jax.Array, jax.Array, int, Any], tuple[Any, Any]]
    sample_batch: Callable[[Any, Any], Any]  # (data, one step of the plan) -> batch
    loss: Callable[[Any, Any], jax.Array]  # (params, batch) -> mean loss over the batch
    evaluate: Callable[[Any, Any], dict[str, jax.Array]]  # (params, data) -> {"train_error": ...}
    data: Any
    batch_axis: int = 0  # the axis of every minibatch leaf that indexes the cases


def _epoch_order(num_cases: int, key: jax.Array, epoch: jax.Array) -> jax.Array:
    """The order of the cases in ``epoch``: a fresh permutation (``fold_in(key, epoch)``)."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), num_cases)


def _epoch_rows(
    num_cases: int,
    key: jax.Array,
    start: jax.Array,
    length: int,
    batch_size: int,
    order: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Rows of the minibatches of steps ``start .. start + length - 1``, shape (length, batch),
    and the order of the epoch that step ``start + length`` falls in.

    Every epoch's order (``_epoch_order``) is cut into ``num_cases // batch_size`` minibatches;
    the remainder is dropped. ``order`` is the order of the epoch that ``start`` falls in; later
    epochs' orders are computed only by a chunk that reaches them (a ``lax.cond``, which stays a
    branch under ``vmap`` when ``start`` is not batched), so a permutation, whose sort is far
    dearer than a step on a CPU, is computed once per epoch.
    """
    batches_per_epoch = num_cases // batch_size
    first_epoch = start // batches_per_epoch
    offset = start - first_epoch * batches_per_epoch
    # The chunk starts at most batches_per_epoch - 1 batches into its first epoch.
    num_later = (batches_per_epoch - 1 + length) // batches_per_epoch
    reached = (offset + length) // batches_per_epoch  # epochs entered after the first

    def later_orders():
        epochs = first_epoch + 1 + jnp.arange(num_later)
        return jax.vmap(lambda e: _epoch_order(num_cases, key, e))(epochs)

    later = jax.lax.cond(
        reached > 0, later_orders, lambda: jnp.zeros((num_later, num_cases), order.dtype)
    )
    orders = jnp.concatenate([order[None], later])
    rows = orders[:, : batches_per_epoch * batch_size].reshape(-1, batch_size)
    return jax.lax.dynamic_slice_in_dim(rows, offset, length), orders[reached]


def autoencoder(config: settings.Config, dataset: Dataset) -> Task:
    """A deep autoencoder on ``dataset``, as in Sutskever et al. (2013), Sec. 3 and Table 1.

    Logistic outputs are trained with cross-entropy (CURVES, MNIST), linear outputs with squared
    error (FACES). The reported error is the paper's: the squared reconstruction error summed over
    pixels, averaged over the cases of a whole split.
    """
    num_train, input_size = dataset.train.shape
    batch_size = config.run.batch_size
    if batch_size > num_train:
        raise settings.ConfigError(
            f"run.batch_size ({batch_size}) is larger than the training set ({num_train} cases)."
        )
    model = models.AUTOENCODERS[config.model.name](
        output_size=input_size,
        init_scale=config.model.init_scale,
        num_connections=config.model.num_connections,
        initialization=config.model.init,
    )
    logistic = config.model.outputs == "logistic"
    eval_batch_size = config.run.eval_batch_size

    def reconstruct(params, x):
        outputs = model.apply({"params": params}, x)
        return jax.nn.sigmoid(outputs) if logistic else outputs

    def init_params(key):
        return model.init(key, jnp.zeros((1, input_size), jnp.float32))["params"]

    def init_plan_state(key):
        return _epoch_order(num_train, key, 0)

    def batch_plan(data, key, start, length, order):
        return _epoch_rows(data["train"].shape[0], key, start, length, batch_size, order)

    def sample_batch(data, rows):
        return data["train"][rows]

    def loss(params, batch):
        if logistic:
            logits = model.apply({"params": params}, batch)
            # Cross-entropy with logits, softplus(z) - x z: one softplus per pixel, where
            # optax.sigmoid_binary_cross_entropy takes two log-sigmoids (7% of a CURVES step).
            per_case = jnp.sum(jax.nn.softplus(logits) - batch * logits, axis=-1)
        else:
            per_case = jnp.sum(jnp.square(reconstruct(params, batch) - batch), axis=-1)
        return per_case.mean()

    def squared_error(params, cases):
        def per_case(x):
            return jnp.sum(jnp.square(reconstruct(params, x) - x))

        return jax.lax.map(per_case, cases, batch_size=eval_batch_size).mean()

    def evaluate(params, data):
        return {f"{split}_error": squared_error(params, cases) for split, cases in data.items()}

    data = {"train": jnp.asarray(dataset.train), "test": jnp.asarray(dataset.test)}
    info = {"dataset": config.data.dataset, "model": config.model.name}
    return Task(
        name=config.data.dataset,
        metric="train_error",
        info=info,
        init_params=init_params,
        init_plan_state=init_plan_state,
        batch_plan=batch_plan,
        sample_batch=sample_batch,
        loss=loss,
        evaluate=evaluate,
        data=data,
    )


def sequence(config: settings.RnnConfig) -> Task:
    """A long-range RNN problem of Sutskever et al. (2013), Sec. 4 (see ``sequences.py``).

    Minibatches are fresh sequences drawn inside the compiled step; the errors are measured on a
    fixed set of ``data.num_test`` test sequences. The loss is summed over the steps where the
    mask is 1 and averaged over the sequences of the batch: squared error for addition and
    multiplication, softmax cross-entropy for memorization.
    """
    problem = sequences.PROBLEMS[config.data.task](config.data.length)
    batch_size = config.run.batch_size
    test = problem.sample(jax.random.key(config.data.seed), config.data.num_test)
    # Output biases: the mean target (its log for softmax outputs), from a large sample.
    sample = problem.sample(jax.random.key(config.data.seed + 1), 10_000)
    mean_target = jnp.sum(sample.targets * sample.mask[..., None], axis=(0, 1)) / sample.mask.sum()
    if problem.loss == "softmax":
        mean_target = jnp.log(jnp.maximum(mean_target, 1e-6))
    model = models.SequenceRNN(
        hidden_size=config.model.hidden_size,
        output_size=problem.output_size,
        input_scale=config.model.input_scale,
        output_bias=tuple(float(b) for b in mean_target),
        output_scale=config.model.output_scale,
        spectral_radius=config.model.spectral_radius,
        num_connections=config.model.num_connections,
    )

    def init_params(key):
        return model.init(key, test.inputs[:, :1])["params"]

    def init_plan_state(key):
        del key
        return jnp.zeros([], jnp.int32)  # nothing to carry (every step folds in its index);
        # a scalar, since orbax does not save empty arrays

    def batch_plan(data, key, start, length, plan_state):
        del data
        keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(start + jnp.arange(length))
        return keys, plan_state

    def sample_batch(data, key):
        del data
        return problem.sample(key, batch_size)

    def loss_and_outputs(params, batch):
        outputs = model.apply({"params": params}, batch.inputs)
        if problem.loss == "softmax":
            per_step = optax.softmax_cross_entropy(outputs, batch.targets)
        else:
            per_step = jnp.sum(jnp.square(outputs - batch.targets), axis=-1)
        return jnp.sum(per_step * batch.mask, axis=0).mean(), outputs

    def loss(params, batch):
        return loss_and_outputs(params, batch)[0]

    def evaluate(params, data):
        test_loss, outputs = loss_and_outputs(params, data)
        return {"loss": test_loss, "zero_one_error": problem.zero_one_error(outputs, data)}

    info = {"task": config.data.task, "length": config.data.length}
    name = f"{config.data.task} T={config.data.length}"
    return Task(
        name=name,
        metric="zero_one_error",
        info=info,
        init_params=init_params,
        init_plan_state=init_plan_state,
        batch_plan=batch_plan,
        sample_batch=sample_batch,
        loss=loss,
        evaluate=evaluate,
        data=test,
        batch_axis=1,  # sequences are time-major: (T, batch, ...)
    )
