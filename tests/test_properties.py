"""Property-based tests: nagmom's four transforms against the NumPy references, for random
piecewise-constant momentum and learning-rate schedules, shapes and dtypes (hypothesis).

The schedules are traced arrays (jump points and values) inside one jitted run per transform,
shape and dtype, so the examples share compilations and stay fast.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import reference
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import nagmom

STEPS = 24
PIECES = 3  # up to this many jumps per schedule
SHAPES = [(), (1,), (5,), (2, 3)]
SETTINGS = settings(max_examples=30, deadline=None, database=None)
RTOL = {"float64": 1e-12, "float32": 2e-5}

unit = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
learning_rate = st.one_of(st.just(0.0), st.floats(0.0, 0.5))


@st.composite
def piecewise_constant(draw, values):
    """(jump points, values): value[i] holds from jump i - 1 (inclusive) to jump i."""
    jumps = sorted(draw(st.lists(st.integers(1, STEPS), max_size=PIECES)))
    jumps += [10**6] * (PIECES - len(jumps))
    return np.array(jumps, np.int32), np.array(
        draw(st.lists(values, min_size=PIECES + 1, max_size=PIECES + 1))
    )


def _schedule_np(jumps, values):
    return lambda t: float(values[np.sum(t >= jumps)])


def _schedule_jax(jumps, values):
    return lambda count: values[jnp.sum(count >= jumps)]


def _transform(form, mu, lr_sched):
    """Paper forms with a scheduled learning rate; chained free forms with a constant one."""
    if form in ("cm", "nag"):
        transform = nagmom.nesterov if form == "nag" else nagmom.momentum
        return transform(_schedule_jax(*lr_sched), mu)
    free = nagmom.scale_by_nesterov if form == "nag_chain" else nagmom.scale_by_momentum
    return optax.chain(free(mu), optax.scale_by_learning_rate(lr_sched[1][0]))


@functools.partial(jax.jit, static_argnames="form")
def _run_quadratic(theta0, a, b, noise, mu_sched, lr_sched, *, form):
    """Held params per step, final velocity and the paper's iterate theta (NAG's via
    nesterov_eval_params)."""
    tx = _transform(form, _schedule_jax(*mu_sched), lr_sched)

    def step(carry, noise_t):
        params, state = carry
        updates, state = tx.update(a * params - b + noise_t, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    (params, state), held = jax.lax.scan(step, (theta0, tx.init(theta0)), noise)
    (velocity,) = [
        s.velocity
        for s in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "velocity"))
        if hasattr(s, "velocity")
    ]
    if form == "nag":
        params = nagmom.nesterov_eval_params(params, state)
    elif form == "nag_chain":
        lr = lr_sched[1][0]
        params = nagmom.nesterov_eval_params(params, state, learning_rate=lr)
    if form.endswith("_chain"):
        velocity = -lr_sched[1][0] * velocity  # gradient units -> parameter units
    return held, velocity, params


@functools.partial(jax.jit, static_argnames="nesterov")
def _run_free_form(grads, mu_sched, *, nesterov):
    transform = nagmom.scale_by_nesterov if nesterov else nagmom.scale_by_momentum
    tx = transform(_schedule_jax(*mu_sched))

    def step(state, g):
        updates, state = tx.update(g, state)
        return state, updates

    state, updates = jax.lax.scan(step, tx.init(grads[0]), grads)
    return updates, state.velocity


def _tolerance(dtype, expected):
    """Relative to the trajectory's scale: float32 rounding errors grow with it."""
    scale = max(1.0, float(np.max(np.abs(expected))))
    return RTOL[dtype], RTOL[dtype] * scale


