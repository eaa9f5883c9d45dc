r"""Input pipeline of the benchmarks: MNIST from IDX files, CURVES generated. NumPy only.

Both datasets come back as a :class:`Dataset` of ``float32`` rows in ``[0, 1]`` (784 pixels, a
28x28 image flattened row-major), ready to be the inputs and the targets of an autoencoder.

**MNIST** (LeCun, Cortes & Burges) is read from the four standard IDX ``.gz`` files in a folder
(default ``default_cache_dir() / "mnist"``). A file present there is checked against its sha256
in :data:`MNIST_FILES` and never modified; a missing one is downloaded from :data:`MNIST_MIRRORS`
in turn, verified and moved into place atomically. Pixels are divided by 255; the test split is
the ``t10k`` set.

**CURVES** (Hinton & Salakhutdinov, 2006): the original file (``digs3pts_1.mat``, 20,000 train
and 10,000 test images) is not available, so the images are generated following the published
description. For each image:

1. Three knots :math:`(x_i, y_i)` are drawn uniformly in :math:`[2, 26]^2` subject to
   :math:`x_2 \ge x_1 + 2` and :math:`x_3 \ge x_2 + 2`: three uniform ``x`` are sorted and the
   triple is rejected unless both gaps are at least 2 (uniform on the constrained set), ``y``
   independent and uniform. Candidates come in fixed-size batches, so the first ``n`` images of a
   seed do not depend on how many are asked for.
2. The curve is the natural cubic spline through the knots over :math:`[x_1, x_3]`. With
   :math:`h_1 = x_2 - x_1`, :math:`h_2 = x_3 - x_2` and zero second derivative at both ends, the
   second derivative at the middle knot is
   :math:`M = 3\,[(y_3 - y_2)/h_2 - (y_2 - y_1)/h_1] / (h_1 + h_2)`, and with
   :math:`t = x - x_1`, :math:`u = x_3 - x`

   .. math::

      S(x) = \begin{cases}
        y_1 + \left(\frac{y_2 - y_1}{h_1} - \frac{M h_1}{6}\right) t + \frac{M t^3}{6 h_1},
          & x_1 \le x \le x_2, \\
        y_3 + \left(\frac{y_2 - y_3}{h_2} - \frac{M h_2}{6}\right) u + \frac{M u^3}{6 h_2},
          & x_2 < x \le x_3.
      \end{cases}

3. The curve is sampled at points equally spaced in arc length, about 0.25 px apart (the arc
   length is measured on a 129-point polyline), so steep parts are inked as densely as flat ones.
4. Inking (our choice; the original Matlab inking code is not published): pixel ``(r, c)`` has its
   centre at :math:`(x, y) = (c + 0.5, r + 0.5)` and intensity :math:`\mathrm{clip}(1.5 - d, 0, 1)`,
   where :math:`d` is its distance to the nearest curve sample: a 1 px solid core fading linearly
   to zero 1.5 px from the curve (a 2 px wide stroke at half intensity, with round end caps). The
   sampling overestimates :math:`d` by under 0.02 px wherever the intensity is below 1. Ink
   beyond the 28x28 canvas (where the spline overshoots) is dropped. Rows are ``y`` and columns
   ``x``; images are flattened row-major.

The training set is :func:`make_curves` with ``stream=0`` (``np.random.default_rng(seed)``), the
test set the same with ``stream=1``, an independent stream that no other seed reaches.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import math
import operator
import os
import pathlib
import tempfile
import urllib.request
import zlib
from typing import NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",  # noqa: E501
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",  # noqa: E501
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
DATASET_NAMES: tuple[str, ...] = ("curves", "mnist")
CURVES_NUM_TRAIN = 20_000
CURVES_NUM_TEST = 10_000

_IMAGE_SIZE = 28
_IDX_DTYPES = {
    0x08: "uint8",
    0x09: "int8",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_HASH_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60.0

_KNOT_LOW, _KNOT_HIGH, _KNOT_GAP = 2.0, 26.0, 2.0
_KNOT_BATCH = 8192  # candidate triples per rejection-sampling draw (about 58% are accepted)
_POLYLINE_POINTS = 129  # x-uniform points per curve used to measure arc length
_SPACING = 0.25  # largest arc-length gap between curve samples, in pixels
_HALF_WIDTH = 1.5  # intensity = clip(_HALF_WIDTH - distance, 0, 1)
_RENDER_CHUNK = 1024  # images rendered together (keeps the temporaries in cache)


class DataError(ValueError):
    """A dataset file is missing, corrupt or cannot be fetched, or a request cannot be served."""


class Dataset(NamedTuple):
    """Train and test inputs, one flattened image per row."""

    train: np.ndarray  # shape=(n_train, dim), dtype=float32, values in [0, 1].
    test: np.ndarray  # shape=(n_test, dim), dtype=float32, values in [0, 1].


def default_cache_dir() -> pathlib.Path:
    """Returns ``$NAGMOM_DATA_DIR`` if set and non-empty, else ``~/.cache/nagmom``."""
    env = os.environ.get("NAGMOM_DATA_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "nagmom"


# ----------------------------------------------------------------------------------------------
# MNIST


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file of unsigned bytes, gzip-compressed or plain.

    Args:
      path: the file; gzip compression is detected from its first two bytes.

    Returns:
      The array, dtype ``uint8``, with the shape stored in the header.

    Raises:
      DataError: if the file is missing, not valid gzip, not IDX, not ``uint8``, or its length
        does not match the header exactly.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check the path.") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(
                f"{path}: corrupt or truncated gzip data ({e}); delete it and download it again."
            ) from e
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number); check that it is the file.")
    code, ndim = raw[2], raw[3]
    if code != 0x08:
        kind = _IDX_DTYPES.get(code, "unknown")
        raise DataError(
            f"{path}: IDX dtype code 0x{code:02X} ({kind}) is not supported; only 0x08 (uint8) is."
        )
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions; the file is garbled.")
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(f"{path}: truncated IDX header; delete it and download it again.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)
    if len(raw) - offset != expected:
        raise DataError(
            f"{path}: truncated or garbled IDX data ({len(raw) - offset} data bytes, header "
            f"{shape} needs {expected}); delete it and download it again."
        )
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(shape).copy()


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: pathlib.Path, expected: str) -> None:
    try:
        actual = _sha256(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}); replace it with the MNIST file.") from e
    if actual != expected:
        raise DataError(
            f"{path}: sha256 mismatch (expected {expected}, got {actual}); the file is corrupt or "
            "not the standard MNIST file: delete it and download it again."
        )


def _download(name: str, dest: pathlib.Path, expected: str) -> None:
    """Fetches ``name`` from the first mirror that serves it with the right sha256."""
    failures = []
    for base in MNIST_MIRRORS:
        url = base.rstrip("/") + "/" + name
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest.parent)
        except OSError as e:
            raise DataError(
                f"{dest.parent}: cannot write there ({e}); pass --data-dir pointing to a writable "
                "folder or to one that already holds the four MNIST IDX .gz files."
            ) from e
        tmp = pathlib.Path(tmp_name)
        try:
            logger.info("Downloading %s", url)
            digest = hashlib.sha256()
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
            ):
                while chunk := response.read(_HASH_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != expected:
                failures.append(f"{url}: sha256 {digest.hexdigest()} (expected {expected})")
                continue
            os.replace(tmp, dest)
            return
        except (OSError, ValueError, http.client.HTTPException) as e:
            failures.append(f"{url}: {e}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(
        f"{dest} is missing and no mirror served it ({'; '.join(failures) or 'no mirrors'}); "
        f"pass --data-dir pointing to a folder with the four MNIST IDX .gz files "
        f"({', '.join(MNIST_FILES)}), or fetch them by hand from one of "
        f"{', '.join(MNIST_MIRRORS)}."
    )


def load_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Dataset:
    """Loads MNIST as 784-pixel rows in ``[0, 1]``, fetching missing files if allowed.

    Args:
      data_dir: folder holding the four IDX ``.gz`` files of :data:`MNIST_FILES`; ``None`` means
        ``default_cache_dir() / "mnist"``.
      download: fetch missing files from :data:`MNIST_MIRRORS` into ``data_dir``; if ``False``, a
        missing file is an error.

    Returns:
      ``Dataset(train, test)`` of shapes ``(60000, 784)`` and ``(10000, 784)``, ``float32``.

    Raises:
      DataError: if a file is missing and cannot be fetched, fails its sha256 check (it is left
        untouched) or is malformed, or images and labels disagree in number.
    """
    if data_dir is None:
        folder = default_cache_dir() / "mnist"
    else:
        folder = pathlib.Path(data_dir).expanduser()
    for name, expected in MNIST_FILES.items():
        path = folder / name
        if path.exists():
            _check_sha256(path, expected)
            continue
        if not download:
            raise DataError(
                f"{path} is missing; pass --data-dir pointing to a folder with the four MNIST IDX "
                f".gz files ({', '.join(MNIST_FILES)}), or allow downloading from one of "
                f"{', '.join(MNIST_MIRRORS)}."
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(
                f"{folder}: cannot create the data folder ({e}); pass --data-dir."
            ) from e
        _download(name, path, expected)
    train = _mnist_split(folder, "train")
    test = _mnist_split(folder, "t10k")
    return Dataset(train, test)


def _mnist_split(folder: pathlib.Path, prefix: str) -> np.ndarray:
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (_IMAGE_SIZE, _IMAGE_SIZE):
        raise DataError(f"{images_path}: expected (n, 28, 28) images, got shape {images.shape}.")
    if labels.shape != (len(images),) or labels.max(initial=0) > 9:
        raise DataError(
            f"{labels_path}: expected {len(images)} labels in 0..9 to match {images_path.name}, "
            f"got shape {labels.shape}; delete both and download them again."
        )
    x = images.reshape(len(images), -1).astype(np.float32)
    x /= np.float32(255)
    return x


# ----------------------------------------------------------------------------------------------
# CURVES


def _natural_cubic_spline(knots_x: np.ndarray, knots_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Evaluates the natural cubic spline through three knots (see the module docstring).

    Args:
      knots_x: knot abscissae, shape ``(..., 3)``, strictly increasing along the last axis.
      knots_y: knot ordinates, same shape.
      x: points to evaluate, shape ``(..., m)`` broadcasting against ``knots_x[..., :1]``.

    Returns:
      The spline values at ``x``, shape ``(..., m)``.
    """
    x1, x2, x3 = knots_x[..., 0:1], knots_x[..., 1:2], knots_x[..., 2:3]
    y1, y2, y3 = knots_y[..., 0:1], knots_y[..., 1:2], knots_y[..., 2:3]
    h1, h2 = x2 - x1, x3 - x2
    m = 3.0 * ((y3 - y2) / h2 - (y2 - y1) / h1) / (h1 + h2)
    t, u = x - x1, x3 - x
    left = y1 + ((y2 - y1) / h1 - m * h1 / 6.0) * t + m * t**3 / (6.0 * h1)
    right = y3 + ((y2 - y3) / h2 - m * h2 / 6.0) * u + m * u**3 / (6.0 * h2)
    return np.where(x <= x2, left, right)


