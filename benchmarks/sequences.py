"""The long-range RNN problems of Sutskever et al. (2013), Sec. 4, generated on the device.

The formats follow Hochreiter & Schmidhuber (1997) as used by Martens & Sutskever (2011). Every
generator is a pure JAX function of a key, so minibatches are drawn inside the compiled training
step. A batch is time-major: ``inputs`` (T, B, input_size), ``targets`` (T, B, output_size) and
``mask`` (T, B), 1 where the loss counts.

**Addition and multiplication** (``length`` = T, 80 in the paper). Sequence lengths are drawn
uniformly from [T, 1.1 T) and padded to 1.1 T. Each step has two inputs, a value drawn uniformly
from [0, 1] and a marker. The marker is -1 at step 0, +1 at two positions, -1 three steps before
the end (a "prediction is coming" signal, as in Sutskever's code) and 0 elsewhere. The first marked
position is drawn from [1, T/10), the second from [T/10, T/2). The network is read once, at the
last step of its sequence (index L for a sequence of length L + 1). The target there is the sum
(addition) or the product (multiplication) of the two marked values, unscaled, so it lies in
[0, 2] or [0, 1]. The value input is centred (0.5 is subtracted); the targets use the raw values.
Error: the fraction of sequences whose output is off by more than 0.04.

**Memorization** (noiseless, Martens & Sutskever 2011). A sequence of ``num_chars`` symbols from
an alphabet of ``char_size`` must be reproduced at the end of a sequence of ``length`` = T steps:
5-bit memorization has 5 binary symbols (T = 200), 20-bit memorization has 10 symbols of 5 values
(T = 80; 5^10 is about 2^23). Inputs are one-hot over ``char_size + 2`` units: the symbols, a
trigger and a blank. Steps 0 .. num_chars - 1 show the symbols. Step T - num_chars - 1 shows the
trigger; every other step shows the blank. Targets are one-hot over ``char_size + 1`` units: the
blank everywhere except the last ``num_chars`` steps, which hold the symbols. The loss
(softmax cross-entropy) counts every step. Error: the fraction of the memorized symbols (the last
``num_chars`` outputs) whose most probable output is not the right symbol; the blanks, which are
easy, are not counted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

ERROR_TOLERANCE = 0.04  # an arithmetic output is wrong when off by more than this


class SequenceBatch(NamedTuple):
    """One time-major minibatch."""

    inputs: jax.Array  # shape=(T, B, input_size), float32.
    targets: jax.Array  # shape=(T, B, output_size), float32.
    mask: jax.Array  # shape=(T, B), float32: 1 where the loss counts.


class Problem(NamedTuple):
    """A problem: its generator, its loss kind and its zero-one error."""

    sample: Callable[[jax.Array, int], SequenceBatch]  # (key, batch_size) -> batch
    input_size: int
    output_size: int
    loss: str  # "squared" or "softmax"
    zero_one_error: Callable[[jax.Array, SequenceBatch], jax.Array]  # (outputs, batch) -> rate


def arithmetic(
    key: jax.Array, batch_size: int, *, length: int, op: Callable[[jax.Array, jax.Array], jax.Array]
) -> SequenceBatch:
    """Addition (``op=jnp.add``) or multiplication (``jnp.multiply``) sequences."""
    max_length = length + length // 10
    first_end = max(2, length // 10)
    k_values, k_len, k_first, k_second = jax.random.split(key, 4)
    values = jax.random.uniform(k_values, (max_length, batch_size))
    last = jax.random.randint(k_len, (batch_size,), length, max_length)  # read-out index L
    first = jax.random.randint(k_first, (batch_size,), 1, first_end)
    second = jax.random.randint(k_second, (batch_size,), first_end, max(first_end + 1, length // 2))
    steps = jnp.arange(max_length)[:, None]
    marker = (steps == first) | (steps == second)
    marker = jnp.where((steps == 0) | (steps == last - 3), -1.0, marker.astype(jnp.float32))
    columns = jnp.arange(batch_size)
    target = op(values[first, columns], values[second, columns])
    read_out = (steps == last).astype(jnp.float32)
    inputs = jnp.stack([values - 0.5, marker], axis=-1)
    targets = (read_out * target)[..., None]
    return SequenceBatch(inputs, targets, read_out)


def memorization(
    key: jax.Array, batch_size: int, *, length: int, num_chars: int, char_size: int
) -> SequenceBatch:
    """Noiseless memorization of ``num_chars`` symbols from an alphabet of ``char_size``."""
    if length < 2 * num_chars + 1:
        raise ValueError(f"length must be at least {2 * num_chars + 1}; got {length}.")
    symbols = jax.random.randint(key, (batch_size, num_chars), 0, char_size)
    trigger, blank = char_size, char_size + 1
    steps = jnp.arange(length)[:, None]
    shown = jnp.concatenate(
        [symbols.T, jnp.full((length - num_chars, batch_size), blank, symbols.dtype)]
    )
    shown = jnp.where(steps == length - num_chars - 1, trigger, shown)
    recalled = jnp.concatenate(
        [jnp.full((length - num_chars, batch_size), char_size, symbols.dtype), symbols.T]
    )
    inputs = jax.nn.one_hot(shown, char_size + 2)
    targets = jax.nn.one_hot(recalled, char_size + 1)
    return SequenceBatch(inputs, targets, jnp.ones((length, batch_size)))


def _arithmetic_error(outputs: jax.Array, batch: SequenceBatch) -> jax.Array:
    """Fraction of sequences whose read-out is off by more than ``ERROR_TOLERANCE`` (or NaN)."""
    read_out = batch.mask.astype(bool)
    prediction = jnp.sum(jnp.where(read_out, outputs[..., 0], 0.0), axis=0)
    target = jnp.sum(batch.targets[..., 0] * batch.mask, axis=0)
    return jnp.mean(~(jnp.abs(prediction - target) <= ERROR_TOLERANCE))


def _memorization_error(outputs: jax.Array, batch: SequenceBatch, num_chars: int) -> jax.Array:
    """Fraction of the last ``num_chars`` outputs whose argmax is not the target symbol."""
    recalled = outputs[-num_chars:]
    predicted = jnp.argmax(recalled, axis=-1)
    expected = jnp.argmax(batch.targets[-num_chars:], axis=-1)
    finite = jnp.all(jnp.isfinite(recalled), axis=-1)
    return jnp.mean((predicted != expected) | ~finite)


def _arithmetic_problem(length: int, op) -> Problem:
    sample = functools.partial(arithmetic, length=length, op=op)
    return Problem(sample, 2, 1, "squared", _arithmetic_error)


def _memorization_problem(length: int, num_chars: int, char_size: int) -> Problem:
    sample = functools.partial(
        memorization, length=length, num_chars=num_chars, char_size=char_size
    )
    error = functools.partial(_memorization_error, num_chars=num_chars)
    return Problem(sample, char_size + 2, char_size + 1, "softmax", error)


PROBLEMS: dict[str, Callable[[int], Problem]] = {
    "addition": lambda length: _arithmetic_problem(length, jnp.add),
    "multiplication": lambda length: _arithmetic_problem(length, jnp.multiply),
    "memorization5": lambda length: _memorization_problem(length, 5, 2),
    "memorization20": lambda length: _memorization_problem(length, 10, 5),
}
