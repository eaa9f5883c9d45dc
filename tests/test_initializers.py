"""Tests for `nagmom.initializers.sparse`, the sparse initialization of Martens (2010)."""

import math
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
from multidevice import run_on_four_cpu_devices
from scipy import stats

from nagmom import initializers

KEY = jax.random.key(0)
K = 15  # The paper's number of connections per unit, the default.
SMALL = (100, 50)  # One shape for the small tests, so they share one compilation.

# (shape, out_axis, batch_axis, fan_in), fan_in written out by hand.
CASES = {
    "dense_784x400": ((784, 400), -1, (), 784),
    "fan_in_below_k_6x25": ((6, 25), -1, (), 6),
    "conv_3x3x8x16": ((3, 3, 8, 16), -1, (), 72),
    "dense_general_4x8x16": ((4, 8, 16), -1, (), 32),
    "out_axis_first_10x50": ((10, 50), 0, (), 50),
    "batch_first_3x64x32": ((3, 64, 32), -1, (0,), 64),
    "batch_last_64x32x3": ((64, 32, 3), 1, (2,), 64),
}
case_params = pytest.mark.parametrize(
    "shape,out_axis,batch_axis,fan_in", list(CASES.values()), ids=list(CASES)
)


def _units_by_inputs(w, out_axis, batch_axis):
    """Rearranges a kernel to (units, fan_in): one row per output unit and batch index."""
    w = np.asarray(w).astype(np.float64)
    out = out_axis % w.ndim
    batch = [a % w.ndim for a in batch_axis]
    incoming = [a for a in range(w.ndim) if a != out and a not in batch]
    w = np.transpose(w, batch + [out] + incoming)
    return w.reshape(math.prod(w.shape[: len(batch) + 1]), -1)


def _count_per_column(w):
    return np.asarray((np.asarray(w) != 0).sum(axis=0))


@case_params
def test_exact_count_per_output_unit(shape, out_axis, batch_axis, fan_in):
    init = initializers.sparse(out_axis=out_axis, batch_axis=batch_axis)
    w = init(KEY, shape)
    assert w.shape == shape
    assert w.dtype == jnp.float32
    units = _units_by_inputs(w, out_axis, batch_axis)
    assert units.shape[1] == fan_in
    np.testing.assert_array_equal((units != 0).sum(axis=1), min(K, fan_in))


@pytest.mark.parametrize("num_connections", [1, 40])
def test_num_connections(num_connections):
    w = initializers.sparse(num_connections)(KEY, (100, 30))
    np.testing.assert_array_equal(_count_per_column(w), num_connections)


def test_orientation_dense():
    # Nonzeros are counted per output column; a transposed implementation gives 15 per row.
    w = np.asarray(initializers.sparse()(KEY, (784, 400)))
    np.testing.assert_array_equal((w != 0).sum(axis=0), K)
    assert (w != 0).sum() == 400 * K


def test_orientation_wide_dense():
    # fan_in = 6 < 15, so every unit is fully connected and the kernel is dense; a
    # transposed implementation would pick 15 of the 25 entries of each row.
    w = np.asarray(initializers.sparse()(KEY, (6, 25)))
    assert np.all(w != 0)


def test_orientation_conv():
    # Incoming axes of an HWIO kernel are (h, w, in): 72 inputs per output channel.
    w = np.asarray(initializers.sparse()(KEY, (3, 3, 8, 16)))
    np.testing.assert_array_equal((w != 0).sum(axis=(0, 1, 2)), K)
    # The connections are spread over the receptive field, not confined to one tap.
    assert np.all((w != 0).sum(axis=(2, 3)) > 0)


def test_batch_axes_are_independent():
    w = np.asarray(initializers.sparse(batch_axis=(0,))(KEY, (3, 64, 32)))
    np.testing.assert_array_equal((w != 0).sum(axis=1), K)  # (batch, out): 15 each.
    masks = w != 0
    assert not np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[1], masks[2])


