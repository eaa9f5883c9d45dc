r"""Classical momentum and Nesterov's accelerated gradient, exact for time-varying hyperparameters.

Sutskever, Martens, Dahl & Hinton (2013), eqs. (1)-(4), write both methods with the learning rate
inside the velocity:

.. math::

  \text{CM:}\quad v_{t+1} &= \mu_t v_t - \varepsilon_t \nabla f(\theta_t), &
  \theta_{t+1} &= \theta_t + v_{t+1}, \\
  \text{NAG:}\quad v_{t+1} &= \mu_t v_t - \varepsilon_t \nabla f(\theta_t + \mu_t v_t), &
  \theta_{t+1} &= \theta_t + v_{t+1}.

NAG is implemented in the usual reparameterisation: the parameters held (and differentiated) are
the look-ahead point :math:`\phi_t = \theta_t + \mu_t v_t`, and

.. math::

  \phi_{t+1} = \phi_t - \varepsilon_t g_t + \mu_{t+1} v_{t+1},
  \qquad g_t = \nabla f(\phi_t),

which needs both :math:`\mu_t` and :math:`\mu_{t+1}`. Using :math:`\mu_t` twice, as
``optax.sgd(nesterov=True)`` under ``optax.inject_hyperparams`` does, is exact only for constant
momentum.

Complex parameters are updated as pairs of real numbers (:math:`\mu_t` and
:math:`\varepsilon_t` are real); as for any Optax optimizer, pass the conjugate of ``jax.grad``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import GradientTransformationExtraArgs

from nagmom import _hyperparams


class MomentumState(NamedTuple):
    """State of :func:`momentum`: the velocity :math:`v_t`, in parameter units."""

    count: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32: updates applied so far.
    velocity: optax.Params


class ScaleByMomentumState(NamedTuple):
    """State of :func:`scale_by_momentum`: the velocity, in gradient units."""

    count: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32: updates applied so far.
    velocity: optax.Params


class NesterovState(NamedTuple):
    """State of :func:`nesterov`: the velocity :math:`v_t`, in parameter units."""

    count: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32: updates applied so far.
    momentum: jax.typing.ArrayLike  # shape=(): mu_t, the look-ahead in the held params.
    velocity: optax.Params


class ScaleByNesterovState(NamedTuple):
    """State of :func:`scale_by_nesterov`: the velocity, in gradient units."""

    count: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32: updates applied so far.
    momentum: jax.typing.ArrayLike  # shape=(): mu_t, the look-ahead in the held params.
    velocity: optax.Params


_NESTEROV_STATES = (NesterovState, ScaleByNesterovState)


def _scalar_dtype() -> jnp.dtype:
    """float64 when x64 is enabled, else float32: the dtype of stored hyperparameters."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _velocity_dtype(name: str, path: Any, param: Any, accumulator_dtype: Any) -> jnp.dtype:
    """The accumulator dtype if given, else the parameter's dtype promoted to at least float32.

    Raises a ``ValueError`` naming the leaf if the parameter is not floating point or complex, or
    if ``accumulator_dtype`` would drop (or invent) an imaginary part.
    """
    dtype = jnp.result_type(param)
    leaf = f"parameter {jax.tree_util.keystr(path) or '(root)'} ({dtype})"
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise ValueError(
            f"{name} needs floating-point or complex parameters, got {leaf}; leave it out of the "
            "optimised tree or mask it with optax.masked."
        )
    if accumulator_dtype is None:
        return jnp.promote_types(dtype, jnp.float32)
    if jnp.issubdtype(dtype, jnp.complexfloating) != jnp.issubdtype(
        accumulator_dtype, jnp.complexfloating
    ):
        raise ValueError(
            f"{name}: accumulator_dtype {accumulator_dtype} does not fit {leaf}: use a complex "
            "accumulator for complex parameters and a real one for real parameters, or None."
        )
    return accumulator_dtype


def _is_none(x: Any) -> bool:
    return x is None


