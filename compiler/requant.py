"""Requantization parameters: exact shifts for power-of-two ratios, fitted multipliers else.

The function a quantizer computes from an accumulator, `f_c(acc)`, is a monotonic step
function per channel (non-decreasing once `normalize_signs` has made every real scale
non-negative). We find its steps (thresholds) over the reachable accumulator range
`[amin_c, amax_c]` by bisection, using the source framework's own float function when the
frontend gives one (an "oracle") and the exact float64 affine map otherwise. Then we look
for integers M (0 < M < 2**31), B and a shift S such that

    clamp(round_half_even((acc*M + B) / 2**S), lo, hi) == f_c(acc)  for every acc in range.

With E_k the least v for which round_half_even(v / 2**S) >= k, the output reaches level k
exactly when acc*M + B >= E_k. Each threshold t_k gives B >= E_k - M*t_k (at t_k) and
B < E_k - M*(t_k - 1) (one below), the ends of the range give one more bound each. So
M is feasible iff  max_i(E_i - M*a_i) < min_j(E_j - M*b_j) + 1, i.e. h(M) <= 0 for the
convex piecewise-linear h(M) = max_i(...) - min_j(...) + 1; we minimize h by ternary search.
If the thresholds are consistent with some line (always, for an exact affine map and a
large enough S), the fit is exact on the whole range; otherwise (float noise in the
oracle) the best M is kept and the layer is marked inexact.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from . import ir

TARGET_MULT_BITS = 30   # nominal M in [2**29, 2**30): headroom up to 2**31 for the search


def pow2_exponent(x: float) -> int | None:
    """k if x == 2**k exactly, else None."""
    if x <= 0 or not math.isfinite(x):
        return None
    m, e = math.frexp(x)
    return e - 1 if m == 0.5 else None


def shift_requant(ratio_exp: int, lo: int, hi: int, channels: int) -> ir.Requant:
    """acc * 2**ratio_exp rounded half to even: M = 2**k, S = 0 or M = 1, S = -k."""
    if ratio_exp >= 0:
        if ratio_exp > 30:
            raise AssertionError("power-of-two ratio too large for a 31-bit multiplier")
        mult, shift = 1 << ratio_exp, 0
    else:
        mult, shift = 1, -ratio_exp
    return ir.Requant(np.full(channels, mult, np.int64), np.zeros(channels, np.int64),
                      np.full(channels, shift, np.int64), lo, hi, False, True, "shift")


def affine_oracle(scale: np.ndarray, offset: np.ndarray, out_scale: float, lo: int, hi: int,
                  bipolar: bool) -> Callable:
    """f(acc) = clamp(round_half_even((acc*scale + offset) / out_scale)) in float64."""
    def f(acc: np.ndarray) -> np.ndarray:
        real = acc * scale[None, :] + offset[None, :]
        if bipolar:
            return np.where(real >= 0, 1, -1)
        return np.clip(np.rint(real / out_scale), lo, hi).astype(np.int64)
    return f


def thresholds(oracle: Callable, amin: np.ndarray, amax: np.ndarray, lo: int, hi: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f(amin), f(amax), t) with t[c, k - lo - 1] the least acc in range where f >= k.

    t is amax + 1 for levels never reached. Bisection over all (channel, level) pairs at
    once: ~33 oracle calls on an (L, C) array.
    """
    c = len(amin)
    levels = np.arange(lo + 1, hi + 1, dtype=np.int64)           # (L,)
    vmin = np.asarray(oracle(amin[None, :]), dtype=np.int64)[0]
    vmax = np.asarray(oracle(amax[None, :]), dtype=np.int64)[0]
    left = np.broadcast_to(amin, (len(levels), c)).copy()         # f(left-1) < k or left=amin
    right = np.broadcast_to(amax + 1, (len(levels), c)).copy()    # f(right) >= k or sentinel
    while True:
        open_ = left < right
        if not open_.any():
            break
        mid = left + (right - left) // 2
        fm = np.asarray(oracle(np.where(open_, mid, amin[None, :])), dtype=np.int64)
        ge = fm >= levels[:, None]
        right = np.where(open_ & ge, mid, right)
        left = np.where(open_ & ~ge, mid + 1, left)
    return vmin, vmax, left.T                                       # (C, L)