def _sample_knots(num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``num`` knot triples ``(x, y)``, each ``(num, 3)``, by rejection sampling."""
    xs, ys, have = [np.zeros((0, 3))], [np.zeros((0, 3))], 0
    while have < num:
        x = np.sort(rng.uniform(_KNOT_LOW, _KNOT_HIGH, (_KNOT_BATCH, 3)), axis=1)
        y = rng.uniform(_KNOT_LOW, _KNOT_HIGH, (_KNOT_BATCH, 3))
        ok = (np.diff(x, axis=1) >= _KNOT_GAP).all(axis=1)
        xs.append(x[ok])
        ys.append(y[ok])
        have += int(ok.sum())
    return np.concatenate(xs)[:num], np.concatenate(ys)[:num]


def _curve_samples(
    knots_x: np.ndarray, knots_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points along each spline, equally spaced in arc length at most ``_SPACING`` apart.

    Returns:
      ``(curve, px, py)``: for every sample, the index of its curve and its coordinates.
    """
    n = len(knots_x)
    s = np.linspace(0.0, 1.0, _POLYLINE_POINTS)
    poly_x = knots_x[:, :1] + (knots_x[:, 2:] - knots_x[:, :1]) * s
    poly_y = _natural_cubic_spline(knots_x, knots_y, poly_x)
    arc = np.cumsum(np.hypot(np.diff(poly_x), np.diff(poly_y)), axis=1)
    arc = np.concatenate([np.zeros((n, 1)), arc], axis=1)  # (n, P), strictly increasing
    length = arc[:, -1]
    counts = np.ceil(length / _SPACING).astype(np.int64) + 1
    curve = np.repeat(np.arange(n), counts)
    first = np.cumsum(counts) - counts
    target = (np.arange(counts.sum()) - first[curve]) * (length / (counts - 1))[curve]
    # One searchsorted for all curves: shift each row of `arc` above the previous one.
    shift = np.cumsum(length + 1.0) - (length + 1.0)
    flat_arc = (arc + shift[:, None]).ravel()
    flat_target = target + shift[curve]
    j = np.searchsorted(flat_arc, flat_target, side="right") - 1
    j = np.clip(j, curve * _POLYLINE_POINTS, (curve + 1) * _POLYLINE_POINTS - 2)
    frac = (flat_target - flat_arc[j]) / (flat_arc[j + 1] - flat_arc[j])
    flat_x = poly_x.ravel()
    px = flat_x[j] + frac * (flat_x[j + 1] - flat_x[j])
    py = _natural_cubic_spline(knots_x[curve], knots_y[curve], px[:, None])[:, 0]
    return curve, px, py


def _ink(knots_x: np.ndarray, knots_y: np.ndarray) -> np.ndarray:
    """Renders one spline per row of knots as a 28x28 stroke; returns ``(n, 784)`` float32."""
    n, size = len(knots_x), _IMAGE_SIZE
    curve, px, py = _curve_samples(knots_x, knots_y)
    offsets = np.arange(-1, 2)  # a 3x3 patch holds every pixel centre within 1.5 px
    cols = np.rint(px - 0.5).astype(np.int64)[:, None] + offsets
    rows = np.rint(py - 0.5).astype(np.int64)[:, None] + offsets
    dx2 = (cols + 0.5 - px[:, None]) ** 2
    dy2 = (rows + 0.5 - py[:, None]) ** 2
    value = np.clip(_HALF_WIDTH - np.sqrt(dy2[:, :, None] + dx2[:, None, :]), 0.0, 1.0)
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    value = np.where(inside, value, 0.0).astype(np.float32)
    rows, cols = np.clip(rows, 0, size - 1), np.clip(cols, 0, size - 1)
    index = (curve * size * size)[:, None, None] + rows[:, :, None] * size + cols[:, None, :]
    images = np.zeros(n * size * size, np.float32)
    np.maximum.at(images, index.ravel(), value.ravel())
    return images.reshape(n, size * size)


def make_curves(num_images: int, seed: int, *, stream: int = 0) -> np.ndarray:
    """Generates CURVES images: inked natural cubic splines through three random points.

    The procedure is in the module docstring. The first ``n`` images of a ``(seed, stream)``
    are the same whatever ``num_images >= n`` is.

    Args:
      num_images: how many images, a non-negative integer.
      seed: seed of ``np.random.default_rng``.
      stream: 0 draws from ``np.random.default_rng(seed)``; ``k > 0`` from an independent
        stream (``SeedSequence(seed, spawn_key=(k,))``); :func:`load_dataset` uses 1 for test.

    Returns:
      Images of shape ``(num_images, 784)``, ``float32``, values in ``[0, 1]``, row-major 28x28.
    """
    num_images = operator.index(num_images)
    if num_images < 0:
        raise DataError(f"num_images must be >= 0, got {num_images}.")
    spawn_key = (operator.index(stream),) if stream else ()
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=spawn_key))
    knots_x, knots_y = _sample_knots(num_images, rng)
    chunks = [
        _ink(knots_x[i : i + _RENDER_CHUNK], knots_y[i : i + _RENDER_CHUNK])
        for i in range(0, num_images, _RENDER_CHUNK)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, _IMAGE_SIZE**2), np.float32)


