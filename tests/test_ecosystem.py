"""nagmom's transforms inside the Optax and Flax machinery, under JAX mechanics, with bad input.

Numerical claims are checked against the NumPy references of tests/reference.py (float64, under
``jax.enable_x64``) or against the unwrapped run; where it makes sense a twin shows the check can
fail.
"""

from __future__ import annotations

import math
import textwrap
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference
from flax import nnx
from multidevice import run_on_four_cpu_devices

import nagmom
from nagmom import schedules

DIM = 6
STEPS = 120
STAGE = 25  # a short Sutskever schedule: jumps at 25, 50, 75, 100
TOL = 1e-12
PAPER_FORMS = {
    "cm": (nagmom.momentum, reference.classical_momentum),
    "nag": (nagmom.nesterov, reference.nesterov),
}
FREE_FORMS = {"cm": nagmom.scale_by_momentum, "nag": nagmom.scale_by_nesterov}
ALL_TRANSFORMS = {
    "momentum": lambda lr, mu: nagmom.momentum(lr, mu),
    "nesterov": lambda lr, mu: nagmom.nesterov(lr, mu),
    "scale_by_momentum": lambda lr, mu: nagmom.scale_by_momentum(mu),
    "scale_by_nesterov": lambda lr, mu: nagmom.scale_by_nesterov(mu),
}


def _mu_np(t):
    return reference.sutskever_mu(t, 0.99, STAGE)


def _mu_jax():
    return schedules.sutskever_momentum(0.99, stage_length=STAGE)


def _lr_np(t):
    return 0.02 * (1.0 + 0.5 * math.cos(t / 7.0))


def _lr_jax(count):
    return 0.02 * (1.0 + 0.5 * jnp.cos(count / 7.0))


class Problem:
    """A noisy separable quadratic, grad(t, x) = a * x - b + noise[t], in NumPy and JAX."""

    def __init__(self, steps=STEPS, seed=0, dim=DIM):
        rng = np.random.default_rng(seed)
        self.a = np.linspace(0.5, 2.0, dim)
        self.b = np.ones(dim)
        self.noise = 0.1 * rng.normal(size=(steps, dim))
        self.theta0 = rng.normal(size=dim)

    def grad_np(self, t, x):
        return self.a * x - self.b + self.noise[t]

    def grad_jax(self, t, x):
        a, b, noise = (jnp.asarray(v, x.dtype) for v in (self.a, self.b, self.noise))
        return a * x - b + noise[t]


def _run(tx, params, grad_fn, steps, record=None):
    """Scans ``steps`` updates under jit; returns the stacked held params, ``record(state)``
    per step (if given) and the final state."""

    def step(carry, t):
        params, state = carry
        updates, state = tx.update(grad_fn(t, params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), (params, None if record is None else record(state))

    carry = (params, tx.init(params))
    (_, state), (held, recorded) = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(steps)))(
        carry
    )
    return jax.tree.map(np.asarray, held), recorded, state


def _assert_close(actual, expected, tol=TOL):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _find(state, cls):
    (found,) = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, cls))
        if isinstance(s, cls)
    ]
    return found


# --- optax.chain ----------------------------------------------------------------------------------


def _clip_np(g, max_norm):
    norm = np.linalg.norm(g)
    return g if norm <= max_norm else g * (max_norm / norm)


@pytest.mark.parametrize("form", list(PAPER_FORMS))
def test_chain_clip_before_matches_reference_with_clipped_gradients(form):
    transform, ref = PAPER_FORMS[form]
    p = Problem()
    max_norm = 0.3  # the raw gradients have norm ~2 at first: clipping is active
    expected = ref(
        p.theta0, lambda t, x: _clip_np(p.grad_np(t, x), max_norm), _lr_np, _mu_np, STEPS
    )
    unclipped = ref(p.theta0, p.grad_np, _lr_np, _mu_np, STEPS)
    with jax.enable_x64(True):
        tx = optax.chain(optax.clip_by_global_norm(max_norm), transform(_lr_jax, _mu_jax()))
        held, _, _ = _run(tx, jnp.asarray(p.theta0), p.grad_jax, STEPS)
    _assert_close(held, expected.held)
    assert _max_diff(expected.held, unclipped.held) > 1e-2  # the twin: clipping mattered


@pytest.mark.parametrize("form", list(FREE_FORMS))
def test_chain_clip_after_learning_rate_free_form(form):
    """scale_by_*(mu) -> clip_by_global_norm -> scale_by_learning_rate: the update is clipped."""
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(STEPS, DIM)) + 0.3
    lr, max_norm = 0.05, 4.0
    raw = reference.learning_rate_free(grads, _mu_np, nesterov=form == "nag")
    expected = -lr * np.array([_clip_np(u, max_norm) for u in raw])
    with jax.enable_x64(True):
        tx = optax.chain(
            FREE_FORMS[form](_mu_jax()),
            optax.clip_by_global_norm(max_norm),
            optax.scale_by_learning_rate(lr),
        )
        state = tx.init(jnp.zeros(DIM))
        _, updates = jax.jit(
            lambda s: jax.lax.scan(lambda s, g: tx.update(g, s)[::-1], s, jnp.asarray(grads))
        )(state)
    _assert_close(updates, expected)
    assert _max_diff(expected, -lr * raw) > 1e-2  # the twin: clipping mattered


