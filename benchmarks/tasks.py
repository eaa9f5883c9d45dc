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
    minibatch (rows or keys, leading axis = step), so per-step work stays small.
    """

    name: str
    metric: str  # the key of ``evaluate`` that the progress bar, plot and summary lead with
    info: dict[str, Any]  # what identifies the run in its summary (dataset, model, ...)
    init_params: Callable[[jax.Array], Any]  # key -> params
    batch_plan: Callable[[Any, jax.Array, jax.Array, int], Any]  # (data, key, start, length)
    sample_batch: Callable[[Any, Any], Any]  # (data, one step of the plan) -> batch
    loss: Callable[[Any, Any], jax.Array]  # (params, batch) -> mean loss over the batch
    evaluate: Callable[[Any, Any], dict[str, jax.Array]]  # (params, data) -> {"train_error": ...}
    data: Any
    batch_axis: int = 0  # the axis of every minibatch leaf that indexes the cases


def _epoch_rows(
    num_cases: int, key: jax.Array, start: jax.Array, length: int, batch_size: int
) -> jax.Array:
    """Rows of the minibatches of steps ``start .. start + length - 1``, shape (length, batch).

    Every epoch is a fresh permutation of the cases (``fold_in(key, epoch)``), cut into
    ``num_cases // batch_size`` minibatches; the remainder of each permutation is dropped. Only the
    permutations of the epochs this chunk touches are computed.
    """
    batches_per_epoch = num_cases // batch_size
    first_epoch = start // batches_per_epoch
    # The chunk starts at most batches_per_epoch - 1 batches into its first epoch.
    num_epochs = -(-(length + batches_per_epoch - 1) // batches_per_epoch)
    epochs = first_epoch + jnp.arange(num_epochs)
    orders = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), num_cases))(
        epochs
    )
    rows = orders[:, : batches_per_epoch * batch_size].reshape(-1, batch_size)
    return jax.lax.dynamic_slice_in_dim(rows, start - first_epoch * batches_per_epoch, length)


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

    def batch_plan(data, key, start, length):
        return _epoch_rows(data["train"].shape[0], key, start, length, batch_size)

    def sample_batch(data, rows):
        return data["train"][rows]

    def loss(params, batch):
        if logistic:
            logits = model.apply({"params": params}, batch)
            per_case = optax.sigmoid_binary_cross_entropy(logits, batch).sum(axis=-1)
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
        config.data.dataset,
        "train_error",
        info,
        init_params,
        batch_plan,
        sample_batch,
        loss,
        evaluate,
        data,
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

    def batch_plan(data, key, start, length):
        del data
        return jax.vmap(lambda t: jax.random.fold_in(key, t))(start + jnp.arange(length))

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
        name,
        "zero_one_error",
        info,
        init_params,
        batch_plan,
        sample_batch,
        loss,
        evaluate,
        test,
        batch_axis=1,  # sequences are time-major: (T, batch, ...)
    )