def _is_skipped(x: Any) -> bool:
    """Leaves a transform does not update: ``None``, or masked out by ``optax.masked``."""
    return x is None or isinstance(x, optax.MaskedNode)


def _momentum_transform(
    learning_rate: optax.ScalarOrSchedule | None,
    momentum: optax.ScalarOrSchedule,
    *,
    nesterov: bool,
    accumulator_dtype: Any,
    state_type: Callable[..., NamedTuple],
    name: str,
) -> GradientTransformationExtraArgs:
    """The one implementation behind the four public transforms.

    With ``learning_rate=None`` the gradient enters the velocity unscaled (the learning-rate-free
    form); otherwise it enters as :math:`-\\varepsilon_t g_t` (the paper's form).
    """
    momentum_fn = _hyperparams.as_schedule("momentum", momentum, low=0.0, high=1.0)
    if learning_rate is None:
        step_scale_fn = None
    else:
        learning_rate_fn = _hyperparams.as_schedule("learning_rate", learning_rate, low=0.0)

        def step_scale_fn(count):
            return -learning_rate_fn(count)

    if accumulator_dtype is not None:
        accumulator_dtype = jax.dtypes.canonicalize_dtype(accumulator_dtype)
        if not jnp.issubdtype(accumulator_dtype, jnp.inexact):
            raise ValueError(
                f"accumulator_dtype must be a floating-point or complex dtype, got "
                f"{accumulator_dtype}."
            )

    def init_fn(params):
        def zeros(path, p):
            if p is None:
                return None
            return jnp.zeros_like(p, dtype=_velocity_dtype(name, path, p, accumulator_dtype))

        velocity = jax.tree_util.tree_map_with_path(zeros, params, is_leaf=_is_none)
        count = jnp.zeros([], jnp.int32)
        if nesterov:
            mu = jnp.asarray(momentum_fn(count), _scalar_dtype())
            return state_type(count=count, momentum=mu, velocity=velocity)
        return state_type(count=count, velocity=velocity)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = state.count
        next_count = optax.safe_increment(count)
        mu = momentum_fn(count)
        step_scale = 1.0 if step_scale_fn is None else step_scale_fn(count)
        mu_next = momentum_fn(next_count) if nesterov else None

        def compute_dtype(g, v):
            return jnp.promote_types(jnp.promote_types(g.dtype, v.dtype), jnp.float32)

        def new_velocity(g, v):
            if jnp.iscomplexobj(g) and not jnp.iscomplexobj(v):
                raise ValueError(
                    f"{name} got a complex gradient ({g.dtype}) for a real parameter, whose "
                    f"velocity is {v.dtype}; initialise with the complex parameters."
                )
            dtype = compute_dtype(g, v)
            step = jnp.asarray(step_scale, dtype) * g.astype(dtype)
            return jnp.asarray(mu, dtype) * v.astype(dtype) + step

        velocity = jax.tree.map(
            lambda g, v: None if g is None else new_velocity(g, v),
            updates,
            state.velocity,
            is_leaf=_is_none,
        )

        if nesterov:

            def nesterov_update(g, v_new):
                dtype = v_new.dtype
                step = jnp.asarray(step_scale, dtype) * g.astype(dtype)
                return (step + jnp.asarray(mu_next, dtype) * v_new).astype(g.dtype)

            updates = jax.tree.map(
                lambda g, v: None if g is None else nesterov_update(g, v),
                updates,
                velocity,
                is_leaf=_is_none,
            )
        else:
            updates = jax.tree.map(
                lambda g, v: None if g is None else v.astype(g.dtype),
                updates,
                velocity,
                is_leaf=_is_none,
            )
        velocity = jax.tree.map(
            lambda v, old: None if v is None else v.astype(old.dtype),
            velocity,
            state.velocity,
            is_leaf=_is_none,
        )
        if nesterov:
            mu_next = jnp.asarray(mu_next, _scalar_dtype())
            return updates, state_type(count=next_count, momentum=mu_next, velocity=velocity)
        return updates, state_type(count=next_count, velocity=velocity)

    return GradientTransformationExtraArgs(init_fn, update_fn)