# ----------------------------------------------------------------------------------------------
# Entry point


def _count(name: str, value: int | None, default: int, available: int | None, what: str) -> int:
    if value is None:
        return default
    value = operator.index(value)
    if value < 1:
        raise DataError(f"{name} must be a positive integer, got {value}.")
    if available is not None and value > available:
        raise DataError(f"{name}={value} asks for more than the {available} {what} available.")
    return value


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    num_train: int | None = None,
    num_test: int | None = None,
    download: bool = True,
) -> Dataset:
    """Loads a dataset by name.

    Args:
      name: one of :data:`DATASET_NAMES` (``"curves"``, ``"mnist"``).
      data_dir: MNIST folder, as in :func:`load_mnist`; ignored for CURVES.
      seed: CURVES seed (train is stream 0, test stream 1); ignored for MNIST.
      num_train: MNIST keeps the first ``num_train`` training images (``None``: all 60,000);
        CURVES generates that many (``None``: 20,000).
      num_test: the same for the test split (``None``: all 10,000 / 10,000).
      download: as in :func:`load_mnist`.

    Returns:
      ``Dataset(train, test)``, ``float32`` rows of 784 pixels in ``[0, 1]``.

    Raises:
      DataError: for an unknown name, a count below 1 or above what MNIST has, or any error of
        :func:`load_mnist`.
    """
    if name == "curves":
        n_train = _count("num_train", num_train, CURVES_NUM_TRAIN, None, "")
        n_test = _count("num_test", num_test, CURVES_NUM_TEST, None, "")
        return Dataset(make_curves(n_train, seed), make_curves(n_test, seed, stream=1))
    if name == "mnist":
        n_train = _count("num_train", num_train, 60_000, 60_000, "MNIST training images")
        n_test = _count("num_test", num_test, 10_000, 10_000, "MNIST test images")
        train, test = load_mnist(data_dir, download=download)
        return Dataset(
            train if n_train == len(train) else train[:n_train].copy(),
            test if n_test == len(test) else test[:n_test].copy(),
        )
    raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}.")
