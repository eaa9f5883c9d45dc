"""benchmarks/data.py, FACES: reading and verifying Olivetti, generator, normalisation, splits."""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import data
import numpy as np
import pytest

scipy_io = pytest.importorskip("scipy.io", reason="reading olivettifaces.mat needs SciPy")

SHARED_OLIVETTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "olivetti"
GENUINE = SHARED_OLIVETTI / data.OLIVETTI_FILE

needs_olivetti = pytest.mark.skipif(
    not GENUINE.is_file(),
    reason=f"genuine {data.OLIVETTI_FILE} not found in {SHARED_OLIVETTI} "
    "(expected ../shared beside the repo)",
)


def _faces_matrix() -> np.ndarray:
    return scipy_io.loadmat(GENUINE)["faces"]


def _corrupt_copy(path: Path) -> np.ndarray:
    """Writes a re-saved olivettifaces.mat with one pixel changed; returns its decoded images."""
    faces = _faces_matrix().copy()
    faces[2000, 7] ^= 1  # one pixel of image 7
    scipy_io.savemat(path, {"faces": faces})
    return np.ascontiguousarray(faces.T.reshape(400, 64, 64).transpose(0, 2, 1))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# ----------------------------------------------------------------------------------------------
# Olivetti


@needs_olivetti
def test_load_olivetti_genuine():
    images = data.load_olivetti(SHARED_OLIVETTI, download=False)
    assert images.shape == (400, 64, 64) and images.dtype == np.uint8
    assert images.flags.c_contiguous
    assert hashlib.sha256(images.tobytes()).hexdigest() == data.OLIVETTI_PIXELS_SHA256
    # The values scikit-learn users print (divided there by the maximum, 242).
    assert images[0, 0, :4].tolist() == [75, 89, 101, 107]
    assert images[1, 0, :3].tolist() == [110, 114, 124]
    assert images[2, 0, :3].tolist() == [77, 97, 119]
    printed = [0.30991736, 0.3677686, 0.41735536, 0.44214877]
    np.testing.assert_allclose(images[0, 0, :4] / 242, printed, rtol=1e-6)
    assert images.min() == 0 and images.max() == 242
    assert images.mean() / 242 == pytest.approx(0.5470425, abs=1e-6)
    faces = _faces_matrix()
    for j in (0, 123, 399):  # the documented layout: one column per image, MATLAB order
        np.testing.assert_array_equal(images[j], faces[:, j].reshape(64, 64).T)


@needs_olivetti
def test_load_olivetti_rejects_corrupt_copy_and_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "OLIVETTI_MIRRORS", (SHARED_OLIVETTI.as_uri() + "/",))
    path = tmp_path / data.OLIVETTI_FILE
    corrupt = _corrupt_copy(path)
    before = path.read_bytes()
    with pytest.raises(data.DataError, match="pixel sha256 mismatch") as info:
        data.load_olivetti(tmp_path, download=True)
    message = str(info.value)
    assert str(path) in message and data.OLIVETTI_PIXELS_SHA256 in message
    assert hashlib.sha256(corrupt.tobytes()).hexdigest() in message
    assert "download it again" in message
    assert path.read_bytes() == before  # never overwritten


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not a mat file" * 20, "not a readable MATLAB file"),
        (None, "variable 'faces'"),  # a valid .mat without 'faces'
        ("float", "dtype float64"),
        ("shape", r"shape \(4096, 400\)"),
    ],
    ids=["garbage", "no-faces", "wrong-dtype", "wrong-shape"],
)
def test_load_olivetti_rejects_undecodable_files(tmp_path, content, match):
    path = tmp_path / data.OLIVETTI_FILE
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:
        scipy_io.savemat(path, {"pixels": np.zeros((4096, 400), np.uint8)})
    elif content == "float":
        scipy_io.savemat(path, {"faces": np.zeros((4096, 400))})
    else:
        scipy_io.savemat(path, {"faces": np.zeros((4096, 399), np.uint8)})
    with pytest.raises(data.DataError, match=match) as info:
        data.load_olivetti(tmp_path, download=False)
    assert str(path) in str(info.value)


