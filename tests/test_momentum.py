"""nagmom's CM and NAG transforms against the paper's recursions (tests/reference.py)."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference

import nagmom
from nagmom import schedules

STEPS = 1200  # crosses the schedule's jumps at 250, 500, 750 and 1000
DIM = 8


def _problem(steps: int = STEPS, seed: int = 0):
    """A noisy quadratic: grad(t, x) = a * x - b + noise_t, in NumPy and in JAX."""
    rng = np.random.default_rng(seed)
    a = np.linspace(0.5, 2.0, DIM)
    b = np.ones(DIM)
    noise = 0.1 * rng.normal(size=(steps, DIM))
    theta0 = rng.normal(size=DIM)

    def grad_np(t, x):
        return a * x - b + noise[t]

    def grad_jax(t, x):
        return (
            jnp.asarray(a, x.dtype) * x - jnp.asarray(b, x.dtype) + jnp.asarray(noise, x.dtype)[t]
        )

    return theta0, grad_np, grad_jax


def _lr_np(t):
    return 0.01 * (1.0 + 0.5 * math.cos(t / 37.0))


def _lr_jax(count):
    return 0.01 * (1.0 + 0.5 * jnp.cos(count / 37.0))


def _run(tx, theta0, grad_jax, steps, *, mode="scan"):
    """Runs ``tx`` on held params; returns per-step held params and the final state."""
    params = jnp.asarray(theta0)

    def step(carry, t):
        params, state = carry
        updates, state = tx.update(grad_jax(t, params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    carry = (params, tx.init(params))
    ts = jnp.arange(steps)
    if mode == "scan":
        carry, held = jax.jit(lambda c: jax.lax.scan(step, c, ts))(carry)
        return np.asarray(held), carry[1]
    jit_step = jax.jit(step)
    held = []
    for t in ts:
        carry, p = jit_step(carry, t)
        held.append(np.asarray(p))
    return np.array(held), carry[1]


def _velocity(state):
    (found,) = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "velocity"))
        if hasattr(s, "velocity")
    ]
    return np.asarray(found.velocity)


TOLERANCE = {"float64": 1e-12, "float32": 2e-5}
PAPER_FORMS = {
    "cm": (nagmom.momentum, reference.classical_momentum),
    "nag": (nagmom.nesterov, reference.nesterov),
}


@pytest.mark.parametrize("mode", ["scan", "loop"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("form", ["cm", "nag"])
def test_paper_form_matches_reference_across_schedule_jumps(form, dtype, mode):
    transform, ref = PAPER_FORMS[form]
    theta0, grad_np, grad_jax = _problem()
    expected = ref(theta0, grad_np, _lr_np, lambda t: reference.sutskever_mu(t, 0.99), STEPS)
    with jax.enable_x64(dtype == "float64"):
        tx = transform(_lr_jax, schedules.sutskever_momentum(0.99))
        held, state = _run(tx, theta0.astype(dtype), grad_jax, STEPS, mode=mode)
        velocity = _velocity(state)
    assert held.dtype == dtype
    rtol = TOLERANCE[dtype]
    np.testing.assert_allclose(held, expected.held, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(velocity, expected.velocity[-1], rtol=rtol, atol=rtol * 1e-2)


def test_reference_test_fails_for_nag_using_mu_t_twice():
    """The twin of the test above: Optax's NAG (mu_t twice) misses the tolerance by far."""
    theta0, grad_np, grad_jax = _problem()
    mu_np = lambda t: reference.sutskever_mu(t, 0.99)  # noqa: E731
    lr = 0.01
    expected = reference.nesterov(theta0, grad_np, lambda t: lr, mu_np, STEPS).held
    wrong = reference.nesterov_mu_twice(theta0, grad_np, lambda t: lr, mu_np, STEPS).held
    with jax.enable_x64(True):
        optax_nag = optax.inject_hyperparams(optax.sgd)(
            learning_rate=lr, momentum=schedules.sutskever_momentum(0.99), nesterov=True
        )
        optax_held, _ = _run(optax_nag, theta0, grad_jax, STEPS)
        ours, _ = _run(
            nagmom.nesterov(lr, schedules.sutskever_momentum(0.99)), theta0, grad_jax, STEPS
        )
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    # Optax's trajectory is the mu-twice recursion, and that is far from the paper's.
    np.testing.assert_allclose(optax_held, wrong, rtol=1e-9, atol=1e-9)
    # It misses even the float32 tolerance of the central test by more than 10x.
    assert np.max(np.abs(optax_held - expected)) > 10 * 2 * TOLERANCE["float32"]
    # Before the first jump both agree: the difference is the schedule, nothing else.
    np.testing.assert_allclose(optax_held[:249], expected[:249], rtol=1e-9, atol=1e-9)