@pytest.mark.parametrize("form", list(PAPER_FORMS))
def test_chain_add_decayed_weights_adds_decay_at_the_held_point(form):
    """For NAG the decay term is taken at the held look-ahead point, where the gradient is."""
    transform, ref = PAPER_FORMS[form]
    p = Problem()
    wd = 0.3
    expected = ref(p.theta0, lambda t, x: p.grad_np(t, x) + wd * x, _lr_np, _mu_np, STEPS)
    no_decay = ref(p.theta0, p.grad_np, _lr_np, _mu_np, STEPS)
    with jax.enable_x64(True):
        tx = optax.chain(optax.add_decayed_weights(wd), transform(_lr_jax, _mu_jax()))
        held, _, state = _run(tx, jnp.asarray(p.theta0), p.grad_jax, STEPS)
        if form == "nag":
            theta = nagmom.nesterov_eval_params(jnp.asarray(held[-1]), state)
            _assert_close(theta, expected.theta[-1])
    _assert_close(held, expected.held)
    assert _max_diff(expected.held, no_decay.held) > 1e-2


# --- optax.inject_hyperparams ---------------------------------------------------------------------


@pytest.mark.parametrize("form", list(PAPER_FORMS))
def test_inject_hyperparams_constant_equals_unwrapped(form):
    transform, _ = PAPER_FORMS[form]
    p = Problem()
    with jax.enable_x64(True):
        params = jnp.asarray(p.theta0)
        plain, _, plain_state = _run(transform(0.02, 0.95), params, p.grad_jax, STEPS)
        tx = optax.inject_hyperparams(transform)(learning_rate=0.02, momentum=0.95)
        injected, _, state = _run(tx, params, p.grad_jax, STEPS)
        assert float(state.hyperparams["momentum"]) == 0.95
        if form == "nag":
            _assert_close(
                nagmom.nesterov_eval_params(jnp.asarray(injected[-1]), state),
                nagmom.nesterov_eval_params(jnp.asarray(plain[-1]), plain_state),
            )
    _assert_close(injected, plain)


@pytest.mark.parametrize("form", list(PAPER_FORMS))
def test_inject_hyperparams_scheduled_learning_rate_is_exact(form):
    """The learning rate at count t is all either form needs: injecting its schedule is exact."""
    transform, ref = PAPER_FORMS[form]
    p = Problem()
    expected = ref(p.theta0, p.grad_np, _lr_np, lambda t: 0.9, STEPS)
    with jax.enable_x64(True):
        tx = optax.inject_hyperparams(transform)(learning_rate=_lr_jax, momentum=0.9)
        held, lrs, _ = _run(
            tx, jnp.asarray(p.theta0), p.grad_jax, STEPS, lambda s: s.hyperparams["learning_rate"]
        )
    _assert_close(held, expected.held)
    _assert_close(lrs, [_lr_np(t) for t in range(STEPS)])  # inject's count counts updates too


def test_inject_hyperparams_scheduled_momentum_is_exact_for_cm():
    p = Problem()
    expected = reference.classical_momentum(p.theta0, p.grad_np, _lr_np, _mu_np, STEPS)
    with jax.enable_x64(True):
        tx = optax.inject_hyperparams(nagmom.momentum)(learning_rate=_lr_jax, momentum=_mu_jax())
        held, _, _ = _run(tx, jnp.asarray(p.theta0), p.grad_jax, STEPS)
    _assert_close(held, expected.held)


def test_inject_hyperparams_scheduled_momentum_makes_nag_use_mu_t_twice():
    """inject_hyperparams passes the scalar mu_t, so the look-ahead misses mu_{t+1}.

    Passing the schedule to nagmom.nesterov directly is exact; injecting it gives the
    mu-twice recursion, which is off after every jump of the schedule.
    """
    p = Problem()
    exact = reference.nesterov(p.theta0, p.grad_np, _lr_np, _mu_np, STEPS)
    twice = reference.nesterov_mu_twice(p.theta0, p.grad_np, _lr_np, _mu_np, STEPS)
    with jax.enable_x64(True):
        params = jnp.asarray(p.theta0)
        direct, _, _ = _run(nagmom.nesterov(_lr_jax, _mu_jax()), params, p.grad_jax, STEPS)
        tx = optax.inject_hyperparams(nagmom.nesterov)(learning_rate=_lr_jax, momentum=_mu_jax())
        injected, _, _ = _run(tx, params, p.grad_jax, STEPS)
    _assert_close(direct, exact.held)
    _assert_close(injected, twice.held)
    _assert_close(injected[: STAGE - 1], exact.held[: STAGE - 1])  # equal before the first jump
    assert _max_diff(injected, exact.held) > 1e-3


