r"""Input pipeline of the benchmarks: MNIST from IDX files, CURVES and FACES generated.

NumPy and the standard library only, except that reading ``olivettifaces.mat`` (FACES) imports
SciPy (``scipy.io.loadmat``) when it is needed.

Each dataset comes back as a :class:`Dataset` of ``float32`` rows, ready to be the inputs and the
targets of an autoencoder: MNIST and CURVES as 784 pixels in ``[0, 1]`` (a 28x28 image flattened
row-major), FACES as 625 normalised pixels (a 25x25 image flattened row-major).

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

**FACES** (Hinton & Salakhutdinov, 2006, Supporting Online Material): Martens' file
(``newfaces_rot_single.mat``, 165,600 images of 25x25) is not available, so it is regenerated
from the 400 Olivetti faces (AT&T Laboratories Cambridge; 40 people x 10 photos, 64x64) as the SOM
describes: "rotating (-90 to +90 degrees), scaling (1.4 to 1.8), cropping, and subsampling",
then removing each pixel's mean and scaling the whole set to unit average pixel variance. The
exact grid, crop and interpolation are unpublished; what is marked *(ours)* is our choice.

1. Source: Roweis' ``olivettifaces.mat`` in a folder (default
   ``default_cache_dir() / "olivetti"``), downloaded from :data:`OLIVETTI_MIRRORS` if missing.
   Copies of the file differ in bytes (the container has been re-saved), so what is verified is
   the decoded pixel array: image ``j`` is ``faces[:, j].reshape(64, 64).T`` and shows person
   ``j // 10``; the ``(400, 64, 64)`` ``uint8`` array in C order has sha256
   :data:`OLIVETTI_PIXELS_SHA256`.
2. Variants *(ours: i.i.d. uniform draws, not a grid)*: image ``j`` gets 414 variants
   (400 x 414 = 165,600); variant ``k`` has angle :math:`\theta_{jk}` uniform in
   :math:`[-90^\circ, 90^\circ)` (counterclockwise as displayed) and scale :math:`s_{jk}`
   uniform in :math:`[1.4, 1.8)`, from ``np.random.default_rng(seed).random((400, 414, 2))``
   (index 0 the angle, 1 the scale), so the draws of the first images do not depend on how many
   images there are.
3. Geometry *(ours: crop size, bilinear interpolation without a prefilter)*: the image is
   magnified by :math:`s`, rotated by :math:`\theta` about its centre, and the central 64x64
   square (the original frame) is cropped and subsampled to 25x25. This is one bilinear
   resampling: with source pixel ``(r, c)`` centred at :math:`(y, x) = (r, c)`, output pixel
   ``(i, j)`` with :math:`u = j - 12`, :math:`v = i - 12` samples the source at

   .. math::

      x = 31.5 + h\,(u \cos\theta - v \sin\theta), \qquad
      y = 31.5 + h\,(u \sin\theta + v \cos\theta), \qquad h = \frac{64 / 25}{s},

   so a 25x25 frame covers :math:`64/s` = 35.6 to 45.7 source pixels: from the eyes to the
   mouth at :math:`s = 1.8`, from the eyebrows to just below the mouth at 1.4 (upright); the face
   fills the frame (checked by eye on rendered samples). Every sample lies inside the source
   (the frame's half-diagonal, :math:`12\sqrt{2}\,h \le 31.1`, is below 31.5); points outside
   would take the edge value.
4. Order: row ``j * 414 + k`` is variant ``k`` of image ``j``, so the set is ordered by person
   (4,140 rows each), as Martens' file is.
5. Normalisation (SOM): subtract the per-pixel mean over all 165,600 rows, then divide
   everything by one number, the square root of the average per-pixel variance, so that the
   average is 1. As in the SOM, this uses the whole set, test people included.
6. Split by person (SOM; Martens' code): people 0-24 train (103,500 rows), 25-29 validation
   (20,700; not returned by :func:`load_dataset`, see :func:`faces_split`), 30-39 test (41,400).

The result is the same for the same seed on one machine; across machines ``cos``/``sin`` may
differ in the last bit, which can flip the last bit of a pixel. Generating all 165,600 images
takes about 10-20 s on two CPU cores and about 0.8 GB, so nothing is cached.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import io
import logging
import math
import operator
import os
import pathlib
import tempfile
import urllib.request
import zlib
from collections.abc import Callable
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
OLIVETTI_FILE = "olivettifaces.mat"
OLIVETTI_MIRRORS: tuple[str, ...] = (
    "https://cs.nyu.edu/~roweis/data/",
    # The copy in ../shared/data/olivetti (re-saved in 2013), pinned to the commit it came from.
    "https://raw.githubusercontent.com/sjgershm/DBM/a30d9abb523aab874a299b8b1aa21e7df2023f60/",
)
# sha256 of the decoded (400, 64, 64) uint8 pixel array in C order (see load_olivetti).
OLIVETTI_PIXELS_SHA256 = "a3f75007cc103363b61a63e06bec8ea4846407682ef6e7c9ae1eb9c1bd0e8a00"
OLIVETTI_NUM_IMAGES = 400
OLIVETTI_IMAGES_PER_PERSON = 10
DATASET_NAMES: tuple[str, ...] = ("curves", "faces", "mnist")
CURVES_NUM_TRAIN = 20_000
CURVES_NUM_TEST = 10_000
FACES_VARIANTS_PER_IMAGE = 414  # 400 x 414 = 165,600 images
FACES_ANGLE_RANGE = (-90.0, 90.0)  # degrees, counterclockwise as displayed
FACES_SCALE_RANGE = (1.4, 1.8)
FACES_TRAIN_PEOPLE = range(0, 25)  # 103,500 images
FACES_VALID_PEOPLE = range(25, 30)  # 20,700 images, not returned by load_dataset
FACES_TEST_PEOPLE = range(30, 40)  # 41,400 images

_IMAGE_SIZE = 28
_IDX_DTYPES = {
    0x08: "uint8",
    0x09: "int8",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_MNIST_WANTED = f"the four MNIST IDX .gz files ({', '.join(MNIST_FILES)})"
_OLIVETTI_WANTED = f"Roweis' {OLIVETTI_FILE} (the 400 Olivetti faces)"
_HASH_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60.0

_KNOT_LOW, _KNOT_HIGH, _KNOT_GAP = 2.0, 26.0, 2.0
_KNOT_BATCH = 8192  # candidate triples per rejection-sampling draw (about 58% are accepted)
_POLYLINE_POINTS = 129  # x-uniform points per curve used to measure arc length
_SPACING = 0.25  # largest arc-length gap between curve samples, in pixels
_HALF_WIDTH = 1.5  # intensity = clip(_HALF_WIDTH - distance, 0, 1)
_RENDER_CHUNK = 1024  # images rendered together (keeps the temporaries in cache)

_OLIVETTI_SIZE = 64
_FACE_SIZE = 25
_RESAMPLE_CHUNK = 4096  # FACES variants resampled together (about 100 MB of temporaries)


class DataError(ValueError):
    """A dataset file is missing, corrupt or cannot be fetched, or a request cannot be served."""


class Dataset(NamedTuple):
    """Train and test inputs, one flattened image per row."""

    # CURVES and MNIST: values in [0, 1]; FACES: normalised (see the module docstring).
    train: np.ndarray  # shape=(n_train, dim), dtype=float32.
    test: np.ndarray  # shape=(n_test, dim), dtype=float32.


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


def _sha256_mismatch(path: pathlib.Path, expected: str) -> str | None:
    """``None`` if the file at ``path`` has sha256 ``expected``, else a description of the miss."""
    actual = _sha256(path)
    return None if actual == expected else f"sha256 {actual} (expected {expected})"


def _fetch_missing(
    path: pathlib.Path,
    *,
    download: bool,
    mirrors: tuple[str, ...],
    verify: Callable[[pathlib.Path], str | None],
    wanted: str,
) -> None:
    """Downloads the missing file ``path`` (see :func:`_download`), or says what to do."""
    if not download:
        raise DataError(
            f"{path} is missing; pass --data-dir pointing to a folder with {wanted}, "
            f"or allow downloading from one of {', '.join(mirrors)}."
        )
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"{path.parent}: cannot create the data folder ({e}); pass --data-dir."
        ) from e
    try:
        _download(path.name, path, mirrors=mirrors, verify=verify, wanted=wanted)
    except DataError:
        for folder in created:  # a mistyped --data-dir leaves nothing behind
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _download(
    name: str,
    dest: pathlib.Path,
    *,
    mirrors: tuple[str, ...],
    verify: Callable[[pathlib.Path], str | None],
    wanted: str,
) -> None:
    """Fetches ``name`` into ``dest`` from the first of ``mirrors`` whose copy passes ``verify``.

    Each copy is written to a temporary file beside ``dest`` and checked by ``verify`` (``None``
    if good, else why not); only a good one is moved into place, atomically, and no temporary
    file is left behind.

    Args:
      name: file name, appended to each mirror's base URL.
      dest: where the file goes; its folder must exist.
      mirrors: base URLs, tried in order.
      verify: checks a downloaded copy; returns ``None`` or the reason it is rejected.
      wanted: what a ``--data-dir`` folder should hold, for the error messages.

    Raises:
      DataError: if the folder is not writable or no mirror serves a good copy.
    """
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest.parent)
        except OSError as e:
            raise DataError(
                f"{dest.parent}: cannot write there ({e}); pass --data-dir pointing to a writable "
                f"folder or to one that already holds {wanted}."
            ) from e
        tmp = pathlib.Path(tmp_name)
        try:
            logger.info("Downloading %s", url)
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
            ):
                while chunk := response.read(_HASH_CHUNK):
                    out.write(chunk)
            problem = verify(tmp)
            if problem is not None:
                failures.append(f"{url}: {problem}")
                continue
            os.replace(tmp, dest)
            return
        except (OSError, ValueError, http.client.HTTPException) as e:
            failures.append(f"{url}: {e}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(
        f"{dest} is missing and no mirror served it ({'; '.join(failures) or 'no mirrors'}); "
        f"pass --data-dir pointing to a folder with {wanted}, or fetch {name} by hand from one "
        f"of {', '.join(mirrors)}."
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
        _fetch_missing(
            path,
            download=download,
            mirrors=MNIST_MIRRORS,
            verify=functools.partial(_sha256_mismatch, expected=expected),
            wanted=_MNIST_WANTED,
        )
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
# FACES


def read_olivetti(path: str | os.PathLike) -> np.ndarray:
    """Reads Roweis' ``olivettifaces.mat`` and decodes its images, without checking the pixels.

    Args:
      path: the ``.mat`` file (MATLAB 5 format, variable ``faces`` of shape ``(4096, 400)``).

    Returns:
      The 400 images, shape ``(400, 64, 64)``, ``uint8``, C-contiguous; image ``j`` is
      ``faces[:, j].reshape(64, 64).T`` and shows person ``j // 10``.

    Raises:
      DataError: if the file is missing or unreadable, is not a MATLAB file SciPy can read, or
        has no ``uint8`` variable ``faces`` of shape ``(4096, 400)``; also if SciPy is missing.
    """
    path = pathlib.Path(path)
    try:
        import scipy.io  # only FACES needs SciPy, so import it here
    except ImportError as e:
        raise DataError(
            f"{path}: reading it needs SciPy (scipy.io.loadmat); install it: pip install scipy."
        ) from e
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check the path.") from e
    try:
        mat = scipy.io.loadmat(io.BytesIO(raw), variable_names=["faces"])
    except Exception as e:  # garbled input raises MatReadError, OSError, zlib.error,
        # IndexError, ValueError, ... depending on where the damage is
        raise DataError(
            f"{path}: not a readable MATLAB file ({type(e).__name__}: {e}); delete it and "
            "download it again."
        ) from e
    faces = mat.get("faces")
    size = _OLIVETTI_SIZE
    expected_shape = (size * size, OLIVETTI_NUM_IMAGES)
    if not isinstance(faces, np.ndarray) or faces.shape != expected_shape:
        found = "no variable 'faces'" if faces is None else f"'faces' of shape {faces.shape}"
        raise DataError(
            f"{path}: expected a variable 'faces' of shape {expected_shape}, found {found}; it is "
            "not Roweis' olivettifaces.mat: delete it and download it again."
        )
    if faces.dtype != np.uint8:
        raise DataError(
            f"{path}: 'faces' has dtype {faces.dtype}, expected uint8; it is not Roweis' "
            "olivettifaces.mat: delete it and download it again."
        )
    images = faces.T.reshape(OLIVETTI_NUM_IMAGES, size, size).transpose(0, 2, 1)
    return np.ascontiguousarray(images)


def _pixels_sha256(images: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (its shape and dtype are checked separately)."""
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def _olivetti_mismatch(path: pathlib.Path) -> str | None:
    """``None`` if ``path`` decodes to the genuine Olivetti pixels, else what is wrong."""
    try:
        actual = _pixels_sha256(read_olivetti(path))
    except DataError as e:
        return f"not a readable olivettifaces.mat ({e.__cause__ or e})"
    if actual != OLIVETTI_PIXELS_SHA256:
        return f"pixel sha256 {actual} (expected {OLIVETTI_PIXELS_SHA256})"
    return None