def _level_bound(k: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """E_k: the least v with round_half_even(v / 2**shift) >= k (elementwise)."""
    k = np.asarray(k, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    half = np.left_shift(np.int64(1), np.maximum(shift - 1, 0))
    return np.where(shift == 0, k, (2 * k - 1) * half + (k & 1))


def choose_shift(ratio: np.ndarray, reach: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Per-channel S: nominal M = ratio * 2**S in [2**29, 2**30), and |B| ~ M*reach well
    inside the 56-bit offset field."""
    ratio = np.asarray(ratio, dtype=np.float64)
    safe = np.where(ratio > 0, ratio, 1.0)
    s = TARGET_MULT_BITS - 1 - np.floor(np.log2(safe))
    s = np.minimum(s, 52 - np.ceil(np.log2(safe * np.maximum(reach, 1) + 1)))
    s = np.minimum(s, 53 - max(abs(lo), abs(hi) + 1).bit_length())
    return np.clip(s, 0, ir.MAX_SHIFT).astype(np.int64)


def fit_requant(oracle: Callable, amin: np.ndarray, amax: np.ndarray, ratio: np.ndarray,
                lo: int, hi: int, bipolar: bool) -> ir.Requant:
    """Per-channel (M, B, S) reproducing `oracle` on [amin, amax]; see the module doc.

    `ratio` is the nominal output LSBs per accumulator LSB (>= 0), which picks S.
    Bipolar outputs are fitted as the {0, 1} step of the sign. Vectorized over channels;
    accumulators are centred on each channel's range so every product fits int64.
    """
    if bipolar:
        base = oracle
        oracle = lambda acc: (np.asarray(base(acc)) > 0).astype(np.int64)  # noqa: E731
        lo, hi = 0, 1
    amin, amax = np.asarray(amin, np.int64), np.asarray(amax, np.int64)
    vmin, vmax, t = thresholds(oracle, amin, amax, lo, hi)
    c = len(amin)
    centre = (amin + amax) // 2
    shift = choose_shift(ratio, np.maximum(np.abs(amin), np.abs(amax)), lo, hi)
    levels = np.arange(lo + 1, hi + 1, dtype=np.int64)[None, :]        # (1, L)
    inside = (levels > vmin[:, None]) & (levels <= vmax[:, None])       # (C, L)
    e_k = _level_bound(np.broadcast_to(levels, (c, levels.shape[1])), shift[:, None])
    # Lower bounds B' >= E - M*a and upper bounds B' < E - M*b, in centred accumulators.
    low_e = np.concatenate([e_k, _level_bound(vmin, shift)[:, None]], axis=1)
    low_a = np.concatenate([t - centre[:, None], (amin - centre)[:, None]], axis=1)
    low_ok = np.concatenate([inside, (vmin > lo)[:, None]], axis=1)
    up_e = np.concatenate([e_k, _level_bound(vmax + 1, shift)[:, None]], axis=1)
    up_b = np.concatenate([t - 1 - centre[:, None], (amax - centre)[:, None]], axis=1)
    up_ok = np.concatenate([inside, (vmax < hi)[:, None]], axis=1)
    big = np.int64(1) << 62

    def bounds(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low = np.where(low_ok, low_e - m[:, None] * low_a, -big).max(axis=1)
        high = np.where(up_ok, up_e - m[:, None] * up_b, big).min(axis=1) - 1
        return low, high

    def h(m: np.ndarray) -> np.ndarray:
        low, high = bounds(m)
        return low // 2 - high // 2   # halves: no int64 overflow at the sentinels

    a = np.ones(c, np.int64)
    b = np.full(c, ir.MAX_MULT, np.int64)
    while np.any(b - a > 2):
        m1, m2 = a + (b - a) // 3, b - (b - a) // 3
        left = h(m1) <= h(m2)
        b = np.where(left, m2, b)
        a = np.where(left, a, m1)
    candidates = np.stack([np.minimum(a + i, b) for i in range(3)])     # (3, C)
    scores = np.stack([h(m) for m in candidates])
    mult = candidates[scores.argmin(axis=0), np.arange(c)]
    low, high = bounds(mult)
    exact = low <= high
    # Any B' in [low, high] is exact; the middle keeps the most margin. No bound at all
    # (a constant channel) leaves B' = 0... clipped into the window when there is one.
    low = np.where(low == -big, np.minimum(high, 0), low)
    high = np.where(high == big - 1, np.maximum(low, 0), high)
    offset_c = low + (high - low) // 2
    offset = offset_c - mult * centre
    fits = np.abs(offset) <= ir.MAX_OFFSET
    offset = np.clip(offset, -ir.MAX_OFFSET, ir.MAX_OFFSET)
    return ir.Requant(mult, offset, shift, lo, hi, bipolar, bool(np.all(exact & fits)), "fit")