def test_inject_hyperparams_rounds_momentum_to_bfloat16_params():
    """inject_hyperparams casts hyperparameters to the params' dtype: bf16(0.999) == 1.0.

    Then the velocity never decays: v_t = -lr t instead of -lr (1 - 0.999^t) / 0.001.
    nagmom.nesterov alone, or inject_hyperparams with hyperparam_dtype=float32, keeps 0.999.
    """
    steps, lr = 1000, 0.01
    params = jnp.zeros(3, jnp.bfloat16)
    closed_form = -lr * (1 - 0.999**steps) / (1 - 0.999)  # about -6.32
    txs = {
        "direct": nagmom.nesterov(lr, 0.999),
        "injected": optax.inject_hyperparams(nagmom.nesterov)(lr, 0.999),
        "injected_f32": optax.inject_hyperparams(nagmom.nesterov, hyperparam_dtype=jnp.float32)(
            lr, 0.999
        ),
    }
    velocity = {}
    for name, tx in txs.items():
        state = tx.init(params)

        def step(state, _, tx=tx):
            return tx.update(jnp.ones(3, jnp.bfloat16), state, params)[1], None

        state, _ = jax.jit(lambda s, step=step: jax.lax.scan(step, s, None, length=steps))(state)
        inner = _find(state, nagmom.NesterovState)
        velocity[name] = np.asarray(inner.velocity)
        assert inner.velocity.dtype == jnp.float32
        if name == "injected":
            assert state.hyperparams["momentum"].dtype == jnp.bfloat16
            assert float(state.hyperparams["momentum"]) == float(inner.momentum) == 1.0
    np.testing.assert_allclose(velocity["direct"], closed_form, rtol=1e-4)
    np.testing.assert_allclose(velocity["injected_f32"], closed_form, rtol=1e-4)
    np.testing.assert_allclose(velocity["injected"], -steps * float(jnp.bfloat16(lr)), rtol=1e-4)


# --- optax.MultiSteps -----------------------------------------------------------------------------


@pytest.mark.parametrize("form", list(PAPER_FORMS))
def test_multisteps_schedules_count_applied_updates(form):
    """k micro-steps make one update (mean gradient); mu_t counts updates, not micro-steps."""
    transform, ref = PAPER_FORMS[form]
    k, updates = 3, 100
    p = Problem(steps=k * updates)
    mean_noise = p.noise.reshape(updates, k, DIM).mean(axis=1)

    def grad_mean(t, x):
        return p.a * x - p.b + mean_noise[t]

    expected = ref(p.theta0, grad_mean, _lr_np, _mu_np, updates)
    micro_counted = ref(p.theta0, grad_mean, _lr_np, lambda t: _mu_np(k * t), updates)
    with jax.enable_x64(True):
        tx = optax.MultiSteps(
            transform(_lr_jax, _mu_jax()), every_k_schedule=k, accumulator_dtype=jnp.float64
        )  # its gradient accumulator is float32 by default
        held, _, state = _run(tx, jnp.asarray(p.theta0), p.grad_jax, k * updates)
        if form == "nag":
            theta = nagmom.nesterov_eval_params(jnp.asarray(held[-1]), state)
            _assert_close(theta, expected.theta[-1])
    assert int(state.inner_opt_state.count) == updates
    _assert_close(held[k - 1 :: k], expected.held)
    _assert_close(held[0], p.theta0)  # nothing applied during accumulation
    assert _max_diff(micro_counted.held, expected.held) > 1e-3


# --- optax.masked and optax.partition -------------------------------------------------------------


def _two_leaf_problem():
    w, b = Problem(seed=1), Problem(seed=2)
    params = {"w": w.theta0, "b": b.theta0}

    def grad_jax(t, params):
        return {"w": w.grad_jax(t, params["w"]), "b": b.grad_jax(t, params["b"])}

    return w, b, params, grad_jax


@pytest.mark.parametrize("form", list(PAPER_FORMS))
def test_masked_updates_selected_leaves_and_passes_the_rest_through(form):
    transform, ref = PAPER_FORMS[form]
    w, b, params, grad_jax = _two_leaf_problem()
    expected = ref(w.theta0, w.grad_np, _lr_np, _mu_np, STEPS)
    with jax.enable_x64(True):
        tx = optax.masked(transform(_lr_jax, _mu_jax()), {"w": True, "b": False})
        params = jax.tree.map(jnp.asarray, params)
        held, _, state = _run(tx, params, grad_jax, STEPS)
        if form == "nag":
            theta = nagmom.nesterov_eval_params(jax.tree.map(lambda h: h[-1], held), state)
            _assert_close(theta["w"], expected.theta[-1])
            np.testing.assert_array_equal(theta["b"], held["b"][-1])
    _assert_close(held["w"], expected.held)
    # optax.masked passes masked-out gradients through unchanged: b takes raw gradient steps.
    b_expected = [b.theta0]
    for t in range(STEPS):
        b_expected.append(b_expected[-1] + b.grad_np(t, b_expected[-1]))
    _assert_close(held["b"], b_expected[1:])


