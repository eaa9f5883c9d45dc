"""Momentum schedules of Sutskever et al. (2013), as ``optax.Schedule`` functions.

Each factory checks its concrete arguments when called and returns ``schedule(count)``, built from
``jnp`` operations only, so it works under ``jax.jit``, ``jax.vmap`` and ``lax.scan``; arguments
may be traced arrays (a ``jax.vmap`` over ``mu_max``, say), which are not checked.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import optax

from nagmom import _hyperparams


def _check_int(name: str, value: int, *, low: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}.") from None
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}.")
    return value


def sutskever_momentum(
    mu_max: jax.typing.ArrayLike,
    *,
    stage_length: int = 250,
) -> optax.Schedule:
    r"""The momentum schedule of Sutskever et al. (2013), eq. (5).

    .. math::

      \mu_t = \min\left(1 - \frac{1}{2(\lfloor t / 250 \rfloor + 1)},\ \mu_{\max}\right),

    that is 0.5 for :math:`t < 250`, 0.75 from 250, 5/6 from 500, ..., capped at ``mu_max``. The
    cap is applied last, in the output dtype, so the value never exceeds ``mu_max`` as stored.

    Args:
      mu_max: :math:`\mu_{\max}` in ``[0, 1]``; the paper uses 0.9, 0.99, 0.995 and 0.999.
      stage_length: number of updates between increases (250 in the paper); a positive integer.

    Returns:
      An ``optax.Schedule`` mapping the update count :math:`t` to :math:`\mu_t` (floating point).

    Raises:
      ValueError: if a concrete ``mu_max`` lies outside ``[0, 1]`` or ``stage_length < 1``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from nagmom import schedules
      >>> mu = schedules.sutskever_momentum(0.99)
      >>> print(mu(jnp.array([0, 249, 250, 499, 500, 24_999, 25_000])))
      [0.5       0.5       0.75      0.75      0.8333333 0.99      0.99     ]

    References:
      Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and momentum in deep
      learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013, eq. (5).
    """
    _hyperparams.check_scalar("mu_max", mu_max, low=0.0, high=1.0)
    stage_length = _check_int("stage_length", stage_length, low=1)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        stage = jnp.floor_divide(count, stage_length)
        ramp = 1.0 - 0.5 / (stage + 1.0)
        return jnp.minimum(ramp, jnp.asarray(mu_max, jnp.result_type(ramp)))

    return schedule


def with_final_phase(
    schedule: optax.Schedule,
    *,
    total_steps: int,
    final_steps: int = 1000,
    final_value: jax.typing.ArrayLike = 0.9,
) -> optax.Schedule:
    r"""Caps a momentum schedule at ``final_value`` for the last ``final_steps`` updates.

    .. math::

      \mu'_t = \begin{cases}
        \mu_t & t < T - T_f, \\
        \min(\mu_t, \mu_f) & t \ge T - T_f,
      \end{cases}

    with :math:`T` = ``total_steps``, :math:`T_f` = ``final_steps`` and :math:`\mu_f` =
    ``final_value``. The paper (Sec. 3, Table 2) lowers :math:`\mu` to 0.9 for the last 1000
    updates; taking the minimum keeps a run with :math:`\mu_{\max} = 0` at zero. If
    ``final_steps >= total_steps`` the whole run is in the final phase.

    Args:
      schedule: the momentum schedule before the final phase.
      total_steps: number of updates in the run, :math:`T \ge 0`.
      final_steps: length of the final phase, :math:`T_f \ge 0`.
      final_value: the cap :math:`\mu_f` in ``[0, 1]``.

    Returns:
      An ``optax.Schedule``.

    Raises:
      ValueError: if ``schedule`` is not callable, a step count is negative or not an integer, or a
        concrete ``final_value`` lies outside ``[0, 1]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from nagmom import schedules
      >>> mu = schedules.with_final_phase(
      ...     schedules.sutskever_momentum(0.999), total_steps=3000, final_steps=1000)
      >>> print(mu(jnp.array([0, 250, 1999, 2000, 2999])))
      [0.5    0.75   0.9375 0.9    0.9   ]

    References:
      Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and momentum in deep
      learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013, Sec. 3, Table 2.
    """
    if not callable(schedule):
        raise ValueError(f"schedule must be a callable count -> value, got {schedule!r}.")
    total_steps = _check_int("total_steps", total_steps, low=0)
    final_steps = _check_int("final_steps", final_steps, low=0)
    _hyperparams.check_scalar("final_value", final_value, low=0.0, high=1.0)
    final_start = total_steps - final_steps

    def capped(count: jax.typing.ArrayLike) -> jax.Array:
        value = jnp.asarray(schedule(count))
        value = value.astype(jnp.promote_types(value.dtype, jnp.float32))
        cap = jnp.asarray(final_value, value.dtype)
        return jnp.where(count >= final_start, jnp.minimum(value, cap), value)

    return capped


def rnn_momentum(
    mu_0: jax.typing.ArrayLike,
    *,
    warmup_steps: int = 1000,
    warmup_value: jax.typing.ArrayLike = 0.9,
) -> optax.Schedule:
    r"""The momentum schedule of the paper's RNN experiments: a warm start, then :math:`\mu_0`.

    .. math::

      \mu_t = \begin{cases}
        \mu_{\text{warm}} & t < T_w, \\
        \mu_0 & t \ge T_w,
      \end{cases}

    with :math:`T_w` = ``warmup_steps`` (1000 in the paper) and :math:`\mu_{\text{warm}}` =
    ``warmup_value`` (0.9). The paper (Sec. 4, Table 5) uses :math:`\mu_0 \in \{0, 0.9, 0.98,
    0.995\}`. Equivalent to ``optax.join_schedules([optax.constant_schedule(warmup_value),
    optax.constant_schedule(mu_0)], [warmup_steps])``, but checked and usable with traced values.

    Args:
      mu_0: the momentum after the warm start, in ``[0, 1]``.
      warmup_steps: number of updates at ``warmup_value``, :math:`T_w \ge 0`.
      warmup_value: the momentum during the warm start, in ``[0, 1]``.

    Returns:
      An ``optax.Schedule``.

    Raises:
      ValueError: if a concrete ``mu_0`` or ``warmup_value`` lies outside ``[0, 1]`` or
        ``warmup_steps`` is negative or not an integer.

    Examples:
      >>> import jax.numpy as jnp
      >>> from nagmom import schedules
      >>> mu = schedules.rnn_momentum(0.995)
      >>> print(mu(jnp.array([0, 999, 1000, 50_000])))
      [0.9   0.9   0.995 0.995]

    References:
      Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and momentum in deep
      learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013, Sec. 4.
    """
    _hyperparams.check_scalar("mu_0", mu_0, low=0.0, high=1.0)
    _hyperparams.check_scalar("warmup_value", warmup_value, low=0.0, high=1.0)
    warmup_steps = _check_int("warmup_steps", warmup_steps, low=0)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        dtype = jnp.result_type(float)
        return jnp.where(
            count < warmup_steps, jnp.asarray(warmup_value, dtype), jnp.asarray(mu_0, dtype)
        )

    return schedule
