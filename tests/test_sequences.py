"""The long-range RNN problems (benchmarks/sequences.py) against hand-checked structure."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sequences


@pytest.mark.parametrize("name, op", [("addition", np.add), ("multiplication", np.multiply)])
def test_arithmetic_format(name, op):
    length = 80
    batch = sequences.PROBLEMS[name](length).sample(jax.random.key(0), 500)
    inputs, targets, mask = map(np.asarray, batch)
    assert (
        inputs.shape == (88, 500, 2) and targets.shape == (88, 500, 1) and mask.shape == (88, 500)
    )
    values, marker = inputs[..., 0] + 0.5, inputs[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    np.testing.assert_array_equal(mask.sum(axis=0), 1)
    last = mask.argmax(axis=0)  # the read-out step L
    assert last.min() >= length and last.max() < 88
    assert len(np.unique(last)) > 4  # lengths vary
    for b in range(500):
        marked = np.flatnonzero(marker[:, b] == 1)
        assert len(marked) == 2
        assert 1 <= marked[0] < 8 and 8 <= marked[1] < 40
        np.testing.assert_array_equal(np.flatnonzero(marker[:, b] == -1), [0, last[b] - 3])
        expected = op(values[marked[0], b], values[marked[1], b])
        np.testing.assert_allclose(targets[last[b], b, 0], expected, rtol=1e-6)
        assert np.count_nonzero(targets[:, b, 0]) == 1
    # Marked positions cover their ranges.
    assert len(np.unique(np.argmax(marker == 1, axis=0))) == 7


def test_memorization_format_by_hand():
    # length 9, 2 binary symbols: shown at steps 0-1, trigger at 9 - 2 - 1 = 6, recalled at 7-8.
    batch = sequences.memorization(jax.random.key(3), 16, length=9, num_chars=2, char_size=2)
    shown = np.asarray(jnp.argmax(batch.inputs, -1)).T  # (B, T); 2 = trigger, 3 = blank
    wanted = np.asarray(jnp.argmax(batch.targets, -1)).T  # 2 = blank
    for seq_in, seq_out in zip(shown, wanted, strict=True):
        a, b = seq_in[:2]
        np.testing.assert_array_equal(seq_in, [a, b, 3, 3, 3, 3, 2, 3, 3])
        np.testing.assert_array_equal(seq_out, [2, 2, 2, 2, 2, 2, 2, a, b])
    assert set(shown[:, :2].ravel()) == {0, 1}
    np.testing.assert_array_equal(batch.mask, 1.0)
    assert batch.inputs.shape == (9, 16, 4) and batch.targets.shape == (9, 16, 3)


@pytest.mark.parametrize("name, length, in_size, out_size", [
    ("memorization5", 200, 4, 3), ("memorization20", 80, 7, 6),
])  # fmt: skip
def test_memorization_problem_sizes(name, length, in_size, out_size):
    problem = sequences.PROBLEMS[name](length)
    batch = problem.sample(jax.random.key(0), 8)
    assert batch.inputs.shape == (length, 8, in_size) == (length, 8, problem.input_size)
    assert batch.targets.shape == (length, 8, out_size) == (length, 8, problem.output_size)
    num_chars = 5 if name == "memorization5" else 10
    symbols = jnp.argmax(batch.inputs[:num_chars], -1)
    np.testing.assert_array_equal(jnp.argmax(batch.targets[-num_chars:], -1), symbols)


def test_generators_are_deterministic_and_jittable():
    problem = sequences.PROBLEMS["addition"](80)
    a = problem.sample(jax.random.key(7), 10)
    b = jax.jit(problem.sample, static_argnums=1)(jax.random.key(7), 10)
    c = problem.sample(jax.random.key(8), 10)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.inputs, c.inputs)


def test_arithmetic_error_counts_sequences_off_by_more_than_0_04():
    batch = sequences.arithmetic(jax.random.key(0), 4, length=20, op=jnp.add)
    exact = batch.targets
    offsets = jnp.array([0.0, 0.039, 0.041, -0.5])[None, :, None] * batch.mask[..., None]
    problem = sequences.PROBLEMS["addition"](20)
    # Off-mask outputs do not count, however wrong.
    noise = 100.0 * (1 - batch.mask[..., None])
    assert float(problem.zero_one_error(exact + offsets + noise, batch)) == 0.5
    # A diverged network (NaN outputs) is wrong, not right.
    assert float(problem.zero_one_error(jnp.full_like(exact, jnp.nan), batch)) == 1.0


def test_memorization_error_counts_only_recalled_symbols():
    problem = sequences.PROBLEMS["memorization5"](30)
    batch = problem.sample(jax.random.key(0), 4)
    outputs = batch.targets * 10.0
    assert float(problem.zero_one_error(outputs, batch)) == 0.0
    wrong_blanks = outputs.at[:-5].set(0.0).at[:-5, :, 0].set(10.0)  # all blanks predicted wrong
    assert float(problem.zero_one_error(wrong_blanks, batch)) == 0.0
    one_wrong = outputs.at[-1, 0].set(jnp.roll(outputs[-1, 0], 1))  # 1 of 4 x 5 symbols
    assert float(problem.zero_one_error(one_wrong, batch)) == pytest.approx(1 / 20)
    assert float(problem.zero_one_error(jnp.full_like(outputs, jnp.nan), batch)) == 1.0
