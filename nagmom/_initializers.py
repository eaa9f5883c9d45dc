"""Sparse initialization of Martens (2010), as used by Sutskever et al. (2013).

The initializer follows the :mod:`jax.nn.initializers` protocol, so it can be passed as the
``kernel_init`` of Flax layers (``flax.linen.Dense``, ``flax.linen.Conv``, ``flax.nnx.Linear``).
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

OutSharding = NamedSharding | PartitionSpec | None


def _normalize_axis(axis: int, ndim: int, name: str, shape: tuple[int, ...]) -> int:
    """Returns ``axis`` as a non-negative index into a shape of rank ``ndim``."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for a kernel of shape {shape}.")
    return axis % ndim


def _check_float_dtype(dtype: jax.typing.DTypeLike) -> np.dtype:
    """Canonicalises ``dtype`` and rejects anything but a real floating dtype."""
    try:
        np_dtype = jnp.dtype(dtype)
    except TypeError as e:
        raise ValueError(f"dtype must be a floating dtype; got {dtype!r}.") from e
    if not jnp.issubdtype(np_dtype, jnp.floating):
        raise ValueError(f"dtype must be a real floating dtype; got {np_dtype}.")
    return jax.dtypes.canonicalize_dtype(np_dtype)


def _canonicalize_sharding(out_sharding: OutSharding) -> NamedSharding | None:
    """Turns ``out_sharding`` into a ``NamedSharding`` the way ``jax.random`` does."""
    if out_sharding is None:
        return None
    if isinstance(out_sharding, PartitionSpec):
        mesh = jax.sharding.get_abstract_mesh()
        if mesh.empty:
            raise ValueError(
                "out_sharding is a PartitionSpec but no mesh is set; pass a NamedSharding or "
                f"enter a mesh context with `jax.set_mesh`. Got {out_sharding}."
            )
        return NamedSharding(mesh, out_sharding)
    if isinstance(out_sharding, NamedSharding):
        return None if out_sharding.mesh.empty else out_sharding
    raise TypeError(
        "out_sharding must be a NamedSharding, a PartitionSpec or None; "
        f"got {out_sharding!r} of type {type(out_sharding)}."
    )


@functools.partial(
    jax.jit, static_argnames=("shape", "perm", "num_lead", "num_connections", "dtype")
)
def _sample(
    key: jax.Array,
    stddev: jax.typing.ArrayLike,
    *,
    shape: tuple[int, ...],
    perm: tuple[int, ...],
    num_lead: int,
    num_connections: int,
    dtype: np.dtype,
) -> jax.Array:
    """Draws a sparse kernel of ``shape`` and ``dtype``.

    ``perm`` orders the axes of ``shape`` as (batch axes, output axis, incoming axes); its
    first ``num_lead`` entries are the batch and output axes.
    """
    # Work in that order, flattened to (units, fan_in), so that each row is one output unit
    # of one batch element; transpose back at the end.
    perm_shape = tuple(shape[a] for a in perm)
    num_units = math.prod(perm_shape[:num_lead])
    fan_in = math.prod(perm_shape[num_lead:])
    if num_units * fan_in == 0:
        return jnp.zeros(shape, dtype)
    k = min(num_connections, fan_in)
    work_dtype = dtype if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)
    index_key, value_key = jax.random.split(key)
    # top_k of i.i.d. uniforms picks k distinct inputs uniformly at random per unit, and its
    # indices are distinct even under ties.
    scores = jax.random.uniform(index_key, (num_units, fan_in), jnp.float32)
    _, indices = jax.lax.top_k(scores, k)
    values = jax.random.normal(value_key, (num_units, k), work_dtype)
    values = values * jnp.asarray(stddev, work_dtype)
    rows = jnp.arange(num_units)[:, None]
    flat = jnp.zeros((num_units, fan_in), work_dtype)
    flat = flat.at[rows, indices].set(values, unique_indices=True)
    kernel = flat.reshape(perm_shape).transpose(np.argsort(perm))
    return kernel.astype(dtype)