@needs_olivetti
def test_read_olivetti_truncated_file(tmp_path):
    path = tmp_path / data.OLIVETTI_FILE
    path.write_bytes(GENUINE.read_bytes()[: GENUINE.stat().st_size // 2])
    with pytest.raises(data.DataError, match="not a readable MATLAB file") as info:
        data.read_olivetti(path)
    assert str(path) in str(info.value)


def test_load_olivetti_missing_file_without_download(tmp_path):
    with pytest.raises(data.DataError, match=data.OLIVETTI_FILE) as info:
        data.load_olivetti(tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / data.OLIVETTI_FILE) in message and "--data-dir" in message
    assert data.OLIVETTI_MIRRORS[0] in message
    assert list(tmp_path.iterdir()) == []


@needs_olivetti
def test_load_olivetti_downloads_from_next_good_mirror(tmp_path, monkeypatch):
    empty, wrong = tmp_path / "empty", tmp_path / "wrong"
    empty.mkdir()
    wrong.mkdir()
    _corrupt_copy(wrong / data.OLIVETTI_FILE)
    mirrors = (empty.as_uri() + "/", wrong.as_uri(), SHARED_OLIVETTI.as_uri() + "/")
    monkeypatch.setattr(data, "OLIVETTI_MIRRORS", mirrors)
    monkeypatch.setenv("NAGMOM_DATA_DIR", str(tmp_path / "cache"))
    target = tmp_path / "cache" / "olivetti"  # the default folder, created on demand

    images = data.load_olivetti()

    assert hashlib.sha256(images.tobytes()).hexdigest() == data.OLIVETTI_PIXELS_SHA256
    assert (target / data.OLIVETTI_FILE).read_bytes() == GENUINE.read_bytes()
    assert _leftovers(target) == []


@needs_olivetti
def test_load_olivetti_all_mirrors_fail(tmp_path, monkeypatch):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    _corrupt_copy(wrong / data.OLIVETTI_FILE)
    nowhere = (tmp_path / "nowhere").as_uri() + "/"
    monkeypatch.setattr(data, "OLIVETTI_MIRRORS", (nowhere, wrong.as_uri() + "/"))
    target = tmp_path / "olivetti"
    target.mkdir()
    with pytest.raises(data.DataError, match="no mirror served it") as info:
        data.load_olivetti(target)
    message = str(info.value)
    assert str(target / data.OLIVETTI_FILE) in message and "pixel sha256" in message
    assert list(target.iterdir()) == []  # nothing half-written left behind
    with pytest.raises(data.DataError, match="no mirror served it"):
        data.load_olivetti(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()  # nor a folder made only for the download


# ----------------------------------------------------------------------------------------------
# The generator


def test_faces_transforms_ranges_and_prefix_stability():
    angles, scales = data.faces_transforms(30, 7, seed=5)
    assert angles.shape == scales.shape == (30, 7)
    assert angles.min() >= -90 and angles.max() < 90 and scales.min() >= 1.4 and scales.max() < 1.8
    assert angles.min() < -60 and angles.max() > 60  # the whole range is used
    prefix = data.faces_transforms(10, 7, seed=5)
    np.testing.assert_array_equal(prefix[0], angles[:10])
    np.testing.assert_array_equal(prefix[1], scales[:10])
    assert not np.array_equal(data.faces_transforms(30, 7, seed=6)[0], angles)


def _block(row_offset: int, col_offset: int) -> np.ndarray:
    """A 64x64 image, 1 on the 2x2 block centred ``(row_offset, col_offset)`` from the centre."""
    image = np.zeros((64, 64), np.float32)
    r, c = 31 + row_offset, 31 + col_offset
    image[r : r + 2, c : c + 2] = 1.0
    return image


@pytest.mark.parametrize(
    "angle, expected, neighbour",
    [
        (0.0, (12, 17), 0.0),  # 8 px right of centre at 1.6 px per output pixel: 5 pixels right
        (90.0, (7, 12), 0.0),  # counterclockwise by 90 degrees: right of centre goes to the top
        (-90.0, (17, 12), 0.0),  # clockwise: to the bottom
        (180.0, (12, 7), 0.0),
        # cos = 0.8, sin = -0.6: (u, v) = (4, 3); the four neighbours sample 1.6 * (0.8, 0.6) =
        # (1.28, 0.96) px from the block's centre along the source axes: (1.5 - 1.28)(1.5 - 0.96).
        (-math.degrees(math.asin(0.6)), (15, 16), 0.22 * 0.54),
    ],
)
def test_rotate_scale_crop_moves_a_block_by_hand(angle, expected, neighbour):
    # At scale 1.6 an output pixel spans (64 / 25) / 1.6 = 1.6 source pixels, so the block's
    # centre, (0, +8) from the image centre, is sampled exactly by one output pixel, at offset
    # (u, v) = 5 * (cos, -sin) of the angle. Bilinear interpolation of the 2x2 block is
    # clip(1.5 - |dx|, 0, 1) * clip(1.5 - |dy|, 0, 1) at offset (dx, dy) from its centre.
    image = _block(0, 8)
    out = data.rotate_scale_crop(image[None], np.array([0]), np.array([angle]), np.array([1.6]))
    assert out.shape == (1, 625) and out.dtype == np.float32
    picture = out[0].reshape(25, 25)
    want = np.zeros((25, 25))
    r, c = expected
    want[r, c] = 1.0
    want[r - 1, c] = want[r + 1, c] = want[r, c - 1] = want[r, c + 1] = neighbour
    np.testing.assert_allclose(picture, want, atol=1e-5)


def test_rotate_scale_crop_matches_the_sampling_formula():
    # Bilinear interpolation reproduces a linear function exactly, so every output pixel must
    # equal the ramp at the point the documented formula samples.
    rows, cols = np.mgrid[0:64, 0:64].astype(np.float64)
    ramps = np.stack([cols, rows, 3.0 * cols - 2.0 * rows + 5.0])
    rng = np.random.default_rng(0)
    n = 12
    index = rng.integers(0, 3, n)
    angles = rng.uniform(-90, 90, n)
    scales = rng.uniform(1.4, 1.8, n)
    out = data.rotate_scale_crop(ramps, index, angles, scales).reshape(n, 25, 25)
    i, j = np.mgrid[0:25, 0:25]
    u, v = j - 12.0, i - 12.0
    for k in range(n):
        h = (64 / 25) / scales[k]
        t = math.radians(angles[k])
        x = 31.5 + h * (u * math.cos(t) - v * math.sin(t))
        y = 31.5 + h * (u * math.sin(t) + v * math.cos(t))
        want = [x, y, 3.0 * x - 2.0 * y + 5.0][index[k]]
        np.testing.assert_allclose(out[k], want, atol=2e-4)


def test_rotate_scale_crop_rejects_bad_arguments():
    images = np.zeros((2, 64, 64), np.uint8)
    with pytest.raises(data.DataError, match="index must lie"):
        data.rotate_scale_crop(images, np.array([2]), np.array([0.0]), np.array([1.5]))
    with pytest.raises(data.DataError, match="one length"):
        data.rotate_scale_crop(images, np.array([0, 1]), np.array([0.0]), np.array([1.5]))
    with pytest.raises(data.DataError, match=r"\(m, s, s\)"):
        data.rotate_scale_crop(np.zeros((2, 64, 32)), [0], [0.0], [1.5])


def test_normalize_faces():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(50, 6)) * [1, 2, 3, 4, 5, 6] + 10).astype(np.float32)
    y = data.normalize_faces(x)
    assert y.dtype == np.float32 and y is not x
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-6)
    assert y.var(axis=0, dtype=np.float64).mean() == pytest.approx(1.0, rel=1e-6)
    # One scale for all pixels: the ratios of the per-pixel standard deviations are kept.
    ratios = y.std(axis=0) / x.std(axis=0)
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-5)
    centred = x - x.mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(y, centred / math.sqrt((centred**2).mean()), atol=1e-5)
    # Hand-computed: columns [0, 2] and [1, 1] have variances 1 and 0, average 1/2.
    z = data.normalize_faces(np.array([[0, 1], [2, 1]], np.float32))
    np.testing.assert_allclose(z, [[-math.sqrt(2), 0], [math.sqrt(2), 0]], rtol=1e-6)
    same = data.normalize_faces(x, copy=False)
    assert same is x
    np.testing.assert_array_equal(x, y)
    with pytest.raises(data.DataError, match="constant"):
        data.normalize_faces(np.ones((3, 4), np.float32))
    with pytest.raises(data.DataError, match="float32"):
        data.normalize_faces(np.ones((3, 4)))