def test_partition_nesterov_and_sgd_with_eval_params():
    w, b, params, grad_jax = _two_leaf_problem()
    expected = reference.nesterov(w.theta0, w.grad_np, _lr_np, _mu_np, STEPS)
    sgd = reference.classical_momentum(b.theta0, b.grad_np, lambda t: 0.05, lambda t: 0.0, STEPS)
    with jax.enable_x64(True):
        tx = optax.partition(
            {"nag": nagmom.nesterov(_lr_jax, _mu_jax()), "sgd": optax.sgd(0.05)},
            {"w": "nag", "b": "sgd"},
        )
        held, _, state = _run(tx, jax.tree.map(jnp.asarray, params), grad_jax, STEPS)
        theta = nagmom.nesterov_eval_params(jax.tree.map(lambda h: h[-1], held), state)
    _assert_close(held["w"], expected.held)
    _assert_close(held["b"], sgd.held)
    _assert_close(theta["w"], expected.theta[-1])
    np.testing.assert_array_equal(theta["b"], held["b"][-1])


def test_partition_with_two_nesterov_groups_evaluates_group_by_group():
    w, b, params, grad_jax = _two_leaf_problem()
    expected_w = reference.nesterov(w.theta0, w.grad_np, _lr_np, _mu_np, STEPS)
    expected_b = reference.nesterov(b.theta0, b.grad_np, lambda t: 0.01, lambda t: 0.9, STEPS)
    with jax.enable_x64(True):
        tx = optax.partition(
            {"w": nagmom.nesterov(_lr_jax, _mu_jax()), "b": nagmom.nesterov(0.01, 0.9)},
            {"w": "w", "b": "b"},
        )
        held, _, state = _run(tx, jax.tree.map(jnp.asarray, params), grad_jax, STEPS)
        last = jax.tree.map(lambda h: jnp.asarray(h[-1]), held)
        with pytest.raises(ValueError, match="found 2.*once per group"):
            nagmom.nesterov_eval_params(last, state)
        theta = nagmom.nesterov_eval_params(last, state.inner_states["w"])
        theta = nagmom.nesterov_eval_params(theta, state.inner_states["b"])
    _assert_close(theta["w"], expected_w.theta[-1])
    _assert_close(theta["b"], expected_b.theta[-1])


# --- optax.apply_if_finite and non-finite gradients -----------------------------------------------


@pytest.mark.parametrize(
    "form, bad",
    [("nag", np.nan), ("nag", -np.inf), ("cm", np.inf)],
    ids=["nag-nan", "nag-inf", "cm-inf"],
)
def test_apply_if_finite_skips_the_step_and_leaves_state_untouched(form, bad):
    """A non-finite gradient at call k changes nothing; the run equals the one without it.

    k sits on the schedule's first jump, so an advanced count would show.
    """
    transform, ref = PAPER_FORMS[form]
    k = STAGE
    p = Problem()
    expected = ref(p.theta0, p.grad_np, _lr_np, _mu_np, STEPS)
    bad_row = np.zeros((1, DIM))
    bad_row[0, 2] = bad
    noise = np.concatenate([p.noise[:k], bad_row, p.noise[k:]])

    def grad_jax(t, x):
        return jnp.asarray(p.a) * x - jnp.asarray(p.b) + jnp.asarray(noise)[t]

    def record(state):
        inner = _find(state, nagmom.NesterovState if form == "nag" else nagmom.MomentumState)
        return inner.count, inner.velocity

    with jax.enable_x64(True):
        tx = optax.apply_if_finite(transform(_lr_jax, _mu_jax()), max_consecutive_errors=3)
        held, (counts, velocities), state = _run(
            tx, jnp.asarray(p.theta0), grad_jax, STEPS + 1, record
        )
    assert int(state.total_notfinite) == 1
    np.testing.assert_array_equal(held[k], held[k - 1])
    np.testing.assert_array_equal(velocities[k], velocities[k - 1])
    assert int(counts[k]) == int(counts[k - 1]) == k
    assert np.all(np.isfinite(held))
    _assert_close(np.delete(held, k, axis=0), expected.held)
    _assert_close(np.delete(velocities, k, axis=0), expected.velocity)


