"""Momentum schedules against explicit values and the NumPy reference of eq. (5)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference

from nagmom import schedules

EDGES = [0, 1, 249, 250, 251, 499, 500, 749, 750, 999, 1000, 2499, 2500, 124_999, 125_000]


def test_sutskever_momentum_explicit_values():
    mu = schedules.sutskever_momentum(0.999)
    values = np.asarray(mu(jnp.array([0, 249, 250, 499, 500, 749, 750])))
    np.testing.assert_array_equal(values, np.float32([0.5, 0.5, 0.75, 0.75, 5 / 6, 5 / 6, 0.875]))


@pytest.mark.parametrize("mu_max", [0.0, 0.5, 0.9, 0.99, 0.995, 0.999, 1.0])
def test_sutskever_momentum_matches_reference(mu_max):
    mu = schedules.sutskever_momentum(mu_max)
    expected = [reference.sutskever_mu(t, mu_max) for t in EDGES]
    np.testing.assert_allclose(mu(jnp.array(EDGES)), expected, rtol=1e-7, atol=0)
    # Python ints and scalar arrays give the same values as the batched call.
    assert [float(mu(t)) for t in EDGES] == list(np.float32(mu(jnp.array(EDGES))))


@pytest.mark.parametrize("mu_max", [0.9, 0.99, 0.999, 0.9999])
def test_sutskever_momentum_never_exceeds_mu_max_as_stored(mu_max):
    mu = schedules.sutskever_momentum(mu_max)
    values = np.asarray(mu(jnp.arange(0, 3_000_000, 250)))
    assert values.max() == np.float32(mu_max)
    assert np.all(values <= np.float32(mu_max))
    assert np.all(np.diff(values) >= 0)


def test_sutskever_momentum_stage_length():
    mu = schedules.sutskever_momentum(0.99, stage_length=10)
    np.testing.assert_allclose(mu(jnp.array([9, 10, 20])), [0.5, 0.75, 5 / 6], rtol=1e-7)


def test_schedules_under_jit_and_vmap():
    counts = jnp.array(EDGES)
    mu_maxes = jnp.array([0.9, 0.99, 0.999])
    grid = jax.jit(jax.vmap(lambda m: schedules.sutskever_momentum(m)(counts)))(mu_maxes)
    for row, mu_max in zip(grid, [0.9, 0.99, 0.999], strict=True):
        expected = [reference.sutskever_mu(t, mu_max) for t in EDGES]
        np.testing.assert_allclose(row, expected, rtol=1e-7)
    final = schedules.with_final_phase(
        schedules.sutskever_momentum(0.999), total_steps=125_000, final_steps=1000
    )
    per_count = jax.jit(jax.vmap(final))(counts)
    np.testing.assert_array_equal(per_count, final(counts))


def test_with_final_phase_edges():
    mu = schedules.with_final_phase(
        schedules.sutskever_momentum(0.999), total_steps=10_000, final_steps=1000
    )
    counts = jnp.array([0, 250, 8999, 9000, 9001, 9999, 10_000])
    expected = [0.5, 0.75, reference.sutskever_mu(8999, 0.999), 0.9, 0.9, 0.9, 0.9]
    np.testing.assert_allclose(mu(counts), expected, rtol=1e-7)


def test_with_final_phase_keeps_lower_momentum():
    zero = schedules.with_final_phase(
        schedules.sutskever_momentum(0.0), total_steps=3000, final_steps=1000
    )
    np.testing.assert_array_equal(zero(jnp.arange(3000)), 0.0)
    early = schedules.with_final_phase(
        schedules.sutskever_momentum(0.999), total_steps=1200, final_steps=1000
    )
    # The final phase starts at t = 200, while the ramp is still at 0.5 < 0.9.
    np.testing.assert_allclose(early(jnp.array([199, 200, 300, 1199])), [0.5, 0.5, 0.75, 0.9])


def test_with_final_phase_of_an_integer_schedule_is_not_truncated():
    mu = schedules.with_final_phase(lambda t: jnp.ones_like(t), total_steps=10, final_steps=5)
    np.testing.assert_allclose(mu(jnp.arange(10)), [1.0] * 5 + [0.9] * 5, rtol=1e-7)


def test_with_final_phase_longer_than_run_covers_everything():
    mu = schedules.with_final_phase(lambda t: 0.99, total_steps=10, final_steps=100)
    np.testing.assert_allclose(mu(jnp.arange(10)), 0.9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mu_max": 1.5}, "mu_max must be <= 1"),
        ({"mu_max": -0.1}, "mu_max must be >= 0"),
        ({"mu_max": float("nan")}, "mu_max must be finite"),
        ({"mu_max": 0.9, "stage_length": 0}, "stage_length must be >= 1"),
        ({"mu_max": 0.9, "stage_length": 2.5}, "stage_length must be an integer"),
    ],
)
def test_sutskever_momentum_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        schedules.sutskever_momentum(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"total_steps": -1}, "total_steps must be >= 0"),
        ({"total_steps": 10, "final_steps": -1}, "final_steps must be >= 0"),
        ({"total_steps": 10, "final_value": 1.2}, "final_value must be <= 1"),
        ({"total_steps": 10.0}, "total_steps must be an integer"),
    ],
)
def test_with_final_phase_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        schedules.with_final_phase(schedules.sutskever_momentum(0.9), **kwargs)
    with pytest.raises(ValueError, match="schedule must be a callable"):
        schedules.with_final_phase(0.9, total_steps=10)


def test_rnn_momentum_values_and_vmap():
    mu = schedules.rnn_momentum(0.995)
    np.testing.assert_allclose(
        mu(jnp.array([0, 999, 1000, 10**6])), [0.9, 0.9, 0.995, 0.995], rtol=1e-7
    )
    short = schedules.rnn_momentum(0.0, warmup_steps=10, warmup_value=0.5)
    np.testing.assert_array_equal(short(jnp.array([9, 10])), [0.5, 0.0])
    grid = jax.jit(jax.vmap(lambda m: schedules.rnn_momentum(m)(jnp.array([999, 1000]))))(
        jnp.array([0.9, 0.98])
    )
    np.testing.assert_allclose(grid, [[0.9, 0.9], [0.9, 0.98]], rtol=1e-7)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mu_0": 1.1}, "mu_0 must be <= 1"),
        ({"mu_0": 0.9, "warmup_value": -0.1}, "warmup_value must be >= 0"),
        ({"mu_0": 0.9, "warmup_steps": -1}, "warmup_steps must be >= 0"),
    ],
)
def test_rnn_momentum_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        schedules.rnn_momentum(**kwargs)