def load_olivetti(
    data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> np.ndarray:
    """Loads the 400 Olivetti faces, verified by the checksum of the decoded pixels.

    Copies of ``olivettifaces.mat`` differ in bytes (the container has been re-saved), so the
    check is the sha256 of the decoded ``(400, 64, 64)`` ``uint8`` array in C order,
    :data:`OLIVETTI_PIXELS_SHA256`, not of the file.

    Args:
      data_dir: folder holding ``olivettifaces.mat``; ``None`` means
        ``default_cache_dir() / "olivetti"``.
      download: fetch a missing file from :data:`OLIVETTI_MIRRORS` into ``data_dir``; if
        ``False``, a missing file is an error.

    Returns:
      Images of shape ``(400, 64, 64)``, ``uint8``; image ``j`` shows person ``j // 10``.

    Raises:
      DataError: if the file is missing and cannot be fetched, cannot be decoded, or decodes to
        pixels other than the genuine ones (it is left untouched).
    """
    if data_dir is None:
        folder = default_cache_dir() / "olivetti"
    else:
        folder = pathlib.Path(data_dir).expanduser()
    path = folder / OLIVETTI_FILE
    if not path.exists():
        _fetch_missing(
            path,
            download=download,
            mirrors=OLIVETTI_MIRRORS,
            verify=_olivetti_mismatch,
            wanted=_OLIVETTI_WANTED,
        )
    images = read_olivetti(path)
    actual = _pixels_sha256(images)
    if actual != OLIVETTI_PIXELS_SHA256:
        raise DataError(
            f"{path}: pixel sha256 mismatch (the decoded (400, 64, 64) uint8 array hashes to "
            f"{actual}, expected {OLIVETTI_PIXELS_SHA256}); the file is corrupt or not Roweis' "
            "olivettifaces.mat: delete it and download it again."
        )
    return images


def faces_transforms(
    num_images: int, variants_per_image: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draws the rotation angle and scale of every variant (step 2 of the FACES procedure).

    Args:
      num_images: how many source images.
      variants_per_image: variants per image (414 in FACES).
      seed: seed of ``np.random.default_rng``.

    Returns:
      ``(angles, scales)``, each of shape ``(num_images, variants_per_image)``, ``float64``:
      angles in degrees, uniform in ``[-90, 90)``, scales uniform in ``[1.4, 1.8)``. The draws of
      the first ``n`` images do not depend on ``num_images``.
    """
    num_images = operator.index(num_images)
    variants_per_image = operator.index(variants_per_image)
    if num_images < 0 or variants_per_image < 0:
        raise DataError(
            f"num_images and variants_per_image must be >= 0, got {num_images} and "
            f"{variants_per_image}."
        )
    u = np.random.default_rng(seed).random((num_images, variants_per_image, 2))
    low, high = FACES_ANGLE_RANGE
    angles = low + (high - low) * u[..., 0]
    low, high = FACES_SCALE_RANGE
    scales = low + (high - low) * u[..., 1]
    return angles, scales


def rotate_scale_crop(
    images: np.ndarray, index: np.ndarray, angles: np.ndarray, scales: np.ndarray
) -> np.ndarray:
    """Magnifies, rotates, crops and subsamples images to 25x25 by one bilinear resampling.

    Variant ``k`` is image ``images[index[k]]`` magnified by ``scales[k]`` and rotated by
    ``angles[k]`` degrees (counterclockwise as displayed) about its centre, of which the central
    ``s x s`` square (``s`` = the source side, 64 for Olivetti) is subsampled to 25x25; the
    sampling formula is in the module docstring. Points beyond the outermost pixel centres take
    the edge value (this never happens for FACES' scales of at least 1.4).

    Args:
      images: source images, shape ``(m, s, s)``, any real dtype.
      index: which image each variant uses, shape ``(n,)``, integers in ``[0, m)``.
      angles: rotation of each variant in degrees, shape ``(n,)``.
      scales: magnification of each variant, shape ``(n,)``, positive.

    Returns:
      Variants of shape ``(n, 625)``, ``float32``, each a 25x25 image flattened row-major.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[1] < 2:
        raise DataError(f"images must have shape (m, s, s) with s >= 2, got {images.shape}.")
    index = np.asarray(index, dtype=np.int64)
    angles = np.asarray(angles, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    if not index.shape == angles.shape == scales.shape or index.ndim != 1:
        raise DataError(
            f"index, angles and scales must be 1-D of one length, got shapes {index.shape}, "
            f"{angles.shape} and {scales.shape}."
        )
    num_images, side = images.shape[0], images.shape[1]
    if index.size and (index.min() < 0 or index.max() >= num_images):
        raise DataError(f"index must lie in [0, {num_images}), got {index.min()}..{index.max()}.")
    if images.size >= 2**31:
        raise DataError(f"images has {images.size} pixels; at most 2**31 - 1 are supported.")
    flat = images.reshape(-1).astype(np.float32)
    out = np.empty((len(index), _FACE_SIZE * _FACE_SIZE), np.float32)
    for start in range(0, len(index), _RESAMPLE_CHUNK):
        part = slice(start, start + _RESAMPLE_CHUNK)
        _bilinear(flat, side, index[part], angles[part], scales[part], out[part])
    return out


def _bilinear(
    flat: np.ndarray,
    side: int,
    index: np.ndarray,
    angles: np.ndarray,
    scales: np.ndarray,
    out: np.ndarray,
) -> None:
    """One chunk of :func:`rotate_scale_crop`, written into ``out``, shape ``(n, 625)``."""
    n = len(index)
    offset = np.arange(_FACE_SIZE) - (_FACE_SIZE - 1) / 2  # u (columns) or v (rows)
    step = (side / _FACE_SIZE) / scales
    theta = np.deg2rad(angles)
    cos, sin = (np.cos(theta) * step)[:, None, None], (np.sin(theta) * step)[:, None, None]
    u, v = offset[None, None, :], offset[:, None][None]
    centre = (side - 1) / 2
    last = side - 1
    x = (centre + cos * u - sin * v).astype(np.float32)  # (n, 25, 25): column coordinate
    y = (centre + sin * u + cos * v).astype(np.float32)  # row coordinate
    np.clip(x, 0, last, out=x)
    np.clip(y, 0, last, out=y)
    col = np.minimum(x.astype(np.int32), last - 1)
    row = np.minimum(y.astype(np.int32), last - 1)
    x -= col  # fractional parts, in [0, 1]
    y -= row
    row *= side
    row += col
    row += (index.astype(np.int32) * (side * side))[:, None, None]  # flat index, top left
    top_left, top_right = flat[row], flat[row + 1]
    bottom_left, bottom_right = flat[row + side], flat[row + side + 1]
    top_right -= top_left
    top_right *= x
    top_right += top_left  # top edge, interpolated
    bottom_right -= bottom_left
    bottom_right *= x
    bottom_right += bottom_left  # bottom edge
    bottom_right -= top_right
    bottom_right *= y
    bottom_right += top_right
    out[...] = bottom_right.reshape(n, -1)


def normalize_faces(x: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """Zero mean per pixel, then one scale for all so the average per-pixel variance is 1.

    Args:
      x: data of shape ``(n, d)``, ``n >= 2`` rows, ``float32``.
      copy: if ``False``, ``x`` is normalised in place and returned (saves a copy of the set).

    Returns:
      ``(x - mean) / c``, ``float32``, where ``mean`` is the per-column mean and ``c`` the square
      root of the mean over columns of the per-column (population) variance. Sums are in
      ``float64``.

    Raises:
      DataError: if ``x`` is not a 2-D ``float32`` array with two or more rows, or is constant.
    """
    if x.ndim != 2 or x.dtype != np.float32 or len(x) < 2:
        raise DataError(
            f"normalize_faces needs a 2-D float32 array of >= 2 rows, got {x.dtype} {x.shape}."
        )
    if copy:
        x = x.copy()
    x -= x.mean(axis=0, dtype=np.float64).astype(np.float32)
    total = 0.0
    for start in range(0, len(x), _RESAMPLE_CHUNK):
        total += float(np.square(x[start : start + _RESAMPLE_CHUNK], dtype=np.float64).sum())
    mean_variance = total / x.size
    if not mean_variance > 0:
        raise DataError("normalize_faces: the data are constant; nothing to scale.")
    x *= np.float32(1.0 / math.sqrt(mean_variance))
    return x


def make_faces(
    images: np.ndarray, *, variants_per_image: int = FACES_VARIANTS_PER_IMAGE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Generates the FACES set: transformed, 25x25, normalised variants of Olivetti images.

    The procedure is in the module docstring. Row ``j * variants_per_image + k`` is variant ``k``
    of ``images[j]``, so rows are ordered by image and hence by person.

    Args:
      images: source images, shape ``(m, 64, 64)`` (all 400 from :func:`load_olivetti` for
        FACES); image ``j`` is taken to show person ``j // 10``.
      variants_per_image: variants per image, at least 1 (414 in FACES).
      seed: seed of the angle and scale draws (:func:`faces_transforms`).

    Returns:
      ``(faces, person)``: ``faces`` of shape ``(m * variants_per_image, 625)``, ``float32``,
      normalised over all rows by :func:`normalize_faces`; ``person``, shape
      ``(m * variants_per_image,)``, ``int64``, the person of each row.
    """
    images = np.asarray(images)
    variants_per_image = operator.index(variants_per_image)
    if variants_per_image < 1:
        raise DataError(f"variants_per_image must be >= 1, got {variants_per_image}.")
    angles, scales = faces_transforms(len(images), variants_per_image, seed)
    index = np.repeat(np.arange(len(images)), variants_per_image)
    faces = rotate_scale_crop(images, index, angles.ravel(), scales.ravel())
    person = index // OLIVETTI_IMAGES_PER_PERSON
    return normalize_faces(faces, copy=False), person


def faces_split(person: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits rows by person: people 0-24 train, 25-29 validation, 30-39 test.

    Args:
      person: the person id of each row, shape ``(n,)``, integers.

    Returns:
      ``(train, valid, test)``: the row indices of each split, in increasing order.
    """
    person = np.asarray(person)
    return tuple(
        np.flatnonzero((person >= people.start) & (person < people.stop))
        for people in (FACES_TRAIN_PEOPLE, FACES_VALID_PEOPLE, FACES_TEST_PEOPLE)
    )


def _evenly_spaced(x: np.ndarray, num: int) -> np.ndarray:
    """Rows ``floor(i * len(x) / num)`` for ``i < num``: all of ``x`` if ``num == len(x)``."""
    if num == len(x):
        return x
    return x[np.arange(num) * len(x) // num]


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
      name: one of :data:`DATASET_NAMES` (``"curves"``, ``"faces"``, ``"mnist"``).
      data_dir: MNIST folder, as in :func:`load_mnist`; for FACES the folder of
        ``olivettifaces.mat``, as in :func:`load_olivetti`; ignored for CURVES.
      seed: CURVES seed (train is stream 0, test stream 1); FACES seed of :func:`make_faces`;
        ignored for MNIST.
      num_train: MNIST keeps the first ``num_train`` training images (``None``: all 60,000);
        CURVES generates that many (``None``: 20,000); FACES keeps ``num_train`` evenly spaced
        rows of its person-ordered training split, ``floor(i * 103500 / num_train)`` for
        ``i < num_train``, so every training person is represented (``None``: all 103,500).
      num_test: the same for the test split (``None``: all 10,000 / 10,000 / 41,400).
      download: as in :func:`load_mnist` and :func:`load_olivetti`.

    Returns:
      ``Dataset(train, test)``, ``float32`` rows of 784 pixels in ``[0, 1]`` (CURVES, MNIST) or
      of 625 normalised pixels (FACES; its validation people are not returned, see
      :func:`faces_split`).

    Raises:
      DataError: for an unknown name, a count below 1 or above what MNIST or FACES has, or any
        error of :func:`load_mnist` or :func:`load_olivetti`.
    """
    if name == "curves":
        n_train = _count("num_train", num_train, CURVES_NUM_TRAIN, None, "")
        n_test = _count("num_test", num_test, CURVES_NUM_TEST, None, "")
        return Dataset(make_curves(n_train, seed), make_curves(n_test, seed, stream=1))
    if name == "faces":
        per_person = OLIVETTI_IMAGES_PER_PERSON * FACES_VARIANTS_PER_IMAGE
        full_train = len(FACES_TRAIN_PEOPLE) * per_person
        full_test = len(FACES_TEST_PEOPLE) * per_person
        n_train = _count("num_train", num_train, full_train, full_train, "FACES training images")
        n_test = _count("num_test", num_test, full_test, full_test, "FACES test images")
        images = load_olivetti(data_dir, download=download)
        faces, person = make_faces(images, variants_per_image=FACES_VARIANTS_PER_IMAGE, seed=seed)
        train_rows, _, test_rows = faces_split(person)
        return Dataset(
            faces[_evenly_spaced(train_rows, n_train)], faces[_evenly_spaced(test_rows, n_test)]
        )
    if name == "mnist":
        n_train = _count("num_train", num_train, 60_000, 60_000, "MNIST training images")
        n_test = _count("num_test", num_test, 10_000, 10_000, "MNIST test images")
        train, test = load_mnist(data_dir, download=download)
        return Dataset(
            train if n_train == len(train) else train[:n_train].copy(),
            test if n_test == len(test) else test[:n_test].copy(),
        )
    raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}.")