@pytest.mark.parametrize("name", list(ALL_TRANSFORMS))
def test_nonfinite_gradient_without_a_guard_poisons_the_velocity_for_good(name):
    """The docstrings' note: NaN or Inf in a gradient leaves the velocity non-finite for good,
    even with mu = 0 (0 * NaN = NaN) and lr = 0; other coordinates are unaffected."""

    @jax.jit
    def run(grads, lr, mu):
        tx = ALL_TRANSFORMS[name](lr, mu)

        def step(state, g):
            updates, state = tx.update(g, state)
            return state, (updates, state.velocity)

        return jax.lax.scan(step, tx.init(jnp.zeros(3)), grads)[1]

    for bad in (np.nan, np.inf):
        grads = np.ones((12, 3), np.float32)
        grads[2, 0] = bad
        for lr, mu in [(0.1, 0.9), (0.1, 0.0), (0.0, 0.0)]:
            updates, velocity = map(np.asarray, run(grads, lr, mu))
            assert np.all(np.isfinite(velocity[:2])) and np.all(np.isfinite(velocity[:, 1:]))
            assert not np.any(np.isfinite(velocity[2:, 0])), (bad, lr, mu)
            assert not np.any(np.isfinite(updates[2:, 0])), (bad, lr, mu)


# --- flax.nnx.Optimizer ---------------------------------------------------------------------------


class _MLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(4, 16, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def test_nnx_optimizer_trains_and_equals_the_plain_optax_run():
    steps = 60
    x = jax.random.normal(jax.random.key(1), (32, 4))
    y = jnp.sin(x.sum(axis=1, keepdims=True))
    tx = nagmom.nesterov(0.05, schedules.sutskever_momentum(0.9, stage_length=20))

    def loss_fn(model):
        return jnp.mean((model(x) - y) ** 2)

    model = _MLP(nnx.Rngs(0))
    graphdef, params0 = nnx.split(_MLP(nnx.Rngs(0)), nnx.Param)  # a twin, left untrained
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer)) for _ in range(steps)]

    # The same run on plain pytrees.
    def pure_loss(params):
        return loss_fn(nnx.merge(graphdef, params))

    def pure_step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(pure_loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.jit(lambda c: jax.lax.scan(pure_step, c, None, length=steps))(
        (params0, tx.init(params0))
    )

    held = nnx.state(model, nnx.Param)
    params_after = jax.tree.map(np.array, held)  # a copy: nnx.state shares the model's Variables
    chex.assert_trees_all_close(held, params, rtol=1e-5, atol=1e-6)
    theta = nagmom.nesterov_eval_params(held, optimizer.opt_state)
    chex.assert_trees_all_close(
        theta, nagmom.nesterov_eval_params(params, state), rtol=1e-5, atol=1e-6
    )
    assert jax.tree.structure(theta) == jax.tree.structure(held)
    assert losses[-1] < 0.5 * losses[0]
    # theta is not the held point. The README's pattern evaluates a clone there and leaves the
    # trained model at the held point.
    pairs = zip(jax.tree.leaves(theta), jax.tree.leaves(held), strict=True)
    assert max(_max_diff(a, b) for a, b in pairs) > 1e-4
    eval_model = nnx.clone(model)
    nnx.update(eval_model, theta)
    chex.assert_trees_all_equal(nnx.state(eval_model, nnx.Param), theta)
    chex.assert_trees_all_equal(nnx.state(model, nnx.Param), params_after)
    assert float(loss_fn(eval_model)) < 0.5 * losses[0]


# --- JAX mechanics --------------------------------------------------------------------------------


def test_no_retrace_inside_a_stack_of_wrappers():
    chex.clear_trace_counter()
    inner = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.inject_hyperparams(nagmom.nesterov)(learning_rate=_lr_jax, momentum=0.9),
    )
    tx = optax.MultiSteps(optax.apply_if_finite(inner, max_consecutive_errors=2), 2)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        updates, state = tx.update(params, state, params)
        return optax.apply_updates(params, updates), state

    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2, jnp.bfloat16)}
    state = tx.init(params)
    for _ in range(4):
        params, state = step(params, state)


def _signature(tree):
    return jax.tree.map(
        lambda x: (x.shape, jnp.dtype(x.dtype), getattr(x, "weak_type", False)), tree
    )


@pytest.mark.parametrize("name", list(ALL_TRANSFORMS))
def test_abstract_init_on_shape_dtype_structs(name):
    tx = ALL_TRANSFORMS[name](0.1, _mu_jax())
    with jax.enable_x64(True):
        tree = {
            "f32": jax.ShapeDtypeStruct((3, 4), jnp.float32),
            "bf16": jax.ShapeDtypeStruct((2,), jnp.bfloat16),
            "f64": jax.ShapeDtypeStruct((), jnp.float64),
            "c64": jax.ShapeDtypeStruct((2, 2), jnp.complex64),
            "none": None,
        }
        abstract = jax.eval_shape(tx.init, tree)
        concrete = tx.init(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree))
        assert _signature(abstract) == _signature(concrete)
        velocity = {k: v.dtype for k, v in abstract.velocity.items() if v is not None}
        assert velocity == {
            "f32": jnp.float32,
            "bf16": jnp.float32,
            "f64": jnp.float64,
            "c64": jnp.complex64,
        }
        assert abstract.velocity["none"] is None
        assert abstract.velocity["f32"].shape == (3, 4)


