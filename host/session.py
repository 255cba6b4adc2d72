"""`host.Session`: run a compiled network on a backend and get integers, values, labels."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from . import backends
from .errors import BackendError

log = logging.getLogger(__name__)


@dataclass
class Result:
    """Outputs of a batch: the integers every backend agrees on, their real values and
    the argmax labels."""

    ints: np.ndarray
    values: np.ndarray
    labels: np.ndarray


class Session:
    """A compiled network bound to a backend.

        sess = host.Session(cm, backend="sim")
        out = sess.run(images)        # float (N, C, H, W) or already-quantized ints
    """

    def __init__(self, cm, backend: str = "auto"):
        self.cm = cm
        self.backend = backends.create(cm, backend)

    def quantize(self, images) -> np.ndarray:
        """Quantized input of a batch: float images go through the input quantizer, integer
        arrays are checked against its range."""
        x = np.asarray(images)
        shape = tuple(self.cm.input_shape)
        if x.shape[1:] != shape:
            if x.shape == shape:
                raise BackendError(f"input has shape {x.shape}: add the batch axis, "
                                   f"e.g. images[None] for one image of {shape}")
            raise BackendError(f"input has shape {x.shape}; {self.cm.name} expects "
                               f"(N, {', '.join(map(str, shape))})")
        if np.issubdtype(x.dtype, np.integer):
            lo, hi = self.cm.input_node.out.lo, self.cm.input_node.out.hi
            if x.size and (x.min() < lo or x.max() > hi):
                raise BackendError(f"integer input holds {x.min()}..{x.max()}, outside the "
                                   f"input quantizer's range {lo}..{hi}")
            return x.astype(np.int64)
        if not np.issubdtype(x.dtype, np.floating):
            raise BackendError(f"input dtype {x.dtype} is neither float images nor ints")
        return self.cm.quantize_input(x)

    def run(self, images, progress: bool = False) -> Result:
        """Outputs of a batch. `progress` shows a bar (on stderr) as frames complete: in
        the backend's batches (torch), or frame by frame (board, rtl, sim)."""
        x = self.quantize(images)
        if progress and len(x) > 1:
            from tqdm import tqdm
            step = max(1, getattr(self.backend, "batch_size", 1)
                       * getattr(self.backend, "parallel_chunks", 1))
            parts = []
            with tqdm(total=len(x), desc=self.backend.name, unit="img", leave=False,
                      dynamic_ncols=True) as bar:
                for i in range(0, len(x), step):
                    parts.append(self.backend.run_ints(x[i:i + step]))
                    bar.update(len(parts[-1]))
            ints = np.concatenate(parts)
        else:
            ints = self.backend.run_ints(x)
        values = self.cm.dequantize(ints)
        labels = values.reshape(len(values), -1).argmax(axis=1)
        return Result(ints, values, labels)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