def test_distinct_indices_when_connections_near_fan_in():
    # 19 of 20 inputs: sampling with replacement would collide in almost every column.
    w = np.asarray(initializers.sparse(19)(KEY, (20, 500)))
    np.testing.assert_array_equal(_count_per_column(w), 19)
    # The one zero per column lands on each input about 500 / 20 = 25 times.
    zeros_per_row = (w == 0).sum(axis=1)
    assert zeros_per_row.sum() == 500
    assert stats.chisquare(zeros_per_row).pvalue > 1e-4


def test_connections_uniform_over_inputs():
    # Per input row, counts are ~Binomial(400, 15/784); both too clumped (e.g. always the
    # first rows, or one pattern for every column) and too even (round robin) must fail.
    w = np.asarray(initializers.sparse()(KEY, (784, 400)))
    per_row = (w != 0).sum(axis=1)
    p = stats.chisquare(per_row).pvalue
    assert 1e-4 < p < 1 - 1e-4, p


def test_moments_of_nonzeros():
    stddev = 2.0
    w = np.asarray(initializers.sparse(stddev=stddev)(KEY, (1000, 2000)), np.float64)
    values = w[w != 0]
    n = values.size
    assert n == 2000 * K
    # Five standard errors: mean ~ N(0, s^2 / n), sample variance ~ N(s^2, 2 s^4 / n).
    assert abs(values.mean()) < 5 * stddev / math.sqrt(n)
    assert abs(values.var() / stddev**2 - 1) < 5 * math.sqrt(2 / n)
    # The shape of a normal, not a uniform or truncated normal of the same variance.
    assert stats.kstest(values / stddev, "norm").pvalue > 1e-4


def test_stddev_scaling():
    w1 = initializers.sparse(stddev=1.0)(KEY, SMALL)
    w2 = initializers.sparse(stddev=0.25)(KEY, SMALL)
    np.testing.assert_allclose(w2, 0.25 * np.asarray(w1), rtol=1e-6)
    assert np.all(initializers.sparse(stddev=0.0)(KEY, SMALL) == 0)


def test_traced_stddev_under_vmap():
    def draw(stddev):
        return initializers.sparse(stddev=stddev)(KEY, SMALL)

    w = jax.vmap(draw)(jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(w[1], 3.0 * np.asarray(w[0]), rtol=1e-6)
    np.testing.assert_array_equal(_count_per_column(w[0]), K)


def test_same_key_same_array_different_key_different_array():
    init = initializers.sparse()
    w = init(KEY, SMALL)
    np.testing.assert_array_equal(w, init(KEY, SMALL))
    np.testing.assert_array_equal(w, initializers.sparse()(jax.random.key(0), SMALL))
    other = init(jax.random.key(1), SMALL)
    assert not np.array_equal(np.asarray(w) != 0, np.asarray(other) != 0)
    assert not np.array_equal(w[w != 0], other[other != 0])


def test_legacy_uint32_key():
    w = initializers.sparse()(jax.random.PRNGKey(0), SMALL)
    np.testing.assert_array_equal(_count_per_column(w), K)


def test_jit_matches_eager():
    init = initializers.sparse()
    eager = init(KEY, (784, 400), jnp.float32)
    jitted = jax.jit(init, static_argnums=(1, 2))(KEY, (784, 400), jnp.float32)
    np.testing.assert_array_equal(np.asarray(eager) != 0, np.asarray(jitted) != 0)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)


def test_vectorised_not_a_loop_over_units():
    # The lowered program (with the jitted sampler inlined) has the same size for 10 and
    # 1000 output units.
    def program_size(shape):
        lowered = jax.jit(lambda k: initializers.sparse()(k, shape)).lower(KEY)
        return len(lowered.as_text().splitlines())

    assert program_size((50, 10)) == program_size((50, 1000))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=str)