def test_learning_rate_inside_velocity_differs_from_optax_sgd_for_varying_lr():
    """optax.sgd scales the whole trace by lr_t; the paper scales only the new gradient."""
    theta0, grad_np, grad_jax = _problem(steps=300)
    expected = reference.classical_momentum(theta0, grad_np, _lr_np, lambda t: 0.9, 300).held
    with jax.enable_x64(True):
        ours, _ = _run(nagmom.momentum(_lr_jax, 0.9), theta0, grad_jax, 300)
        theirs, _ = _run(optax.sgd(_lr_jax, 0.9), theta0, grad_jax, 300)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(theirs - expected)) > 1e-4


@pytest.mark.parametrize("nesterov", [False, True], ids=["cm", "nag"])
def test_constant_hyperparameters_match_optax_sgd(nesterov):
    theta0, _, grad_jax = _problem(steps=200)
    ours_tx = (nagmom.nesterov if nesterov else nagmom.momentum)(0.02, 0.95)
    ours, _ = _run(ours_tx, theta0.astype(np.float32), grad_jax, 200)
    theirs, _ = _run(
        optax.sgd(0.02, 0.95, nesterov=nesterov), theta0.astype(np.float32), grad_jax, 200
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True], ids=["cm", "nag"])
def test_learning_rate_free_forms_match_reference(nesterov):
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(STEPS, DIM)) + 0.5
    mu_np = lambda t: reference.sutskever_mu(t, 0.995)  # noqa: E731
    expected = reference.learning_rate_free(grads, mu_np, nesterov=nesterov)
    with jax.enable_x64(True):
        transform = nagmom.scale_by_nesterov if nesterov else nagmom.scale_by_momentum
        tx = transform(schedules.sutskever_momentum(0.995))
        state = tx.init(jnp.zeros(DIM))

        def step(state, g):
            updates, state = tx.update(g, state)
            return state, updates

        _, updates = jax.jit(lambda s: jax.lax.scan(step, s, jnp.asarray(grads)))(state)
    np.testing.assert_allclose(np.asarray(updates), expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("nesterov", [False, True], ids=["cm", "nag"])
def test_learning_rate_free_form_chained_equals_paper_form_for_constant_lr(nesterov):
    theta0, _, grad_jax = _problem(steps=600)
    mu = schedules.sutskever_momentum(0.99)
    paper = (nagmom.nesterov if nesterov else nagmom.momentum)(0.01, mu)
    free = (nagmom.scale_by_nesterov if nesterov else nagmom.scale_by_momentum)(mu)
    chained = optax.chain(free, optax.scale_by_learning_rate(0.01))
    with jax.enable_x64(True):
        a, _ = _run(paper, theta0, grad_jax, 600)
        b, _ = _run(chained, theta0, grad_jax, 600)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_nesterov_eval_params_returns_theta_at_every_step():
    theta0, grad_np, grad_jax = _problem(steps=1100)
    mu_np = lambda t: reference.sutskever_mu(t, 0.99)  # noqa: E731
    expected = reference.nesterov(theta0, grad_np, _lr_np, mu_np, 1100)
    with jax.enable_x64(True):
        tx = optax.chain(
            optax.clip(1e6),  # inactive: checks that the state is found inside a chain
            nagmom.nesterov(_lr_jax, schedules.sutskever_momentum(0.99)),
        )

        def step(carry, t):
            params, state = carry
            updates, state = tx.update(grad_jax(t, params), state, params)
            params = optax.apply_updates(params, updates)
            return (params, state), (params, nagmom.nesterov_eval_params(params, state))

        carry = (jnp.asarray(theta0), tx.init(jnp.asarray(theta0)))
        _, (held, theta) = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(1100)))(carry)
        held, theta = np.asarray(held), np.asarray(theta)
    # Every step, including those right after the jumps at 250, 500, 750 and 1000.
    np.testing.assert_allclose(theta, expected.theta, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(held, expected.held, rtol=1e-12, atol=1e-12)
    # The held point is not theta: the look-ahead offset is not negligible.
    assert np.max(np.abs(held[-1] - expected.theta[-1])) > 1e-3


def test_nesterov_eval_params_learning_rate_free_form():
    theta0, grad_np, grad_jax = _problem(steps=400)
    mu_np = lambda t: reference.sutskever_mu(t, 0.99)  # noqa: E731
    expected = reference.nesterov(theta0, grad_np, lambda t: 0.01, mu_np, 400)
    with jax.enable_x64(True):
        tx = optax.chain(
            nagmom.scale_by_nesterov(schedules.sutskever_momentum(0.99)),
            optax.scale_by_learning_rate(0.01),
        )
        held, state = _run(tx, theta0, grad_jax, 400)
        theta = nagmom.nesterov_eval_params(jnp.asarray(held[-1]), state, learning_rate=0.01)
        with pytest.raises(ValueError, match="learning_rate"):
            nagmom.nesterov_eval_params(jnp.asarray(held[-1]), state)
    np.testing.assert_allclose(theta, expected.theta[-1], rtol=1e-12, atol=1e-12)


def test_nesterov_eval_params_rejects_states_without_exactly_one_nesterov_state():
    params = jnp.zeros(3)
    with pytest.raises(ValueError, match="found 0"):
        nagmom.nesterov_eval_params(params, nagmom.momentum(0.1, 0.9).init(params))
    two = optax.chain(nagmom.nesterov(0.1, 0.9), nagmom.nesterov(0.1, 0.9))
    with pytest.raises(ValueError, match="found 2"):
        nagmom.nesterov_eval_params(params, two.init(params))
    with pytest.raises(ValueError, match="learning_rate is only for"):
        state = nagmom.nesterov(0.1, 0.9).init(params)
        nagmom.nesterov_eval_params(params, state, learning_rate=0.1)


def test_nesterov_eval_params_skips_none_and_masked_leaves():
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    tx = optax.masked(nagmom.nesterov(0.5, 0.9), {"w": True, "b": False})
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.ones(3), "b": jnp.ones(2)}, state, params)
    held = optax.apply_updates(params, updates)
    theta = nagmom.nesterov_eval_params(held, state)
    # v_1 = -0.5; held w = 1 - 0.5 + 0.9 * (-0.5) = 0.05; theta w = 0.5; b is not optimised.
    np.testing.assert_allclose(held["w"], 0.05, rtol=1e-6)
    np.testing.assert_allclose(theta["w"], 0.5, rtol=1e-6)
    np.testing.assert_array_equal(theta["b"], held["b"])