def sparse(
    num_connections: int = 15,
    stddev: jax.typing.ArrayLike = 1.0,
    *,
    out_axis: int = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: jax.typing.DTypeLike | None = None,
) -> jax.nn.initializers.Initializer:
    r"""Builds the sparse initializer of Martens (2010).

    Every output unit (an index of ``out_axis``) receives exactly
    ``min(num_connections, fan_in)`` nonzero incoming weights, at distinct positions chosen
    uniformly at random among its ``fan_in`` inputs, with values drawn from
    :math:`\mathcal{N}(0, \sigma^2)`, :math:`\sigma` = ``stddev``; all other weights are
    zero. Sutskever et al. (2013, Sec. 3) use 15 connections per unit with unit variance
    for the deep autoencoders, so that the total input to each unit does not depend on the
    layer width and units start out less saturated. The fan-in is the product of every
    axis except ``out_axis`` and ``batch_axis``, as in
    :func:`jax.nn.initializers.variance_scaling`: the axes ``(h, w, in)`` of a convolution
    kernel ``(h, w, in, out)``, and every non-batch axis but the last of a Flax
    ``DenseGeneral`` kernel. Each index of the batch axes gets an independent draw. The
    values are drawn in float32 (in the requested dtype if it is wider) and then cast; a
    drawn weight rounds to zero, leaving its unit one connection short, only with
    negligible probability unless ``stddev`` is close to the smallest positive number of
    the dtype.

    Args:
      num_connections: Number of nonzero incoming weights per output unit, at least 1;
        capped at the fan-in, so a unit with fewer inputs is fully connected.
      stddev: Standard deviation of the nonzero weights; a non-negative scalar, which may
        be a traced value (then it is not checked).
      out_axis: Axis of the kernel that indexes the output units.
      batch_axis: Axis or axes of the kernel that index independent kernels; ``()`` for
        none.
      dtype: Default dtype of the returned weights; ``None`` means the default floating
        dtype (float32, or float64 when x64 is enabled).

    Returns:
      An initializer ``init(key, shape, dtype=dtype, out_sharding=None)`` following the
      :mod:`jax.nn.initializers` protocol. ``out_sharding`` (a ``NamedSharding``, or a
      ``PartitionSpec`` under :func:`jax.set_mesh`) places the result as it would place
      the output of :func:`jax.random.normal`; the values do not depend on it.

    Raises:
      ValueError: If ``num_connections`` is not a positive integer, ``stddev`` is negative
        or not finite, ``dtype`` is not a real floating dtype, the kernel has fewer than
        two non-batch axes, or ``out_axis`` and ``batch_axis`` are out of range or overlap
        (the last three when ``init`` is called with a shape or dtype).
      TypeError: If ``out_sharding`` is not a ``NamedSharding``, a ``PartitionSpec`` or
        ``None``.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from nagmom import initializers
      >>> init = initializers.sparse(num_connections=15)
      >>> w = init(jax.random.key(0), (784, 400), jnp.float32)
      >>> w.shape
      (784, 400)
      >>> print((w != 0).sum(axis=0)[:3])
      [15 15 15]
      >>> print(int((w != 0).sum()))
      6000

    References:
      Martens, `Deep learning via Hessian-free optimization
      <https://icml.cc/Conferences/2010/papers/458.pdf>`_, ICML 2010.

      Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and
      momentum in deep learning <https://proceedings.mlr.press/v28/sutskever13.html>`_,
      ICML 2013.
    """
    if isinstance(num_connections, bool) or not isinstance(num_connections, numbers.Integral):
        raise ValueError(
            f"num_connections must be a positive int; got {num_connections!r} "
            f"of type {type(num_connections).__name__}."
        )
    num_connections = operator.index(num_connections)
    if num_connections < 1:
        raise ValueError(f"num_connections must be a positive int; got {num_connections}.")
    if np.ndim(stddev) != 0:
        raise ValueError(f"stddev must be a scalar; got shape {np.shape(stddev)}.")
    if not isinstance(stddev, jax.core.Tracer):
        stddev_value = float(stddev)
        if not math.isfinite(stddev_value) or stddev_value < 0:
            raise ValueError(f"stddev must be finite and non-negative; got {stddev_value}.")
    if isinstance(out_axis, bool) or not isinstance(out_axis, numbers.Integral):
        raise ValueError(f"out_axis must be an int; got {out_axis!r}.")
    batch_axes = (batch_axis,) if isinstance(batch_axis, numbers.Integral) else tuple(batch_axis)
    if any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in batch_axes):
        raise ValueError(f"batch_axis must be an int or a sequence of ints; got {batch_axis!r}.")
    if dtype is not None:
        _check_float_dtype(dtype)
    default_dtype = dtype

    def init(
        key: jax.Array,
        shape: Sequence[int],
        dtype: jax.typing.DTypeLike | None = default_dtype,
        out_sharding: OutSharding = None,
    ) -> jax.Array:
        shape = tuple(operator.index(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ValueError(f"shape must have non-negative dimensions; got {shape}.")
        dtype = _check_float_dtype(float if dtype is None else dtype)
        ndim = len(shape)
        if ndim < 2:
            raise ValueError(
                "sparse initialization needs at least a 2-D kernel (fan_in, fan_out); "
                f"got shape {shape}."
            )
        out_ax = _normalize_axis(int(out_axis), ndim, "out_axis", shape)
        batch_axs = tuple(_normalize_axis(int(a), ndim, "batch_axis", shape) for a in batch_axes)
        if len(set(batch_axs)) != len(batch_axs):
            raise ValueError(f"batch_axis={batch_axis} repeats an axis of shape {shape}.")
        if out_ax in batch_axs:
            raise ValueError(
                f"out_axis={out_axis} and batch_axis={batch_axis} overlap for shape {shape}."
            )
        batch_axs = tuple(sorted(batch_axs))
        in_axs = tuple(a for a in range(ndim) if a != out_ax and a not in batch_axs)
        if not in_axs:
            raise ValueError(
                "sparse initialization needs at least a 2-D kernel (fan_in, fan_out) besides "
                f"the batch axes; got shape {shape} with batch_axis={batch_axis}."
            )
        sharding = _canonicalize_sharding(out_sharding)

        perm = batch_axs + (out_ax,) + in_axs
        sample = functools.partial(
            _sample,
            shape=shape,
            perm=perm,
            num_lead=len(batch_axs) + 1,
            num_connections=num_connections,
            dtype=dtype,
        )
        if sharding is None:
            return sample(key, stddev)
        # The mechanism `jax.random` uses for its own `out_sharding`.
        return jax.sharding.auto_axes(
            sample, out_sharding=sharding, axes=sharding.mesh.explicit_axes
        )(key, stddev)

    return init


def _spectral_radius(matrix: jax.Array) -> jax.Array:
    """Largest absolute eigenvalue of a square matrix, from LAPACK in float64 on the host.

    ``jnp.linalg.eigvals`` runs only on CPU; a host callback computes it accurately on every
    backend and under ``jax.jit`` (it runs once, when the initializer runs).
    """

    def radius(m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, np.float64)
        eigenvalues = np.linalg.eigvals(m.reshape((-1,) + m.shape[-2:]))
        return np.abs(eigenvalues).max(axis=-1).reshape(m.shape[:-2]).astype(np.float32)

    result = jax.ShapeDtypeStruct(matrix.shape[:-2], jnp.float32)
    return jax.pure_callback(radius, result, matrix, vmap_method="expand_dims")


def echo_state(
    spectral_radius: jax.typing.ArrayLike = 1.1,
    num_connections: int = 15,
    *,
    stddev: jax.typing.ArrayLike = 1.0,
    dtype: jax.typing.DTypeLike | None = None,
) -> jax.nn.initializers.Initializer:
    r"""Builds the echo-state initializer of recurrent weights used by Sutskever et al. (2013).

    A square kernel is drawn as by :func:`sparse` (``num_connections`` nonzero
    :math:`\mathcal{N}(0, \sigma^2)` incoming weights per unit) and rescaled so that its largest
    absolute eigenvalue equals ``spectral_radius`` (Jaeger & Haas, 2004). The eigenvalues are
    computed once, in float64, on the host (a ``jax.pure_callback``), so the initializer works
    under ``jax.jit`` and ``jax.vmap`` on any backend. Sutskever et al. use a spectral radius of
    1.1 with 15 connections per unit for their RNNs (Sec. 4).

    Args:
      spectral_radius: The largest absolute eigenvalue of the result; a non-negative scalar.
      num_connections: Nonzero incoming weights per unit before rescaling, at least 1.
      stddev: Standard deviation of the nonzero weights before rescaling (it cancels out unless
        it is zero).
      dtype: Default dtype of the returned weights; ``None`` means the default floating dtype.

    Returns:
      An initializer ``init(key, shape, dtype=dtype, out_sharding=None)`` for square 2-D
      shapes ``(n, n)``, usable as ``recurrent_kernel_init`` of Flax's recurrent cells. An
      all-zero draw (``stddev=0``) stays zero.

    Raises:
      ValueError: If ``spectral_radius`` is negative or not finite, the shape is not square
        2-D, or an argument of :func:`sparse` is invalid.

    Examples:
      >>> import jax, numpy as np
      >>> from nagmom import initializers
      >>> w = initializers.echo_state(1.1)(jax.random.key(0), (100, 100))
      >>> print(round(float(np.abs(np.linalg.eigvals(np.asarray(w, np.float64))).max()), 4))
      1.1
      >>> print((np.asarray(w) != 0).sum(axis=0)[:3])
      [15 15 15]

    References:
      Jaeger & Haas, `Harnessing nonlinearity: predicting chaotic systems and saving energy in
      wireless communication <https://doi.org/10.1126/science.1091277>`_, Science 2004.

      Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and momentum in
      deep learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013, Sec. 4.
    """
    if np.ndim(spectral_radius) != 0:
        raise ValueError(
            f"spectral_radius must be a scalar; got shape {np.shape(spectral_radius)}."
        )
    if not isinstance(spectral_radius, jax.core.Tracer):
        radius_value = float(spectral_radius)
        if not math.isfinite(radius_value) or radius_value < 0:
            raise ValueError(
                f"spectral_radius must be finite and non-negative; got {radius_value}."
            )
    sparse_init = sparse(num_connections, stddev)
    default_dtype = dtype

    def init(
        key: jax.Array,
        shape: Sequence[int],
        dtype: jax.typing.DTypeLike | None = default_dtype,
        out_sharding: OutSharding = None,
    ) -> jax.Array:
        shape = tuple(operator.index(d) for d in shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(
                "echo_state initialization needs a square 2-D recurrent kernel (n, n); "
                f"got {shape}."
            )
        dtype = _check_float_dtype(float if dtype is None else dtype)
        work_dtype = jnp.promote_types(dtype, jnp.float32)
        kernel = sparse_init(key, shape, work_dtype, out_sharding=out_sharding)
        radius = _spectral_radius(kernel).astype(work_dtype)
        target = jnp.asarray(spectral_radius, work_dtype)
        scale = jnp.where(radius > 0, target / jnp.where(radius > 0, radius, 1), 0)
        return (kernel * scale).astype(dtype)

    return init