def test_dtype_honoured(dtype):
    w = initializers.sparse()(KEY, (784, 400), dtype)
    assert w.dtype == dtype
    np.testing.assert_array_equal(_count_per_column(w), K)
    # Low precision is drawn in float32 and rounded, not drawn coarsely in that dtype.
    w32 = initializers.sparse()(KEY, (784, 400), jnp.float32)
    np.testing.assert_array_equal(w, w32.astype(dtype))


def test_factory_dtype_is_default_and_call_dtype_overrides():
    init = initializers.sparse(dtype=jnp.bfloat16)
    assert init(KEY, (784, 400)).dtype == jnp.bfloat16
    assert init(KEY, (784, 400), jnp.float16).dtype == jnp.float16
    assert initializers.sparse()(KEY, (784, 400)).dtype == jnp.float32


def test_float64_under_x64():
    with jax.enable_x64(True):
        w = initializers.sparse()(KEY, SMALL, jnp.float64)
        assert w.dtype == jnp.float64
        assert initializers.sparse()(KEY, SMALL).dtype == jnp.float64
        w = np.asarray(w)
    np.testing.assert_array_equal(_count_per_column(w), K)
    # Drawn in float64, not drawn in float32 and widened.
    values = w[w != 0]
    assert np.any(values != values.astype(np.float32).astype(np.float64))


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_, jnp.complex64], ids=str)
def test_non_float_dtype_raises(dtype):
    with pytest.raises(ValueError, match="dtype"):
        initializers.sparse()(KEY, (20, 10), dtype)
    with pytest.raises(ValueError, match="dtype"):
        initializers.sparse(dtype=dtype)


@pytest.mark.parametrize("shape", [(5,), (), (784,)], ids=str)
def test_fewer_than_two_dims_raises(shape):
    with pytest.raises(ValueError, match=r"at least a 2-D kernel \(fan_in, fan_out\)"):
        initializers.sparse()(KEY, shape)


def test_empty_kernel_is_zeros():
    for shape in [(0, 5), (5, 0), (3, 0, 4)]:
        w = initializers.sparse()(KEY, shape)
        assert w.shape == shape
        assert w.dtype == jnp.float32


@pytest.mark.parametrize("num_connections", [0, -3, 2.5, 15.0, True, "15", None], ids=repr)
def test_bad_num_connections_raises(num_connections):
    with pytest.raises(ValueError, match="num_connections"):
        initializers.sparse(num_connections)


def test_numpy_int_num_connections_accepted():
    w = initializers.sparse(np.int64(40))(KEY, (100, 30))
    np.testing.assert_array_equal(_count_per_column(w), 40)


@pytest.mark.parametrize(
    "stddev", [-1.0, -1e-9, float("nan"), float("inf"), -float("inf")], ids=repr
)
def test_bad_stddev_raises(stddev):
    with pytest.raises(ValueError, match="stddev"):
        initializers.sparse(stddev=stddev)
    with pytest.raises(ValueError, match="stddev"):
        initializers.sparse(stddev=jnp.asarray(stddev))


def test_non_scalar_stddev_raises():
    with pytest.raises(ValueError, match="stddev"):
        initializers.sparse(stddev=np.ones(2))


@pytest.mark.parametrize(
    "shape,out_axis,batch_axis,match",
    [
        ((10, 20), 2, (), "out_axis"),
        ((10, 20), -3, (), "out_axis"),
        ((10, 20), -1, (2,), "batch_axis"),
        ((3, 10, 20), -1, (2,), "overlap"),
        ((3, 10, 20), 0, (-3,), "overlap"),
        ((3, 10, 20), -1, (0, 0), "repeats"),
        ((3, 10, 20), -1, (0, -3), "repeats"),
        ((3, 20), -1, (0,), "at least a 2-D kernel"),
    ],
    ids=[
        "out_high",
        "out_low",
        "batch_high",
        "overlap",
        "overlap_neg",
        "repeat",
        "repeat_neg",
        "no_incoming_axis",
    ],
)
def test_bad_axes_raise(shape, out_axis, batch_axis, match):
    init = initializers.sparse(out_axis=out_axis, batch_axis=batch_axis)
    with pytest.raises(ValueError, match=match):
        init(KEY, shape)