@pytest.mark.parametrize("accumulator_dtype", [None, jnp.float32], ids=["default", "float32"])
def test_bfloat16_params_keep_float32_velocity_and_momentum(accumulator_dtype):
    """mu = 0.999, constant gradients: v_t = -lr (1 - mu^t) / (1 - mu), about 950 lr at t = 3000."""
    steps, lr, mu = 3000, 1.0, 0.999
    tx = nagmom.nesterov(lr, mu, accumulator_dtype=accumulator_dtype)
    params = jnp.zeros(4, jnp.bfloat16)
    state = tx.init(params)
    assert state.velocity.dtype == jnp.float32
    assert state.momentum.dtype == jnp.float32 and float(state.momentum) != 1.0

    def step(state, _):
        updates, state = tx.update(jnp.ones(4, jnp.bfloat16), state)
        return state, updates.dtype == jnp.bfloat16

    state, _ = jax.jit(lambda s: jax.lax.scan(step, s, None, length=steps))(state)
    closed_form = -lr * (1.0 - mu**steps) / (1.0 - mu)
    assert 949 < -closed_form < 951
    np.testing.assert_allclose(state.velocity, closed_form, rtol=1e-4)
    assert float(state.momentum) == np.float32(0.999) != 1.0


def test_bfloat16_velocity_stalls_as_expected_when_asked_for():
    """The twin: a bfloat16 accumulator cannot get past 256 steps of size 1."""
    tx = nagmom.scale_by_momentum(0.999, accumulator_dtype=jnp.bfloat16)
    state = tx.init(jnp.zeros(4, jnp.bfloat16))

    def step(state, _):
        return tx.update(jnp.ones(4, jnp.bfloat16), state)[1], None

    state, _ = jax.jit(lambda s: jax.lax.scan(step, s, None, length=3000))(state)
    assert state.velocity.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(state.velocity, np.float32), 256.0)