def momentum(
    learning_rate: optax.ScalarOrSchedule,
    momentum: optax.ScalarOrSchedule,
    *,
    accumulator_dtype: Any | None = None,
) -> GradientTransformationExtraArgs:
    r"""Classical momentum (CM) with the learning rate inside the velocity.

    .. math::

      v_{t+1} = \mu_t v_t - \varepsilon_t g_t, \qquad \text{update}_t = v_{t+1},

    where :math:`t` counts the updates already applied (the first update uses :math:`t = 0`),
    :math:`\varepsilon_t` is ``learning_rate`` and :math:`\mu_t` is ``momentum``. The returned
    updates are added to the parameters (``optax.apply_updates``); no further scaling is needed.

    Because :math:`\varepsilon_t` multiplies the gradient before it enters the velocity, this is
    exact for a time-varying learning rate, unlike ``optax.sgd``, which scales the whole velocity.

    .. note::
      A NaN or Inf gradient makes the velocity non-finite for good: later updates multiply it by
      :math:`\mu_t`, and even :math:`0 \cdot \text{NaN}` is NaN, so the parameters follow. Wrap
      the optimizer in ``optax.apply_if_finite`` to skip such steps; a skipped step leaves the
      parameters, the velocity and the count untouched.

    Args:
      learning_rate: :math:`\varepsilon_t`: a non-negative float, a (possibly traced) scalar array,
        or an ``optax.Schedule`` of the update count.
      momentum: :math:`\mu_t` in ``[0, 1]``: a float, a scalar array or an ``optax.Schedule``, such
        as :func:`nagmom.schedules.sutskever_momentum`.
      accumulator_dtype: dtype of the velocity. ``None`` keeps it at least float32 (float32 for
        bfloat16/float16 params), so small steps are not lost. Hyperparameters are always applied
        in at least float32; only the returned update takes the gradient's dtype.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a :class:`MomentumState`.

    Raises:
      ValueError: if a concrete ``learning_rate`` is negative or not finite, or a concrete
        ``momentum`` lies outside ``[0, 1]``.

    Examples:
      >>> import jax.numpy as jnp, nagmom, optax
      >>> tx = nagmom.momentum(learning_rate=0.1, momentum=0.9)
      >>> params = jnp.array([1.0, 2.0])
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.ones(2), state)  # constant gradient 1
      ...     params = optax.apply_updates(params, updates)
      ...     print(updates)
      [-0.1 -0.1]
      [-0.19 -0.19]

    References:
      Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and momentum in deep
      learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013, eqs. (1)-(2).
    """
    return _momentum_transform(
        learning_rate,
        momentum,
        nesterov=False,
        accumulator_dtype=accumulator_dtype,
        state_type=MomentumState,
        name="nagmom.momentum",
    )