def test_batch_axis_int_accepted():
    w = np.asarray(initializers.sparse(batch_axis=0)(KEY, (3, 64, 32)))
    np.testing.assert_array_equal((w != 0).sum(axis=1), K)


def test_linen_dense_kernel_init():
    model = nn.Dense(400, kernel_init=initializers.sparse())
    kernel = model.init(KEY, jnp.ones((1, 784)))["params"]["kernel"]
    assert kernel.shape == (784, 400)
    np.testing.assert_array_equal(_count_per_column(kernel), K)


def test_linen_dense_general_kernel_init():
    # Flax flattens the kernel to (4 * 8, 16) before calling the initializer.
    model = nn.DenseGeneral(16, axis=(-2, -1), kernel_init=initializers.sparse())
    kernel = np.asarray(model.init(KEY, jnp.ones((1, 4, 8)))["params"]["kernel"])
    assert kernel.shape == (4, 8, 16)
    np.testing.assert_array_equal((kernel != 0).sum(axis=(0, 1)), K)


def test_linen_conv_kernel_init():
    model = nn.Conv(16, (3, 3), kernel_init=initializers.sparse())
    kernel = np.asarray(model.init(KEY, jnp.ones((1, 8, 8, 8)))["params"]["kernel"])
    assert kernel.shape == (3, 3, 8, 16)
    np.testing.assert_array_equal((kernel != 0).sum(axis=(0, 1, 2)), K)


def test_nnx_linear_kernel_init():
    layer = nnx.Linear(784, 400, kernel_init=initializers.sparse(), rngs=nnx.Rngs(0))
    kernel = layer.kernel[...]
    assert kernel.shape == (784, 400)
    np.testing.assert_array_equal(_count_per_column(kernel), K)


def test_out_sharding_single_device_mesh():
    mesh = jax.make_mesh((1,), ("x",), axis_types=(AxisType.Explicit,))
    sharding = NamedSharding(mesh, PartitionSpec())
    init = initializers.sparse()
    expected = init(KEY, (784, 400))
    with jax.set_mesh(mesh):
        for out_sharding in [sharding, PartitionSpec()]:
            w = init(KEY, (784, 400), out_sharding=out_sharding)
            assert isinstance(w.sharding, NamedSharding)
            assert w.sharding.mesh == mesh
            assert w.sharding.is_equivalent_to(sharding, 2)
            np.testing.assert_array_equal(w, expected)
        w = jax.jit(lambda k: init(k, (784, 400), out_sharding=sharding))(KEY)
        assert isinstance(w.sharding, NamedSharding)
        assert w.sharding.is_equivalent_to(sharding, 2)
        np.testing.assert_array_equal(w, expected)
    # A NamedSharding carries its own mesh, so no mesh context is needed.
    w = init(KEY, (784, 400), out_sharding=sharding)
    assert isinstance(w.sharding, NamedSharding)
    assert w.sharding.is_equivalent_to(sharding, 2)


def test_out_sharding_partition_spec_without_mesh_raises():
    with pytest.raises(ValueError, match="out_sharding"):
        initializers.sparse()(KEY, (20, 10), out_sharding=PartitionSpec())


def test_out_sharding_wrong_type_raises():
    with pytest.raises(TypeError, match="out_sharding"):
        initializers.sparse()(KEY, (20, 10), out_sharding=jax.devices()[0])