def _dtype_signature(tree):
    return [(x.dtype, x.weak_type, x.shape) for x in jax.tree.leaves(tree)]


TRANSFORMS = {
    "momentum": lambda: nagmom.momentum(0.1, schedules.sutskever_momentum(0.999)),
    "nesterov": lambda: nagmom.nesterov(0.1, schedules.sutskever_momentum(0.999)),
    "scale_by_momentum": lambda: nagmom.scale_by_momentum(0.9),
    "scale_by_nesterov": lambda: nagmom.scale_by_nesterov(schedules.sutskever_momentum(0.9)),
}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_state_dtypes_and_weak_types_are_stable(name, dtype):
    tx = TRANSFORMS[name]()
    params = {"w": jnp.ones((3, 2), dtype), "b": jnp.zeros(2, dtype)}
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, new_state = jax.jit(tx.update)(grads, state, params)
    assert _dtype_signature(new_state) == _dtype_signature(state)
    assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(lambda p: p.dtype, params)
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(state.velocity))


def test_float64_params_keep_float64_state():
    with jax.enable_x64(True):
        tx = nagmom.nesterov(0.1, 0.999)
        state = tx.init(jnp.ones(3, jnp.float64))
        _, new_state = tx.update(jnp.ones(3, jnp.float64), state)
        assert state.velocity.dtype == jnp.float64 == new_state.velocity.dtype
        assert _dtype_signature(new_state) == _dtype_signature(state)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_no_retrace_on_second_call(name):
    chex.clear_trace_counter()
    tx = TRANSFORMS[name]()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        updates, state = tx.update(params, state, params)
        return optax.apply_updates(params, updates), state

    params = jnp.ones(5)
    state = tx.init(params)
    for _ in range(3):
        params, state = step(params, state)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": -0.1, "momentum": 0.9}, "learning_rate must be >= 0"),
        ({"learning_rate": float("nan"), "momentum": 0.9}, "learning_rate must be finite"),
        ({"learning_rate": float("inf"), "momentum": 0.9}, "learning_rate must be finite"),
        ({"learning_rate": 0.1, "momentum": 1.5}, "momentum must be <= 1"),
        ({"learning_rate": 0.1, "momentum": -0.5}, "momentum must be >= 0"),
        ({"learning_rate": jnp.ones(2), "momentum": 0.9}, "learning_rate must be a scalar"),
        ({"learning_rate": 0.1, "momentum": "0.9"}, "momentum must be a real number"),
    ],
)
@pytest.mark.parametrize("transform", [nagmom.momentum, nagmom.nesterov], ids=["cm", "nag"])
def test_invalid_hyperparameters_raise_at_construction(transform, kwargs, match):
    with pytest.raises(ValueError, match=match):
        transform(**kwargs)


@pytest.mark.parametrize("transform", [nagmom.scale_by_momentum, nagmom.scale_by_nesterov])
def test_invalid_momentum_raises_for_learning_rate_free_forms(transform):
    with pytest.raises(ValueError, match="momentum must be <= 1"):
        transform(1.01)


@pytest.mark.parametrize("form", ["cm", "nag"])
def test_vmap_over_learning_rate_and_momentum_grid_matches_reference(form):
    transform, ref = PAPER_FORMS[form]
    steps, stage = 300, 10  # mu reaches every mu_max of the grid
    theta0, grad_np, grad_jax = _problem(steps=steps)
    theta0 = theta0.astype(np.float32)

    def final_params(lr, mu_max):
        tx = transform(lr, schedules.sutskever_momentum(mu_max, stage_length=stage))
        params = jnp.asarray(theta0)

        def step(carry, t):
            params, state = carry
            updates, state = tx.update(grad_jax(t, params), state)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
        return params

    lrs = [0.001, 0.01, 0.02]
    mus = [0.9, 0.99, 0.95]
    grid = jax.jit(jax.vmap(final_params))(jnp.array(lrs), jnp.array(mus))
    for i in range(3):
        mu = lambda t, m=mus[i]: reference.sutskever_mu(t, m, stage)  # noqa: E731
        expected = ref(theta0, grad_np, lambda t, lr=lrs[i]: lr, mu, steps).held[-1]
        np.testing.assert_allclose(grid[i], expected, rtol=1e-4, atol=1e-5)
