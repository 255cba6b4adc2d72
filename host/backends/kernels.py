"""Compiled CPU kernels of the torch backend (numba), for the passes PyTorch cannot fuse.

`pool_requant` is a convolution's tail in one pass: the k×k max pool (stride s, floor
mode), the bias, the float64 requantization multiply-add, round half to even and the
clamp, from the accumulators in NHWC straight to the next layer's integers. In PyTorch
these are five to seven passes over the accumulators (fmnist-cnn's first layer: 6.4 MB a
chunk of 64 images, read by the pool and again by every elementwise op of the
requantization); here the accumulators are read once. The arithmetic is the backend's
float64 path exactly: it runs only where `_Requant` proved that path exact (every
`(acc + bias) · M + B` below 2**53), and no fast-math flag lets LLVM reassociate it.

numba compiles a kernel the first time it meets a dtype combination (about a second;
cached on disk after that) and releases the GIL while it runs, so the backend's chunks
run on their threads at once. Without numba the backend uses PyTorch's ops instead.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

try:
    import numba
except ImportError as error:            # the backend falls back to PyTorch's passes
    numba = None
    log.info("numba is not importable (%s): the torch backend pools and requantizes in "
             "PyTorch's separate passes", error)


def available() -> bool:
    return numba is not None


def _pool_requant(acc, k, s, bias, mult, offset, lo, hi, out):
    """out[n, i, j, c] = clamp(rint((max over the window of acc + bias[c]) · mult[c] +
    offset[c]), lo, hi); `acc` (N, H, W, C) and `out` (N, PH, PW, C) are C-contiguous."""
    n_img = acc.shape[0]
    channels = acc.shape[3]
    ph, pw = out.shape[1], out.shape[2]
    peak = np.empty_like(acc[0, 0, 0])            # one pixel's channels, acc's dtype
    for n in range(n_img):
        for i in range(ph):
            for j in range(pw):
                first = acc[n, i * s, j * s]
                for c in range(channels):
                    peak[c] = first[c]
                for di in range(k):
                    for dj in range(k):
                        row = acc[n, i * s + di, j * s + dj]
                        for c in range(channels):
                            v = row[c]
                            peak[c] = v if v > peak[c] else peak[c]
                dst = out[n, i, j]
                for c in range(channels):
                    y = np.rint((np.float64(peak[c]) + bias[c]) * mult[c] + offset[c])
                    y = lo if y < lo else y
                    dst[c] = hi if y > hi else y


def _compile(function):
    """`function` compiled without the GIL; cached on disk where numba finds a writable
    place (next to this file or the user's cache), else compiled in each process."""
    try:
        return numba.njit(nogil=True, cache=True, boundscheck=False)(function)
    except RuntimeError as error:       # "cannot cache function ...: no locator available"
        log.info("numba cannot cache %s (%s); compiling it in this process",
                 function.__name__, error)
        return numba.njit(nogil=True, boundscheck=False)(function)


pool_requant = _compile(_pool_requant) if numba is not None else None


def pool_requant_nhwc(acc: np.ndarray, k: int, s: int, bias: np.ndarray, mult: np.ndarray,
                      offset: np.ndarray, lo: float, hi: float, out_dtype) -> np.ndarray:
    """`pool_requant` into a new (N, PH, PW, C) array of `out_dtype`."""
    n_img, height, width, channels = acc.shape
    out = np.empty((n_img, (height - k) // s + 1, (width - k) // s + 1, channels), out_dtype)
    pool_requant(acc, k, s, bias, mult, offset, lo, hi, out)
    return out
