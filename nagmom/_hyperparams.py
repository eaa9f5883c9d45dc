"""Checking and normalising hyperparameters that may be numbers, traced arrays or schedules."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax


def is_concrete(value: jax.typing.ArrayLike) -> bool:
    """Whether ``value`` has a value now (not a tracer under ``jit``/``vmap``)."""
    return not isinstance(value, jax.core.Tracer)


def check_scalar(
    name: str,
    value: jax.typing.ArrayLike,
    *,
    low: float | None = None,
    high: float | None = None,
) -> None:
    """Raises a ``ValueError`` naming ``name`` if a concrete ``value`` is out of range.

    Traced values are not checked, so that a hyperparameter grid can run under ``jax.vmap``.
    """
    if not is_concrete(value):
        return
    array = np.asarray(value)
    if array.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got an array of shape {array.shape}.")
    # jnp.issubdtype knows bfloat16 (inject_hyperparams passes it for bfloat16 params).
    if not jnp.issubdtype(array.dtype, jnp.number) or jnp.iscomplexobj(array):
        raise ValueError(f"{name} must be a real number, got {value!r}.")
    number = float(array)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}.")
    if low is not None and number < low:
        raise ValueError(f"{name} must be >= {low}, got {number}.")
    if high is not None and number > high:
        raise ValueError(f"{name} must be <= {high}, got {number}.")


def as_schedule(
    name: str,
    value: optax.ScalarOrSchedule,
    *,
    low: float | None = None,
    high: float | None = None,
) -> Callable[[jax.typing.ArrayLike], jax.typing.ArrayLike]:
    """Returns ``value`` as a schedule, after checking it when it is a concrete scalar."""
    if callable(value):
        return value
    check_scalar(name, value, low=low, high=high)
    return lambda count: value