def nesterov(
    learning_rate: optax.ScalarOrSchedule,
    momentum: optax.ScalarOrSchedule,
    *,
    accumulator_dtype: Any | None = None,
) -> GradientTransformationExtraArgs:
    r"""Nesterov's accelerated gradient (NAG), exact when momentum and learning rate vary.

    The parameters held are the look-ahead point :math:`\phi_t = \theta_t + \mu_t v_t`, so the
    gradient passed in is :math:`g_t = \nabla f(\phi_t)`, as in the paper's eq. (3). Then

    .. math::

      v_{t+1} = \mu_t v_t - \varepsilon_t g_t, \qquad
      \text{update}_t = \phi_{t+1} - \phi_t = \mu_{t+1} v_{t+1} - \varepsilon_t g_t,

    where :math:`t` counts the updates already applied, :math:`\varepsilon_t` is
    ``learning_rate`` and :math:`\mu_t` is ``momentum``. Both :math:`\mu_t` and :math:`\mu_{t+1}`
    are read from the schedule in every update, so the iterates :math:`\theta_t` equal the paper's
    for any schedule. With constant hyperparameters this equals
    ``optax.sgd(learning_rate, momentum, nesterov=True)``.

    .. note::
      The parameters being trained are :math:`\phi_t`, not :math:`\theta_t`. Evaluate (and save)
      the model at :math:`\theta_t = \phi_t - \mu_t v_t`, which
      :func:`nesterov_eval_params` returns.

    .. note::
      Pass a momentum schedule here, not through ``optax.inject_hyperparams``: that wrapper
      evaluates it once per update and passes the constant :math:`\mu_t`, so the look-ahead uses
      :math:`\mu_t` where :math:`\mu_{t+1}` belongs (exact only while :math:`\mu` is constant).
      It also casts hyperparameters to the params' dtype: with bfloat16 params 0.999 becomes 1.0
      unless ``hyperparam_dtype=jnp.float32`` is given.

    .. note::
      A NaN or Inf gradient makes the velocity non-finite for good: later updates multiply it by
      :math:`\mu_t`, and even :math:`0 \cdot \text{NaN}` is NaN, so the parameters follow. Wrap
      the optimizer in ``optax.apply_if_finite`` to skip such steps; a skipped step leaves the
      parameters, the velocity and the count untouched.

    Args:
      learning_rate: :math:`\varepsilon_t`: a non-negative float, a (possibly traced) scalar array,
        or an ``optax.Schedule`` of the update count.
      momentum: :math:`\mu_t` in ``[0, 1]``: a float, a scalar array or an ``optax.Schedule``.
      accumulator_dtype: dtype of the velocity. ``None`` keeps it at least float32.
        Hyperparameters are always applied in at least float32; only the returned update takes
        the gradient's dtype.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a :class:`NesterovState`.

    Raises:
      ValueError: if a concrete ``learning_rate`` is negative or not finite, or a concrete
        ``momentum`` lies outside ``[0, 1]``.

    Examples:
      >>> import jax.numpy as jnp, nagmom, optax
      >>> mu = lambda count: jnp.where(count < 1, 0.5, 0.9)  # mu_0 = 0.5, then 0.9
      >>> tx = nagmom.nesterov(learning_rate=0.1, momentum=mu)
      >>> phi = jnp.zeros(2)
      >>> state = tx.init(phi)
      >>> updates, state = tx.update(jnp.ones(2), state)  # v_1 = -0.1, update = 0.9 v_1 - 0.1
      >>> phi = optax.apply_updates(phi, updates)
      >>> print(phi, nagmom.nesterov_eval_params(phi, state))
      [-0.19 -0.19] [-0.1 -0.1]

    References:
      Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and momentum in deep
      learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013, eqs. (3)-(4)
      and Sec. 2.1 (the look-ahead reparameterisation is used in Sutskever's thesis, 2013, Ch. 7).
    """
    return _momentum_transform(
        learning_rate,
        momentum,
        nesterov=True,
        accumulator_dtype=accumulator_dtype,
        state_type=NesterovState,
        name="nagmom.nesterov",
    )


def scale_by_momentum(
    momentum: optax.ScalarOrSchedule,
    *,
    accumulator_dtype: Any | None = None,
) -> GradientTransformationExtraArgs:
    r"""Learning-rate-free classical momentum, to chain with ``optax.scale_by_learning_rate``.

    .. math::

      u_{t+1} = \mu_t u_t + g_t, \qquad \text{update}_t = u_{t+1}.

    Followed by ``optax.scale_by_learning_rate(lr)`` this is :func:`momentum` with
    :math:`v_t = -\varepsilon u_t`, but only for a **constant** learning rate: a scheduled
    learning rate then rescales the whole velocity, not only the new gradient. Like
    ``optax.trace``, but with ``momentum`` as a schedule and a float32 velocity for low-precision
    params.

    .. note::
      A NaN or Inf gradient makes the velocity non-finite for good: later updates multiply it by
      :math:`\mu_t`, and even :math:`0 \cdot \text{NaN}` is NaN, so the parameters follow. Wrap
      the optimizer in ``optax.apply_if_finite`` to skip such steps; a skipped step leaves the
      parameters, the velocity and the count untouched.

    Args:
      momentum: :math:`\mu_t` in ``[0, 1]``: a float, a scalar array or an ``optax.Schedule``.
      accumulator_dtype: dtype of the velocity. ``None`` keeps it at least float32.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a
      :class:`ScaleByMomentumState`.

    Raises:
      ValueError: if a concrete ``momentum`` lies outside ``[0, 1]``.

    Examples:
      >>> import jax.numpy as jnp, nagmom, optax
      >>> tx = optax.chain(nagmom.scale_by_momentum(0.9), optax.scale_by_learning_rate(0.1))
      >>> state = tx.init(jnp.zeros(2))
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.ones(2), state)
      ...     print(updates)
      [-0.1 -0.1]
      [-0.19 -0.19]

    References:
      Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and momentum in deep
      learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013, eq. (1).
    """
    return _momentum_transform(
        None,
        momentum,
        nesterov=False,
        accumulator_dtype=accumulator_dtype,
        state_type=ScaleByMomentumState,
        name="nagmom.scale_by_momentum",
    )


