"""Data set loaders, exercised on small files the tests write."""

import gzip
import pickle

import numpy as np
import pytest

from models import data
from models.errors import DataError


def write_idx(path, array, compress=False):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


def write_idx_dataset(root, n_train=5, n_test=3, compress=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, compress)
        arrays[prefix] = images, labels
    return arrays


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_loader_reads_what_was_written(tmp_path, name, compress):
    arrays = write_idx_dataset(tmp_path, compress=compress)
    ds = data.load(name, tmp_path)
    assert ds.name == name and ds.num_classes == 10
    assert ds.x_train.shape == (5, 1, 28, 28) and ds.x_test.shape == (3, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.rint(ds.x_train[:, 0] * 255).astype(np.uint8),
                                  arrays["train"][0])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k"][1])
    assert ds.input_shape == (1, 28, 28)


def test_idx_bad_magic(tmp_path):
    write_idx_dataset(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + bytes(20))
    with pytest.raises(DataError, match="bad magic number"):
        data.load("mnist", tmp_path)


def test_idx_truncated(tmp_path):
    write_idx_dataset(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is malformed: header says \(3,\)"):
        data.load("mnist", tmp_path)


def test_idx_image_label_count_mismatch(tmp_path):
    write_idx_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4))
    with pytest.raises(DataError, match="train files .* disagree"):
        data.load("mnist", tmp_path)


def test_missing_files_name_the_flag(tmp_path):
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte\[.gz\] .*--data-dir"):
        data.load("mnist", tmp_path)
    with pytest.raises(DataError, match="mnist needs its files: pass --data-dir"):
        data.load("mnist")
    with pytest.raises(DataError, match="does not exist"):
        data.load("fashion-mnist", tmp_path / "nowhere")


def test_fashion_mnist_default_names_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion-mnist")


def write_cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": list(rng.integers(0, 10, n))}
    with open(path, "wb") as f:
        pickle.dump(batch, f)
    return batch


def test_cifar10_loader(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = [write_cifar_batch(root / f"data_batch_{i}", 2, i) for i in range(1, 6)]
    test = write_cifar_batch(root / "test_batch", 3, 99)
    ds = data.load("cifar10", tmp_path)  # the parent directory works too
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(
        np.rint(ds.x_train[2] * 255).astype(np.uint8).reshape(-1), batches[1][b"data"][0])
    np.testing.assert_array_equal(ds.y_test, test[b"labels"])


def test_cifar10_corrupt_and_missing(tmp_path):
    for i in range(1, 5):
        write_cifar_batch(tmp_path / f"data_batch_{i}", 2, i)
    with pytest.raises(DataError, match="missing data_batch_5, test_batch"):
        data.load("cifar10", tmp_path)
    write_cifar_batch(tmp_path / "data_batch_5", 2, 5)
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch is not a CIFAR-10 python batch"):
        data.load("cifar10", tmp_path)


def test_digits_split_is_fixed_and_disjoint():
    a, b = data.load("digits"), data.load("digits")
    assert a.x_train.shape == (1438, 1, 8, 8) and a.x_test.shape == (359, 1, 8, 8)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    train_rows = {r.tobytes() for r in a.x_train}
    assert sum(r.tobytes() in train_rows for r in a.x_test) < 5  # duplicates exist in digits


def test_unknown_dataset_lists_choices():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; choose one of: digits, "
                                        "fashion-mnist, mnist, cifar10"):
        data.load("imagenet")
