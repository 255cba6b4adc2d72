"""`samoyed run`: labels for images from a data set split or from files, with throughput."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import UsageError


def load_images(paths: list[str], shape: tuple[int, ...]) -> tuple[np.ndarray, list[str]]:
    """Images from .npy files (arrays of images) or PNG/JPEG files, as float32 in [0, 1]
    shaped (N, *shape), and a name for each. Sizes must match the model: nothing is
    resized silently."""
    out, names = [], []
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise UsageError(f"image file {path} does not exist")
        if path.suffix == ".npy":
            arr = np.load(path).astype(np.float32)
            if arr.shape == shape:
                arr = arr[None]
        else:
            from PIL import Image, UnidentifiedImageError
            try:
                img = Image.open(path)
            except (UnidentifiedImageError, OSError) as error:
                raise UsageError(f"cannot read image {path}: {error}") from None
            img = img.convert("L" if shape[0] == 1 else "RGB")
            arr = np.asarray(img, dtype=np.float32) / 255.0
            arr = arr[None, None] if arr.ndim == 2 else arr.transpose(2, 0, 1)[None]
        if arr.shape[1:] != shape:
            raise UsageError(f"{path} holds images of shape {arr.shape[1:]}, the model takes "
                             f"{shape}; resize them to {shape[-2]}x{shape[-1]} first")
        out.append(arr)
        names += [name] if len(arr) == 1 else [f"{name}[{i}]" for i in range(len(arr))]
    return np.concatenate(out), names


def run(args) -> int:
    import compiler
    import host
    from models import data as datasets

    cm = compiler.load(args.artifact)
    shape = tuple(cm.input_node.in_shape)
    if args.images:
        (x, names), y = load_images(args.images, shape), None
    else:
        if not args.dataset:
            raise UsageError("give image files or --dataset NAME (with --split)")
        x, y = datasets.load(args.dataset, args.data_dir).split(args.split)
        x, y = x[:args.limit], y[:args.limit]
    with host.Session(cm, backend=args.backend) as sess:
        sess.run(x[:1])  # warm up: build, connect, load weights
        start = time.perf_counter()
        out = sess.run(x, progress=True)
        seconds = time.perf_counter() - start
        latency_start = time.perf_counter()
        sess.run(x[:1])
        latency = time.perf_counter() - latency_start
        backend = sess.backend.name
    if args.images:
        for name, label in zip(names, out.labels):
            print(f"{name}: {label}")
    else:
        print(f"accuracy on {len(y)} {args.dataset} {args.split} images: "
              f"{100 * float((out.labels == y).mean()):.2f}%")
    print(f"{backend}: {len(x) / seconds:,.1f} images/s, latency {1000 * latency:.2f} ms/frame")
    return 0


def register(sub, formatter) -> None:
    p = sub.add_parser("run", formatter_class=formatter,
                       help="classify images on a backend, with throughput and latency",
                       description="Run a compiled network on images from a data set split "
                                   "or from files (.npy, PNG, JPEG) and print the labels.")
    p.add_argument("artifact", metavar="FILE.samoyed")
    p.add_argument("images", nargs="*", help="image files (.npy arrays, PNG or JPEG)")
    p.add_argument("--backend", default="auto", help="sim, torch[:cpu|:cuda], board:URL or auto")
    p.add_argument("--dataset", default=None, help="classify a data set split instead of files")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--limit", type=int, default=1000, help="at most this many data set images")
    p.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    p.set_defaults(func=run)
