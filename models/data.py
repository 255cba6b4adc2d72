"""Data sets by name, with the train/test splits the data sets define.

Every loader returns a `Dataset` of float32 images in [0, 1], shaped (N, C, H, W), and
int64 labels. Nothing is downloaded: data comes from installed packages (scikit-learn's
digits, Debian's `dataset-fashion-mnist`) or from files the user points at with
`--data-dir`.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import DataError

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# digits has no official split: a fixed, documented one (seeded permutation, 20 % test).
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Dataset:
    """A classification data set split into train and test parts."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    # Mirroring an image keeps its label (clothes, CIFAR objects) but not for digits.
    hflip_invariant: bool = False

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """Return (images, labels) of the "train" or "test" split."""
        if which == "train":
            return self.x_train, self.y_train
        if which == "test":
            return self.x_test, self.y_test
        raise DataError(f"unknown split {which!r}; choose 'train' or 'test'")


def _load_digits(data_dir: Path | None) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
    n_test = int(round(len(y) * DIGITS_TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", x[train], y[train], x[test], y[test], 10)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) as used by MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number); "
                        "give the original MNIST-format files")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header needs {header} bytes, it has {len(raw)}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims)) if dims else 0
    if len(raw) - header != size:
        raise DataError(f"{path} is malformed: header says {dims} ({size} bytes of data), "
                        f"file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(data_dir: Path, stem: str, provider: str) -> Path:
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.exists():
            return candidate
    raise DataError(f"missing {stem}[.gz] in {data_dir}; {provider}")


def _load_idx_dataset(name: str, data_dir: Path, provider: str) -> Dataset:
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist; {provider}")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(data_dir, f"{prefix}-images-idx3-ubyte", provider))
        labels = read_idx(_find(data_dir, f"{prefix}-labels-idx1-ubyte", provider))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{name} {split} files in {data_dir} disagree: images {images.shape}, "
                            f"labels {labels.shape}")
        parts[split] = (images.astype(np.float32)[:, None] / 255.0, labels.astype(np.int64))
    return Dataset(name, *parts["train"], *parts["test"], 10)


def _load_fashion_mnist(data_dir: Path | None) -> Dataset:
    default = data_dir is None
    provider = ("install it with `apt-get install dataset-fashion-mnist` or pass --data-dir "
                "with the IDX files" if default else
                "pass --data-dir pointing at the Fashion-MNIST IDX files")
    ds = _load_idx_dataset("fashion-mnist", data_dir or FASHION_MNIST_DEBIAN_DIR, provider)
    return replace(ds, hflip_invariant=True)


def _load_mnist(data_dir: Path | None) -> Dataset:
    provider = "pass --data-dir pointing at the MNIST IDX files (train-images-idx3-ubyte[.gz], ...)"
    if data_dir is None:
        raise DataError(f"mnist needs its files: {provider}")
    return _load_idx_dataset("mnist", data_dir, provider)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e}); "
                        "give the files of cifar-10-python.tar.gz") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path} is malformed: data {data.shape}, labels {labels.shape}; "
                        "expected (N, 3072) and (N,)")
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


def _load_cifar10(data_dir: Path | None) -> Dataset:
    provider = "pass --data-dir pointing at the extracted cifar-10-batches-py directory"
    if data_dir is None:
        raise DataError(f"cifar10 needs its files: {provider}")
    if (data_dir / "cifar-10-batches-py").is_dir():
        data_dir = data_dir / "cifar-10-batches-py"
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist; {provider}")
    train_files = [data_dir / f"data_batch_{i}" for i in range(1, 6)]
    missing = [p.name for p in train_files + [data_dir / "test_batch"] if not p.exists()]
    if missing:
        raise DataError(f"missing {', '.join(missing)} in {data_dir}; {provider}")
    train = [_read_cifar_batch(p) for p in train_files]
    x_test, y_test = _read_cifar_batch(data_dir / "test_batch")
    return Dataset("cifar10", np.concatenate([x for x, _ in train]),
                   np.concatenate([y for _, y in train]), x_test, y_test, 10,
                   hflip_invariant=True)


_LOADERS = {
    "digits": _load_digits,
    "fashion-mnist": _load_fashion_mnist,
    "mnist": _load_mnist,
    "cifar10": _load_cifar10,
}


def names() -> list[str]:
    """Names of the data sets `load` knows."""
    return list(_LOADERS)


def load(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load data set `name`; `data_dir` overrides where its files are read from."""
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(_LOADERS)}") from None
    return loader(Path(data_dir) if data_dir is not None else None)
