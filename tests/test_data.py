"""benchmarks/data.py: IDX reading, MNIST checksums and download, the CURVES generator."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import data
import numpy as np
import pytest

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_mnist = pytest.mark.skipif(
    not all((SHARED_MNIST / name).is_file() for name in data.MNIST_FILES),
    reason=f"genuine MNIST files not found in {SHARED_MNIST} (expected ../shared beside the repo)",
)


def _link_mnist(folder: Path, skip: tuple[str, ...] = ()) -> Path:
    """Symlinks the genuine MNIST files (except ``skip``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in data.MNIST_FILES:
        if name not in skip:
            (folder / name).symlink_to(SHARED_MNIST / name)
    return folder


def _write_idx(path: Path, shape: tuple[int, ...], payload: bytes, code: int = 0x08) -> Path:
    header = bytes([0, 0, code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    path.write_bytes(gzip.compress(header + payload))
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# ----------------------------------------------------------------------------------------------
# read_idx


@needs_mnist
def test_read_idx_genuine_files():
    images = data.read_idx(SHARED_MNIST / "train-images-idx3-ubyte.gz")
    labels = data.read_idx(SHARED_MNIST / "train-labels-idx1-ubyte.gz")
    test_images = data.read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    test_labels = data.read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert test_images.shape == (10000, 28, 28)
    assert np.bincount(labels, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(test_labels, minlength=10).tolist() == TEST_COUNTS


def test_read_idx_plain_and_gzip_roundtrip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    (tmp_path / "plain").write_bytes(header + array.tobytes())
    (tmp_path / "packed.gz").write_bytes(gzip.compress(header + array.tobytes()))
    for name in ("plain", "packed.gz"):
        out = data.read_idx(tmp_path / name)
        np.testing.assert_array_equal(out, array)
        assert out.dtype == np.uint8 and out.flags.writeable


@pytest.mark.parametrize(
    "shape, payload, code, match",
    [
        ((3, 28, 28), bytes(100), 0x08, "truncated or garbled"),
        ((3,), bytes(4), 0x08, "truncated or garbled"),  # one byte too many
        ((2, 2), bytes(16), 0x0D, "only 0x08"),
    ],
    ids=["truncated", "trailing-bytes", "float32"],
)
def test_read_idx_rejects_bad_content(tmp_path, shape, payload, code, match):
    path = _write_idx(tmp_path / "bad-idx1-ubyte.gz", shape, payload, code)
    with pytest.raises(data.DataError, match=match) as info:
        data.read_idx(path)
    assert "bad-idx1-ubyte.gz" in str(info.value)


def test_read_idx_rejects_garbled_files(tmp_path):
    good = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(range(200)))
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "magic").write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    (tmp_path / "header").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    for name, match in [("cut.gz", "gzip"), ("magic", "magic"), ("header", "header")]:
        with pytest.raises(data.DataError, match=match):
            data.read_idx(tmp_path / name)
    with pytest.raises(data.DataError, match="absent"):
        data.read_idx(tmp_path / "absent")


# ----------------------------------------------------------------------------------------------
# load_mnist


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NAGMOM_DATA_DIR", str(tmp_path))
    assert data.default_cache_dir() == tmp_path
    monkeypatch.delenv("NAGMOM_DATA_DIR")
    assert data.default_cache_dir() == Path.home() / ".cache" / "nagmom"


def test_mnist_files_match_shared_checksums():
    sums = SHARED_MNIST.parent / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"{sums} not found")
    listed = dict(line.split()[::-1] for line in sums.read_text().splitlines() if line.strip())
    for name, sha in data.MNIST_FILES.items():
        assert listed[f"./mnist/{name}"] == sha


@needs_mnist
def test_load_mnist_genuine(tmp_path):
    train, test = data.load_mnist(_link_mnist(tmp_path / "mnist"), download=False)
    assert train.shape == (60000, 784) and test.shape == (10000, 784)
    assert train.dtype == np.float32 and test.dtype == np.float32
    assert train.min() == 0.0 and train.max() == 1.0
    assert train.mean() == pytest.approx(0.13066, abs=5e-5)
    assert test.mean() == pytest.approx(0.13251, abs=5e-5)


@needs_mnist
def test_load_mnist_rejects_corrupt_file_and_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MNIST_MIRRORS", (SHARED_MNIST.as_uri() + "/",))
    name = "t10k-labels-idx1-ubyte.gz"
    folder = _link_mnist(tmp_path, skip=(name,))
    corrupt = bytearray((SHARED_MNIST / name).read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    (folder / name).write_bytes(corrupt)
    with pytest.raises(data.DataError, match="sha256") as info:
        data.load_mnist(folder, download=True)
    message = str(info.value)
    assert name in message and data.MNIST_FILES[name] in message
    assert hashlib.sha256(corrupt).hexdigest() in message
    assert (folder / name).read_bytes() == corrupt  # never overwritten


def test_load_mnist_missing_file_without_download(tmp_path):
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz") as info:
        data.load_mnist(tmp_path, download=False)
    assert "--data-dir" in str(info.value)


@needs_mnist
def test_load_mnist_downloads_from_next_good_mirror(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for name in data.MNIST_FILES:
        (wrong / name).write_bytes(b"not mnist")
    mirrors = (empty.as_uri() + "/", wrong.as_uri(), SHARED_MNIST.as_uri() + "/")
    monkeypatch.setattr(data, "MNIST_MIRRORS", mirrors)
    target = tmp_path / "cache" / "mnist"
    kept = "t10k-labels-idx1-ubyte.gz"
    _link_mnist(target, skip=tuple(n for n in data.MNIST_FILES if n != kept))

    train, test = data.load_mnist(target)

    assert train.shape == (60000, 784) and test.shape == (10000, 784)
    assert (target / kept).is_symlink()  # present files are verified, not fetched again
    for name, sha in data.MNIST_FILES.items():
        assert hashlib.sha256((target / name).read_bytes()).hexdigest() == sha
    assert _leftovers(target) == []


def test_load_mnist_all_mirrors_fail(tmp_path, monkeypatch):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "train-images-idx3-ubyte.gz").write_bytes(b"not mnist")
    nowhere = (tmp_path / "nowhere").as_uri() + "/"
    monkeypatch.setattr(data, "MNIST_MIRRORS", (nowhere, wrong.as_uri() + "/"))
    target = tmp_path / "typo" / "mnist"
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz") as info:
        data.load_mnist(target)
    message = str(info.value)
    assert "no mirror" in message and str(target) in message and "sha256" in message
    assert not (tmp_path / "typo").exists()  # the folders it made for the download are removed
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(data.DataError, match="no mirror"):
        data.load_mnist(existing)
    assert os.listdir(existing) == []  # a user's folder stays, with nothing half-written in it


@needs_mnist
def test_load_dataset_mnist_truncates(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(SHARED_MNIST, folder)
    train, test = data.load_dataset("mnist", data_dir=folder, num_train=100, num_test=50)
    assert train.shape == (100, 784) and test.shape == (50, 784)


def test_load_dataset_rejects_bad_requests(tmp_path):
    with pytest.raises(data.DataError, match="curves, faces, mnist"):
        data.load_dataset("nope")
    with pytest.raises(data.DataError, match="60000"):
        data.load_dataset("mnist", data_dir=tmp_path, num_train=60_001)
    with pytest.raises(data.DataError, match="num_test"):
        data.load_dataset("curves", num_test=0)


# ----------------------------------------------------------------------------------------------
# CURVES


def test_spline_hand_computed_values():
    # Knots (0, 0), (1, 1), (3, 1): h1 = 1, h2 = 2, M = 3 * (0 / 2 - 1 / 1) / 3 = -1, so
    # S(x) = 7x/6 - x^3/6 on [0, 1] and S = 1 + 5u/6 - u^3/12 with u = 3 - x on [1, 3].
    kx, ky = np.array([[0.0, 1.0, 3.0]]), np.array([[0.0, 1.0, 1.0]])
    x = np.array([[0.0, 0.5, 1.0, 2.0, 3.0]])
    expected = [[0.0, 9 / 16, 1.0, 5 / 4, 1.0]]
    np.testing.assert_allclose(data._natural_cubic_spline(kx, ky, x), expected, rtol=1e-14)
    # Symmetric knots (0, 0), (1, 1), (2, 0): M = -3, S(0.5) = S(1.5) = 0.75 - 0.0625.
    sym = data._natural_cubic_spline(
        np.array([[0.0, 1.0, 2.0]]), np.array([[0.0, 1.0, 0.0]]), np.array([[0.5, 1.5]])
    )
    np.testing.assert_allclose(sym, [[0.6875, 0.6875]], rtol=1e-14)


def test_spline_is_natural_and_c2():
    rng = np.random.default_rng(0)
    kx, ky = data._sample_knots(50, rng)
    eps = 1e-4

    def second(x):
        f = [data._natural_cubic_spline(kx, ky, x + d) for d in (-eps, 0.0, eps)]
        return (f[0] - 2 * f[1] + f[2]) / eps**2

    ends = np.stack([kx[:, 0] + 2 * eps, kx[:, 2] - 2 * eps], axis=1)
    np.testing.assert_allclose(second(ends), 0.0, atol=1e-2)
    mid = kx[:, 1:2]
    np.testing.assert_allclose(second(mid - 2 * eps), second(mid + 2 * eps), atol=1e-2)
    np.testing.assert_allclose(data._natural_cubic_spline(kx, ky, kx), ky, atol=1e-12)


def test_knots_satisfy_constraints():
    kx, ky = data._sample_knots(5000, np.random.default_rng(1))
    assert kx.shape == ky.shape == (5000, 3)
    for k in (kx, ky):
        assert k.min() >= 2.0 and k.max() <= 26.0
    assert (np.diff(kx, axis=1) >= 2.0).all()


def test_ink_horizontal_line_profile():
    # y = 14.25 from x = 4 to 20: pixel centres at row + 0.5 lie 0.25 (row 14), 0.75 (row 13),
    # 1.25 (row 15) and >= 1.75 px away, so clip(1.5 - d, 0, 1) gives 1, 0.75, 0.25 and 0.
    image = data._ink(np.array([[4.0, 12.0, 20.0]]), np.full((1, 3), 14.25)).reshape(28, 28)
    interior = image[:, 5:19]
    np.testing.assert_allclose(interior[14], 1.0)
    np.testing.assert_allclose(interior[13], 0.75, atol=0.02)
    np.testing.assert_allclose(interior[15], 0.25, atol=0.02)
    assert not interior[np.r_[0:13, 16:28]].any()
    # Round caps: column 3's centre is 0.5 px before the end, (3.5 - 4)^2 + 0.25^2 = 0.3125;
    # column 2's is 1.5 px before it, just beyond the 1.5 px reach.
    np.testing.assert_allclose(image[14, [3, 20]], 1.5 - np.sqrt(0.3125), atol=1e-6)
    rows, cols = np.nonzero(image)
    assert set(rows.tolist()) == {13, 14, 15} and set(cols.tolist()) == set(range(3, 21))


def test_ink_covers_every_knot():
    kx, ky = data._sample_knots(500, np.random.default_rng(2))
    images = data._ink(kx, ky).reshape(-1, 28, 28)
    at_knots = images[np.arange(500)[:, None], ky.astype(int), kx.astype(int)]
    # The pixel holding a knot has its centre within sqrt(0.5) of the curve: intensity >= 0.79,
    # less a little for the curve's sampling.
    assert at_knots.min() >= 0.75


def test_make_curves_shape_range_and_ink():
    images = data.make_curves(400, seed=0)
    assert images.shape == (400, 784) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert (images.max(axis=1) == 1.0).all()
    inked = (images > 0).sum(axis=1)
    assert inked.min() >= 15 and inked.max() <= 250
    assert 0.03 < images.mean() < 0.12


def test_make_curves_deterministic():
    a = data.make_curves(100, seed=7)
    np.testing.assert_array_equal(a, data.make_curves(100, seed=7))
    np.testing.assert_array_equal(a[:30], data.make_curves(30, seed=7))  # prefix-stable
    assert not np.array_equal(a, data.make_curves(100, seed=8))
    assert data.make_curves(0, seed=7).shape == (0, 784)


def test_load_dataset_curves_splits():
    train, test = data.load_dataset("curves", seed=3, num_train=300, num_test=200)
    assert train.shape == (300, 784) and test.shape == (200, 784)
    np.testing.assert_array_equal(train, data.make_curves(300, 3))
    np.testing.assert_array_equal(test, data.make_curves(200, 3, stream=1))
    shared = set(map(bytes, train)) & set(map(bytes, test))
    assert not shared  # independent streams: no image in both splits
    other = data.load_dataset("curves", seed=4, num_train=300, num_test=1)
    assert not np.array_equal(train, other.train)


def test_load_dataset_curves_default_sizes():
    train, test = data.load_dataset("curves")
    assert train.shape == (20_000, 784) and test.shape == (10_000, 784)