def scale_by_nesterov(
    momentum: optax.ScalarOrSchedule,
    *,
    accumulator_dtype: Any | None = None,
) -> GradientTransformationExtraArgs:
    r"""Learning-rate-free exact NAG, to chain with ``optax.scale_by_learning_rate``.

    .. math::

      u_{t+1} = \mu_t u_t + g_t, \qquad \text{update}_t = g_t + \mu_{t+1} u_{t+1}.

    Followed by ``optax.scale_by_learning_rate(lr)`` this is :func:`nesterov` with
    :math:`v_t = -\varepsilon u_t`, but only for a **constant** learning rate. Unlike
    ``optax.trace(nesterov=True)`` it reads :math:`\mu_{t+1}` for the look-ahead, so it stays exact
    when the momentum changes.

    .. note::
      A NaN or Inf gradient makes the velocity non-finite for good: later updates multiply it by
      :math:`\mu_t`, and even :math:`0 \cdot \text{NaN}` is NaN, so the parameters follow. Wrap
      the optimizer in ``optax.apply_if_finite`` to skip such steps; a skipped step leaves the
      parameters, the velocity and the count untouched.

    Args:
      momentum: :math:`\mu_t` in ``[0, 1]``: a float, a scalar array or an ``optax.Schedule``.
      accumulator_dtype: dtype of the velocity. ``None`` keeps it at least float32.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a
      :class:`ScaleByNesterovState`.

    Raises:
      ValueError: if a concrete ``momentum`` lies outside ``[0, 1]``.

    Examples:
      >>> import jax.numpy as jnp, nagmom, optax
      >>> tx = optax.chain(nagmom.scale_by_nesterov(0.9), optax.scale_by_learning_rate(0.1))
      >>> state = tx.init(jnp.zeros(2))
      >>> updates, state = tx.update(jnp.ones(2), state)
      >>> print(updates)
      [-0.19 -0.19]

    References:
      Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and momentum in deep
      learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013, eqs. (3)-(4).
    """
    return _momentum_transform(
        None,
        momentum,
        nesterov=True,
        accumulator_dtype=accumulator_dtype,
        state_type=ScaleByNesterovState,
        name="nagmom.scale_by_nesterov",
    )