def _check_quadratic(form, dtype, shape, mu_sched, lr_sched, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.0, 1.5, shape)
    b = rng.normal(size=shape)
    noise = 0.1 * rng.normal(size=(STEPS, *shape))
    theta0 = rng.normal(size=shape)
    ref = reference.nesterov if form.startswith("nag") else reference.classical_momentum
    expected = ref(
        theta0,
        lambda t, x: a * x - b + noise[t],
        _schedule_np(*lr_sched),
        _schedule_np(*mu_sched),
        STEPS,
    )
    with jax.enable_x64(dtype == "float64"):
        args = [jnp.asarray(x, dtype) for x in (theta0, a, b, noise)]
        schedules = [(jnp.asarray(j), jnp.asarray(v, dtype)) for j, v in (mu_sched, lr_sched)]
        held, velocity, theta = _run_quadratic(*args, *schedules, form=form)
    assert held.dtype == velocity.dtype == dtype
    rtol, atol = _tolerance(dtype, expected.held)
    np.testing.assert_allclose(held, expected.held, rtol=rtol, atol=atol)
    np.testing.assert_allclose(velocity, expected.velocity[-1], rtol=rtol, atol=atol)
    np.testing.assert_allclose(theta, expected.theta[-1], rtol=rtol, atol=atol)


@SETTINGS
@given(
    nesterov=st.booleans(),
    dtype=st.sampled_from(["float64", "float32"]),
    shape=st.sampled_from(SHAPES),
    mu_sched=piecewise_constant(unit),
    lr_sched=piecewise_constant(learning_rate),
    seed=st.integers(0, 2**16),
)
def test_paper_forms_match_reference(nesterov, dtype, shape, mu_sched, lr_sched, seed):
    """Held params at every step, the final velocity and theta, with scheduled lr and mu."""
    _check_quadratic("nag" if nesterov else "cm", dtype, shape, mu_sched, lr_sched, seed)


@SETTINGS
@given(
    nesterov=st.booleans(),
    dtype=st.sampled_from(["float64", "float32"]),
    shape=st.sampled_from(SHAPES),
    mu_sched=piecewise_constant(unit),
    lr=learning_rate,
    seed=st.integers(0, 2**16),
)
def test_chained_free_forms_match_reference_for_constant_lr(
    nesterov, dtype, shape, mu_sched, lr, seed
):
    """scale_by_*(mu) -> scale_by_learning_rate(lr) is the paper's method when lr is constant;
    nesterov_eval_params(..., learning_rate=lr) gives its theta."""
    lr_sched = (np.full(PIECES, 10**6, np.int32), np.full(PIECES + 1, lr))
    form = "nag_chain" if nesterov else "cm_chain"
    _check_quadratic(form, dtype, shape, mu_sched, lr_sched, seed)


@SETTINGS
@given(
    nesterov=st.booleans(),
    dtype=st.sampled_from(["float64", "float32", "bfloat16"]),
    shape=st.sampled_from(SHAPES),
    mu_sched=piecewise_constant(unit),
    seed=st.integers(0, 2**16),
)
def test_learning_rate_free_forms_match_reference(nesterov, dtype, shape, mu_sched, seed):
    rng = np.random.default_rng(seed)
    grads = rng.normal(size=(STEPS, *shape)) + rng.normal()
    with jax.enable_x64(dtype == "float64"):
        grads = jnp.asarray(grads, dtype)
        mu_dtype = "float64" if dtype == "float64" else "float32"
        schedule = (jnp.asarray(mu_sched[0]), jnp.asarray(mu_sched[1], mu_dtype))
        updates, velocity = _run_free_form(grads, schedule, nesterov=nesterov)
    assert updates.dtype == dtype
    assert velocity.dtype == ("float64" if dtype == "float64" else "float32")
    # The reference sees the same (rounded) gradients, in float64. Both forms keep the velocity
    # u_{t+1} = mu_t u_t + g_t, which is CM's update.
    grads64 = np.asarray(grads, np.float64)
    expected = reference.learning_rate_free(grads64, _schedule_np(*mu_sched), nesterov=nesterov)
    u = reference.learning_rate_free(grads64, _schedule_np(*mu_sched), nesterov=False)[-1]
    rtol, atol = _tolerance("float64" if dtype == "float64" else "float32", expected)
    np.testing.assert_allclose(velocity, u, rtol=rtol, atol=atol)
    if dtype == "bfloat16":  # only the outgoing update is rounded, to 8 bits
        rtol, atol = 2**-8, 2**-8 * max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(np.asarray(updates, np.float64), expected, rtol=rtol, atol=atol)