_MULTI_DEVICE_SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    from nagmom import initializers

    assert len(jax.devices()) == 4, jax.devices()
    key = jax.random.key(0)
    init = initializers.sparse()
    expected = np.asarray(init(key, (784, 400)))
    mesh = jax.make_mesh((4,), ("x",), axis_types=(AxisType.Explicit,))
    with jax.set_mesh(mesh):
        w = init(key, (784, 400), out_sharding=P(None, "x"))
    assert w.sharding.is_equivalent_to(NamedSharding(mesh, P(None, "x")), 2), w.sharding
    assert sorted(s.data.shape for s in w.addressable_shards) == [(784, 100)] * 4
    np.testing.assert_array_equal(np.asarray(w), expected)
    np.testing.assert_array_equal((np.asarray(w) != 0).sum(axis=0), 15)
    print("OK")
    """
)


def test_out_sharding_column_sharded_over_four_devices():
    run_on_four_cpu_devices(_MULTI_DEVICE_SCRIPT)


# --- echo_state ---------------------------------------------------------------------------------


def _numpy_spectral_radius(w) -> float:
    return float(np.abs(np.linalg.eigvals(np.asarray(w, np.float64))).max())


@pytest.mark.parametrize("n, radius", [(100, 1.1), (50, 0.9), (15, 1.1), (8, 2.0)])
def test_echo_state_spectral_radius_matches_numpy(n, radius):
    w = initializers.echo_state(radius)(jax.random.key(n), (n, n))
    assert w.dtype == jnp.float32
    np.testing.assert_allclose(_numpy_spectral_radius(w), radius, rtol=2e-6)
    # The sparsity pattern of the underlying sparse draw survives the rescaling.
    np.testing.assert_array_equal((np.asarray(w) != 0).sum(axis=0), min(15, n))
    # It is a rescaled sparse draw, not a renormalised one: same key, same pattern and ratios.
    base = np.asarray(initializers.sparse(15)(jax.random.key(n), (n, n)))
    ratio = np.asarray(w)[base != 0] / base[base != 0]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
    np.testing.assert_allclose(ratio[0], radius / _numpy_spectral_radius(base), rtol=2e-6)


def test_echo_state_under_jit_and_vmap():
    init = initializers.echo_state(1.1)
    eager = init(jax.random.key(0), (40, 40))
    jitted = jax.jit(init, static_argnums=1)(jax.random.key(0), (40, 40))
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    keys = jax.random.split(jax.random.key(1), 3)
    stack = jax.jit(jax.vmap(lambda k: init(k, (30, 30))))(keys)
    for w in stack:
        np.testing.assert_allclose(_numpy_spectral_radius(w), 1.1, rtol=2e-6)
    assert not np.allclose(stack[0], stack[1])


def test_echo_state_dtypes_and_zero():
    w = initializers.echo_state(1.1)(jax.random.key(0), (20, 20), jnp.bfloat16)
    assert w.dtype == jnp.bfloat16
    np.testing.assert_allclose(_numpy_spectral_radius(w), 1.1, rtol=2e-2)
    zero = initializers.echo_state(1.1, stddev=0.0)(jax.random.key(0), (5, 5))
    np.testing.assert_array_equal(zero, 0.0)


@pytest.mark.parametrize("shape", [(10,), (10, 5), (3, 3, 3)])
def test_echo_state_rejects_non_square_shapes(shape):
    with pytest.raises(ValueError, match="square 2-D recurrent kernel"):
        initializers.echo_state()(jax.random.key(0), shape)


@pytest.mark.parametrize("radius", [-1.0, float("nan"), float("inf")])
def test_echo_state_rejects_bad_radius(radius):
    with pytest.raises(ValueError, match="spectral_radius"):
        initializers.echo_state(radius)


def test_echo_state_as_flax_recurrent_kernel_init():
    cell = nn.SimpleCell(24, recurrent_kernel_init=initializers.echo_state(1.1))
    carry = cell.initialize_carry(jax.random.key(0), (2, 3))
    params = cell.init(jax.random.key(1), carry, jnp.zeros((2, 3)))["params"]
    np.testing.assert_allclose(_numpy_spectral_radius(params["h"]["kernel"]), 1.1, rtol=2e-6)