def _synthetic_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 243, (n, 64, 64), dtype=np.uint8)


def test_make_faces_shapes_order_and_determinism():
    images = _synthetic_images(20)  # two people
    faces, person = data.make_faces(images, variants_per_image=5, seed=3)
    assert faces.shape == (100, 625) and faces.dtype == np.float32
    assert person.shape == (100,) and np.issubdtype(person.dtype, np.integer)
    assert person.tolist() == [0] * 50 + [1] * 50  # ordered by person
    again, _ = data.make_faces(images, variants_per_image=5, seed=3)
    np.testing.assert_array_equal(faces, again)
    other, _ = data.make_faces(images, variants_per_image=5, seed=4)
    assert not np.allclose(faces, other)
    # The documented composition: draws -> resampling (row j * 5 + k is variant k of image j)
    # -> normalisation over all rows.
    angles, scales = data.faces_transforms(20, 5, seed=3)
    index = np.repeat(np.arange(20), 5)
    raw = data.rotate_scale_crop(images, index, angles.ravel(), scales.ravel())
    np.testing.assert_array_equal(faces, data.normalize_faces(raw))
    np.testing.assert_allclose(faces.mean(axis=0), 0, atol=1e-5)
    assert faces.var(axis=0, dtype=np.float64).mean() == pytest.approx(1.0, rel=1e-5)