def nesterov_eval_params(
    params: optax.Params,
    opt_state: optax.OptState,
    *,
    learning_rate: jax.typing.ArrayLike | None = None,
) -> optax.Params:
    r"""The paper's iterate :math:`\theta_t = \phi_t - \mu_t v_t` from NAG's held look-ahead params.

    ``opt_state`` may be the state of :func:`nesterov` or of any Optax wrapper or chain holding
    exactly one :func:`nesterov` or :func:`scale_by_nesterov` state (``optax.chain``,
    ``optax.MultiSteps``, ``optax.masked``, ``optax.partition``, ``optax.inject_hyperparams``,
    ``optax.apply_if_finite``, or ``flax.nnx.Optimizer.opt_state``). With one Nesterov state per
    group of an ``optax.partition``, call it once per group, passing
    ``opt_state.inner_states[label]`` and the params returned by the previous call.

    Args:
      params: the held parameters :math:`\phi_t` (what the optimizer updates).
      opt_state: the optimizer state that goes with ``params``.
      learning_rate: only for :func:`scale_by_nesterov`, whose velocity is in gradient units: the
        constant learning rate :math:`\varepsilon` applied after it, so that
        :math:`\theta_t = \phi_t + \varepsilon \mu_t u_t`. Must be ``None`` for :func:`nesterov`.

    Returns:
      :math:`\theta_t`, with the structure and dtypes of ``params``. Leaves the optimizer does not
      update (``None`` or masked out) are returned unchanged.

    Raises:
      ValueError: if ``opt_state`` holds no Nesterov state or more than one, if ``learning_rate``
        is missing for (or given with) the wrong form, or if ``params`` does not match the state.
    """
    states = [
        leaf
        for leaf in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, _NESTEROV_STATES))
        if isinstance(leaf, _NESTEROV_STATES)
    ]
    if len(states) != 1:
        raise ValueError(
            "nesterov_eval_params needs an opt_state holding exactly one state of "
            f"nagmom.nesterov or nagmom.scale_by_nesterov; found {len(states)}. With one per "
            "group of optax.partition, call it once per group on opt_state.inner_states[label]."
        )
    (state,) = states
    # The look-ahead coefficient, unwrapped from containers such as flax.nnx.Variable.
    (momentum,) = jax.tree.leaves(state.momentum)
    if isinstance(state, NesterovState):
        if learning_rate is not None:
            raise ValueError(
                "learning_rate is only for nagmom.scale_by_nesterov; nagmom.nesterov keeps its "
                "velocity in parameter units. Call nesterov_eval_params(params, opt_state)."
            )
        lookahead_scale = momentum
    else:
        if learning_rate is None:
            raise ValueError(
                "nagmom.scale_by_nesterov keeps its velocity in gradient units: pass the constant "
                "learning_rate applied after it, nesterov_eval_params(params, opt_state, "
                "learning_rate=lr)."
            )
        _hyperparams.check_scalar("learning_rate", learning_rate, low=0.0)
        lookahead_scale = -learning_rate * momentum

    # Matched by key path, not by tree structure: flax.nnx.Optimizer wraps the state's arrays in
    # its own Variable type (the params are nnx.Param), and optax.masked may replace a whole
    # subtree by one MaskedNode.
    velocities = dict(jax.tree_util.tree_flatten_with_path(state.velocity, is_leaf=_is_skipped)[0])
    paths_and_params, treedef = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_none)

    def theta(path, p):
        found = [path[:n] for n in range(len(path), -1, -1) if path[:n] in velocities]
        if not found:
            raise ValueError(
                f"params{jax.tree_util.keystr(path)} has no velocity in opt_state: pass the "
                "params that go with opt_state."
            )
        used.add(found[0])
        v = velocities[found[0]]
        if _is_skipped(v) or p is None:
            return p
        p = jnp.asarray(p)
        if v.shape != p.shape:
            raise ValueError(
                f"params{jax.tree_util.keystr(path)} has shape {p.shape} but its velocity in "
                f"opt_state has shape {v.shape}: pass the params that go with opt_state."
            )
        dtype = jnp.promote_types(jnp.promote_types(p.dtype, v.dtype), jnp.float32)
        offset = jnp.asarray(lookahead_scale, dtype) * v.astype(dtype)
        return (p.astype(dtype) - offset).astype(p.dtype)

    used = set()
    leaves = [theta(path, p) for path, p in paths_and_params]
    if len(used) != len(velocities):
        missing = [jax.tree_util.keystr(path) for path in velocities if path not in used]
        raise ValueError(
            f"opt_state has velocities for {', '.join(missing)}, which params lacks: pass the "
            "params that go with opt_state."
        )
    return jax.tree.unflatten(treedef, leaves)