@pytest.mark.parametrize("name", list(ALL_TRANSFORMS))
def test_donating_params_and_state_is_warning_free(name):
    mu = jnp.array(0.9)  # an array hyperparameter must not be aliased by the state
    tx = ALL_TRANSFORMS[name](0.1, mu)

    def step(params, state):
        updates, state = tx.update(params, state, params)
        return optax.apply_updates(params, updates), state

    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3, jnp.bfloat16)}  # bf16: a float32 velocity
    state = tx.init(params)
    donating = jax.jit(step, donate_argnums=(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new_params, new_state = donating(params, state)
        new_params, new_state = donating(new_params, new_state)
    # Every buffer is reused except state.momentum, which update never reads (XLA prunes it).
    assert all(x.is_deleted() for x in jax.tree.leaves((params, state.count, state.velocity)))
    assert not mu.is_deleted()
    # The twin: a step that drops the velocity wastes its donated buffers, and JAX says so.
    lossy = jax.jit(lambda p, s: (step(p, s)[0], s.count), donate_argnums=(0, 1))
    with pytest.warns(UserWarning, match="donated buffers were not usable"):
        lossy(new_params, new_state)


_SHARDING_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax, nagmom
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

    assert len(jax.devices()) == 4, jax.devices()
    specs = {"rows": P("x", None), "cols": P(None, "x"), "bf16": P(None, "x"), "rep": P()}
    dtypes = {"rows": jnp.float32, "cols": jnp.float32, "bf16": jnp.bfloat16, "rep": jnp.float32}
    shapes = {"rows": (8, 4), "cols": (4, 8), "bf16": (2, 8), "rep": (3,)}
    host = {k: np.linspace(-1.0, 1.0, np.prod(shapes[k])).reshape(shapes[k]) for k in specs}

    def same(a, b):
        return a.sharding.is_equivalent_to(b.sharding, a.ndim)

    # The two code paths: NAG in the paper form, CM in the learning-rate-free form.
    for tx in (nagmom.nesterov(0.1, nagmom.schedules.sutskever_momentum(0.99)),
               nagmom.scale_by_momentum(0.9)):
        def step(p, s, tx=tx):
            u, s = tx.update(p, s, p)
            return optax.apply_updates(p, u), s

        local = {k: jnp.asarray(host[k], dtypes[k]) for k in host}
        expected_p, expected_s = jax.jit(step)(local, tx.init(local))
        for axis_type in (AxisType.Explicit, AxisType.Auto):
            mesh = jax.make_mesh((4,), ("x",), axis_types=(axis_type,))
            params = {k: jax.device_put(np.asarray(local[k]), NamedSharding(mesh, specs[k]))
                      for k in host}  # from host copies: donation must not delete local[k]
            shardings = {k: params[k].sharding for k in params}
            state = tx.init(params)
            assert all(same(state.velocity[k], params[k]) for k in params), axis_type
            with jax.set_mesh(mesh):
                if axis_type == AxisType.Explicit:
                    jitted = jax.jit(tx.init)(params)
                    assert all(same(jitted.velocity[k], params[k]) for k in params)
                p, s = jax.jit(step, donate_argnums=(0, 1))(params, state)
            for k in p:
                assert p[k].sharding.is_equivalent_to(shardings[k], p[k].ndim), (k, axis_type)
                assert same(s.velocity[k], p[k]), (k, axis_type)
                np.testing.assert_allclose(np.asarray(p[k], np.float32),
                                           np.asarray(expected_p[k], np.float32), rtol=1e-6)
                np.testing.assert_allclose(s.velocity[k], expected_s.velocity[k], rtol=1e-6)
    print("OK")
    """
)


def test_state_keeps_each_parameters_sharding_on_four_devices():
    run_on_four_cpu_devices(_SHARDING_SCRIPT)


@pytest.mark.parametrize("name", list(ALL_TRANSFORMS))
def test_none_leaves_and_empty_pytrees(name):
    tx = ALL_TRANSFORMS[name](0.5, 0.9)
    params = {"w": jnp.ones(3), "frozen": None, "empty": {}}
    state = tx.init(params)
    assert state.velocity["frozen"] is None and state.velocity["empty"] == {}
    grads = {"w": jnp.ones(3), "frozen": None, "empty": {}}
    updates, state = jax.jit(tx.update)(grads, state, params)
    assert updates["frozen"] is None and updates["empty"] == {}
    # (first update, velocity) for a unit gradient, lr = 0.5, mu = 0.9.
    expected = {
        "momentum": (-0.5, -0.5),
        "nesterov": (-0.5 + 0.9 * -0.5, -0.5),
        "scale_by_momentum": (1.0, 1.0),
        "scale_by_nesterov": (1.0 + 0.9 * 1.0, 1.0),
    }[name]
    _assert_close(updates["w"], np.full(3, expected[0]), 1e-6)
    _assert_close(state.velocity["w"], np.full(3, expected[1]), 1e-6)
    if name == "nesterov":
        theta = nagmom.nesterov_eval_params(optax.apply_updates(params, updates), state)
        assert theta["frozen"] is None and theta["empty"] == {}
        _assert_close(theta["w"], np.full(3, 0.5), 1e-6)
    for empty in ({}, (), None):
        state = tx.init(empty)
        updates, _ = jax.jit(tx.update)(empty, state, empty)
        assert updates == empty


@pytest.mark.parametrize("name", list(ALL_TRANSFORMS))
def test_mixed_float32_float64_bfloat16_leaves(name):
    """Each leaf gets its own velocity dtype; each matches the reference to its precision."""
    nesterov = name in ("nesterov", "scale_by_nesterov")
    paper = name in ("momentum", "nesterov")
    lr = 0.05
    rng = np.random.default_rng(4)
    dtypes = {"f64": jnp.float64, "f32": jnp.float32, "bf16": jnp.bfloat16}
    tol = {"f64": 1e-12, "f32": 1e-5, "bf16": 1e-5}
    with jax.enable_x64(True):
        grads = {k: jnp.asarray(rng.normal(size=(STEPS, 5)), d) for k, d in dtypes.items()}
        tx = ALL_TRANSFORMS[name](lr, _mu_jax())
        params = {k: jnp.zeros(5, d) for k, d in dtypes.items()}
        state = tx.init(params)

        def step(state, g):
            updates, state = tx.update(g, state, params)
            return state, updates

        state, updates = jax.jit(lambda s: jax.lax.scan(step, s, grads))(state)
        assert {k: v.dtype for k, v in state.velocity.items()} == {
            "f64": jnp.float64,
            "f32": jnp.float32,
            "bf16": jnp.float32,
        }
        assert {k: u.dtype for k, u in updates.items()} == dtypes
    for k in dtypes:
        g = np.asarray(grads[k], np.float64)
        expected = reference.learning_rate_free(g, _mu_np, nesterov=nesterov)
        expected = -lr * expected if paper else expected
        scale = np.max(np.abs(expected))
        actual = np.asarray(updates[k], np.float64)
        # bf16 updates are rounded to 8 bits; the float32 velocity underneath is not.
        rtol = 2**-8 if k == "bf16" else tol[k]
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# --- complex parameters and bad input -------------------------------------------------------------


@pytest.mark.parametrize("name", list(ALL_TRANSFORMS))
def test_complex_parameters_behave_as_pairs_of_reals(name):
    rng = np.random.default_rng(5)
    grads = rng.normal(size=(STEPS, 2, 4))
    tx = ALL_TRANSFORMS[name](0.05, _mu_jax())

    def run(params, grads):
        state = tx.init(params)

        def step(carry, g):
            params, state = carry
            updates, state = tx.update(g, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.jit(lambda c: jax.lax.scan(step, c, grads))((params, state))
        return params, state

    complex_grads = jnp.asarray(grads[:, 0] + 1j * grads[:, 1], jnp.complex64)
    z, z_state = run(jnp.ones(4, jnp.complex64), complex_grads)
    xy, xy_state = run(
        jnp.ones((2, 4), jnp.float32).at[1].set(0.0), jnp.asarray(grads, jnp.float32)
    )
    assert z.dtype == z_state.velocity.dtype == jnp.complex64
    tol = 1e-6 * float(jnp.max(jnp.abs(xy)))  # complex and real float32 products round apart
    np.testing.assert_allclose(z.real, xy[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(z.imag, xy[1], rtol=tol, atol=tol)
    v = z_state.velocity
    tol = 1e-6 * float(jnp.max(jnp.abs(xy_state.velocity)))
    np.testing.assert_allclose(v.real, xy_state.velocity[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(v.imag, xy_state.velocity[1], rtol=tol, atol=tol)


def test_complex_nesterov_with_conjugated_jax_grad_matches_reference_on_pairs():
    """NAG on f(z) = sum a |z - c|^2 / 2 with conj(jax.grad), vs the reference on (Re z, Im z)."""
    p = Problem(dim=2 * DIM)
    a, c = p.a[:DIM], p.b[:DIM] * (1 - 2j)
    noise = p.noise[:, :DIM] + 1j * p.noise[:, DIM:]

    def loss(z, t):
        return 0.5 * jnp.sum(jnp.asarray(a) * jnp.abs(z - c) ** 2) + jnp.sum(
            jnp.real(jnp.conj(jnp.asarray(noise)[t]) * z)
        )

    def grad_np(t, xy):
        x, y = xy[:DIM], xy[DIM:]
        return np.concatenate([a * (x - c.real) + noise[t].real, a * (y - c.imag) + noise[t].imag])

    z0 = p.theta0[:DIM] + 1j * p.theta0[DIM:]
    expected = reference.nesterov(p.theta0, grad_np, _lr_np, _mu_np, STEPS)
    with jax.enable_x64(True):
        tx = nagmom.nesterov(_lr_jax, _mu_jax())
        conj_grad = lambda t, z: jnp.conj(jax.grad(loss)(z, t))  # noqa: E731
        held, _, _ = _run(tx, jnp.asarray(z0), conj_grad, STEPS)
        unconjugated, _, _ = _run(tx, jnp.asarray(z0), lambda t, z: jax.grad(loss)(z, t), STEPS)
    _assert_close(np.concatenate([held.real, held.imag], axis=1), expected.held)
    wrong = np.concatenate([unconjugated.real, unconjugated.imag], axis=1)
    assert _max_diff(wrong, expected.held) > 1e-2  # the twin: jax.grad unconjugated is wrong


@pytest.mark.parametrize(
    "make, params, match",
    [
        (
            lambda: nagmom.nesterov(0.1, 0.9, accumulator_dtype=jnp.float32),
            {"z": jnp.ones(2, jnp.complex64)},
            r"nagmom.nesterov: accumulator_dtype float32 does not fit parameter \['z'\]",
        ),
        (
            lambda: nagmom.scale_by_momentum(0.9, accumulator_dtype=jnp.complex64),
            {"w": jnp.ones(2)},
            r"accumulator_dtype complex64 does not fit parameter \['w'\] \(float32\)",
        ),
        (
            lambda: nagmom.momentum(0.1, 0.9),
            {"w": jnp.ones(2), "step": jnp.zeros([], jnp.int32)},
            r"nagmom.momentum needs floating-point or complex parameters, got parameter "
            r"\['step'\] \(int32\)",
        ),
        (
            lambda: nagmom.scale_by_nesterov(0.9),
            [jnp.ones(2), jnp.ones(2, bool)],
            r"parameter \[1\] \(bool\)",
        ),
    ],
    ids=["complex_with_real_accumulator", "real_with_complex_accumulator", "int", "bool"],
)
def test_unusable_parameters_are_rejected_at_init_naming_the_leaf(make, params, match):
    tx = make()
    with pytest.raises(ValueError, match=match):
        tx.init(params)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(tx.init, params)


@pytest.mark.parametrize("name", list(FREE_FORMS.values()), ids=list(FREE_FORMS))
def test_bad_accumulator_dtype_and_complex_gradient_for_real_params(name):
    with pytest.raises(ValueError, match="accumulator_dtype must be a floating-point"):
        name(0.9, accumulator_dtype=jnp.int32)
    tx = name(0.9)
    state = tx.init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"complex gradient \(complex64\) for a real parameter"):
        tx.update({"w": jnp.ones(2, jnp.complex64)}, state)


def test_nesterov_eval_params_rejects_params_that_do_not_match_the_state():
    tx = nagmom.nesterov(0.1, 0.9)
    state = tx.init({"w": jnp.ones(3), "b": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"velocities for \['b'\], which params lacks"):
        nagmom.nesterov_eval_params({"w": jnp.ones(3)}, state)
    with pytest.raises(ValueError, match=r"params\['c'\] has no velocity"):
        nagmom.nesterov_eval_params({"w": jnp.ones(3), "b": jnp.ones(2), "c": jnp.ones(1)}, state)
    with pytest.raises(ValueError, match=r"params\['w'\] has shape \(4,\)"):
        nagmom.nesterov_eval_params({"w": jnp.ones(4), "b": jnp.ones(2)}, state)


def test_nesterov_eval_params_through_a_mask_on_a_whole_subtree():
    """optax.masked with a mask prefix replaces the masked subtree by one MaskedNode."""
    params = {"w": jnp.ones(3), "frozen": {"a": jnp.ones(2), "b": jnp.zeros((2, 2))}}
    tx = optax.masked(nagmom.nesterov(0.5, 0.9), {"w": True, "frozen": False})
    state = tx.init(params)
    assert isinstance(state.inner_state.velocity["frozen"], optax.MaskedNode)
    updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    held = optax.apply_updates(params, updates)
    theta = nagmom.nesterov_eval_params(held, state)
    # v_1 = -0.5; held w = 1 - 0.5 + 0.9 * (-0.5) = 0.05; theta w = 0.5.
    _assert_close(theta["w"], np.full(3, 0.5), 1e-6)
    chex.assert_trees_all_equal(theta["frozen"], held["frozen"])