def test_make_faces_applies_the_drawn_rotation_and_scale():
    # A blob 8 px right of the centre must appear, in every variant, where rotating it by the
    # drawn angle and shrinking the frame by the drawn scale puts it: output offset
    # (u, v) = 8 / h * (cos, -sin), h = (64 / 25) / s.
    rows, cols = np.mgrid[0:64, 0:64]
    blob = 200 * np.exp(-((rows - 31.5) ** 2 + (cols - 39.5) ** 2) / (2 * 1.5**2))
    variants = 6
    faces, _ = data.make_faces(blob[None], variants_per_image=variants, seed=11)
    angles, scales = data.faces_transforms(1, variants, seed=11)
    for k in range(variants):
        h = (64 / 25) / scales[0, k]
        t = math.radians(angles[0, k])
        want = np.array([12 - 8 / h * math.sin(t), 12 + 8 / h * math.cos(t)])  # (row, column)
        got = np.unravel_index(np.argmax(faces[k]), (25, 25))
        assert np.abs(np.array(got) - want).max() <= 0.75, (k, angles[0, k], got, want)


def test_make_faces_rejects_no_variants():
    with pytest.raises(data.DataError, match="variants_per_image"):
        data.make_faces(_synthetic_images(10), variants_per_image=0)


# ----------------------------------------------------------------------------------------------
# Splits and load_dataset


def test_faces_split_on_fake_person_ids():
    person = np.repeat(np.arange(40), 3)
    train, valid, test = data.faces_split(person)
    assert (len(train), len(valid), len(test)) == (75, 15, 30)
    assert set(person[train]) == set(range(25))
    assert set(person[valid]) == set(range(25, 30))
    assert set(person[test]) == set(range(30, 40))
    assert not (set(train) & set(valid) or set(train) & set(test) or set(valid) & set(test))
    shuffled = np.random.default_rng(0).permutation(person)
    train, valid, test = data.faces_split(shuffled)
    assert np.all(np.diff(train) > 0) and set(shuffled[train]) == set(range(25))
    assert (len(train), len(valid), len(test)) == (75, 15, 30)
    full = np.repeat(np.arange(40), 10 * data.FACES_VARIANTS_PER_IMAGE)
    sizes = [len(rows) for rows in data.faces_split(full)]
    assert len(full) == 165_600 and sizes == [103_500, 20_700, 41_400]


@needs_olivetti
def test_load_dataset_faces_small(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FACES_VARIANTS_PER_IMAGE", 2)
    folder = tmp_path / "olivetti"
    folder.mkdir()
    shutil.copy(GENUINE, folder)
    train, test = data.load_dataset("faces", data_dir=folder, seed=2, download=False)
    assert train.shape == (500, 625) and test.shape == (200, 625)  # 25 and 10 people x 10 x 2
    faces, person = data.make_faces(data.load_olivetti(folder), variants_per_image=2, seed=2)
    np.testing.assert_array_equal(train, faces[:500])
    np.testing.assert_array_equal(test, faces[-200:])
    assert set(person[:500]) == set(range(25)) and set(person[-200:]) == set(range(30, 40))
    # Truncation keeps evenly spaced rows, so every person stays represented.
    small = data.load_dataset("faces", data_dir=folder, seed=2, num_train=25, num_test=3)
    np.testing.assert_array_equal(small.train, faces[np.arange(25) * 20])
    np.testing.assert_array_equal(small.test, faces[600 + np.array([0, 66, 133])])
    with pytest.raises(data.DataError, match="500 FACES training images"):
        data.load_dataset("faces", data_dir=folder, num_train=501)


def test_load_dataset_knows_faces(tmp_path):
    assert "faces" in data.DATASET_NAMES
    with pytest.raises(data.DataError, match="curves, faces, mnist"):
        data.load_dataset("nope")
    with pytest.raises(data.DataError, match="41400 FACES test images"):
        data.load_dataset("faces", data_dir=tmp_path, num_test=41_401)
    with pytest.raises(data.DataError, match=data.OLIVETTI_FILE):
        data.load_dataset("faces", data_dir=tmp_path, download=False)
