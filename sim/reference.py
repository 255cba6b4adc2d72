"""The executable definition of samoyed's integer semantics (DESIGN.md, "Integer semantics").

One function per operation, on NumPy integer arrays in NCHW with a batch axis. The
compiler's IR is run by `run`; the program simulator, RTL and torch backend must give the
same integers. Everything is int64 and exact: convolutions are computed as float64 matrix
products, which are exact because the compiler proves every accumulator (and so every
partial sum) stays below 2**31 in magnitude, far inside float64's 2**53 integer range.
"""

from __future__ import annotations

import numpy as np

from compiler import ir


class ReferenceError(ValueError):
    """An input the reference refuses: wrong shape, not integers, or out of range."""


# --- arithmetic -------------------------------------------------------------------

def round_half_even_shift(v: np.ndarray, shift) -> np.ndarray:
    """`v / 2**shift` rounded to nearest, ties to even, for int64 `v` and shift >= 0."""
    v = np.asarray(v, dtype=np.int64)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), v.shape)
    q = v >> shift
    r = v - (q << shift)
    half = np.int64(1) << np.maximum(shift - 1, 0)
    up = (shift > 0) & ((r > half) | ((r == half) & ((q & 1) == 1)))
    return q + up


def _channel_view(arr: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast over (N, C, ...) of `ndim` dims."""
    return np.asarray(arr).reshape((1, -1) + (1,) * (ndim - 2))


def requantize(acc: np.ndarray, rq: ir.Requant) -> np.ndarray:
    """`clamp(round_half_even_shift(acc*M + B, S), lo, hi)` per channel (axis 1).

    Bipolar outputs map the clamped {0, 1} to {-1, +1}. acc*M + B stays within int64:
    |acc| < 2**31, M < 2**31 and |B| < 2**55.
    """
    acc = np.asarray(acc, dtype=np.int64)
    m = _channel_view(rq.mult, acc.ndim)
    b = _channel_view(rq.offset, acc.ndim)
    s = _channel_view(rq.shift, acc.ndim)
    y = np.clip(round_half_even_shift(acc * m + b, s), rq.lo, rq.hi)
    return 2 * y - 1 if rq.bipolar else y


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride, padding
           ) -> np.ndarray:
    """int32 accumulators of a 2-D convolution (zero padding (top, left, bottom, right))."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    t, l, b, r = padding
    xp = np.zeros((n, c, h + t + b, w + l + r), dtype=np.float64)
    xp[:, :, t:t + h, l:l + w] = x
    oh, ow = ir.conv_out_hw(h, w, (kh, kw), stride, padding)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, :stride[0] * (oh - 1) + 1:stride[0], :stride[1] * (ow - 1) + 1:stride[1]]
    # (n, c, oh, ow, kh, kw) x (o, c, kh, kw) -> (n, o, oh, ow)
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
    acc = cols @ weight.reshape(o, -1).astype(np.float64).T
    acc = np.rint(acc).astype(np.int64).reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
    if bias is not None:
        acc = acc + _channel_view(bias, 4)
    return np.ascontiguousarray(acc)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """int32 accumulators of a fully connected layer on the flattened input."""
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    acc = np.rint(x @ weight.astype(np.float64).T).astype(np.int64)
    return acc if bias is None else acc + bias[None, :]


def max_pool2d(x: np.ndarray, kernel, stride, padding) -> np.ndarray:
    """Max pool in floor mode; padded cells never win (they hold the int64 minimum)."""
    n, c, h, w = x.shape
    t, l, b, r = padding
    xp = np.full((n, c, h + t + b, w + l + r), np.iinfo(np.int64).min, dtype=np.int64)
    xp[:, :, t:t + h, l:l + w] = x
    oh, ow = ir.conv_out_hw(h, w, kernel, stride, padding)
    win = np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=(2, 3))
    win = win[:, :, :stride[0] * (oh - 1) + 1:stride[0], :stride[1] * (ow - 1) + 1:stride[1]]
    return win.max(axis=(4, 5))


def global_sum_pool(x: np.ndarray) -> np.ndarray:
    """The sum over H×W of each channel, kept as (N, C, 1, 1): average pool's accumulator."""
    return x.sum(axis=(2, 3), keepdims=True, dtype=np.int64)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise int sum (the accumulator of a residual add)."""
    return a.astype(np.int64) + b.astype(np.int64)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def flatten(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1)


def quantize_input(x: np.ndarray, node: ir.Input) -> np.ndarray:
    """Brevitas's input quantizer in float32: pre-ops, `x / scale`, round half even, clamp.

    Bipolar: +1 where the pre-processed input is >= 0, else -1 (Brevitas's binary sign).
    """
    v = np.asarray(x, dtype=np.float32)
    for op, const in node.pre_ops:
        c = np.float32(const)
        v = v * c if op == "mul" else v / c if op == "div" else v + c
    if node.out.bipolar:
        return np.where(v >= 0, 1, -1).astype(np.int64)
    q = np.rint(v / np.float32(node.quant_scale))
    return np.clip(q, node.out.lo, node.out.hi).astype(np.int64)


# --- raw-IR ops (float semantics, for testing passes before lowering) -------------

def _real(x: np.ndarray, t: ir.TensorType) -> np.ndarray:
    if t.kind is ir.Kind.REAL:
        return x
    return x * _channel_view(t.scale, x.ndim) + _channel_view(t.offset, x.ndim)


def quant_real(real: np.ndarray, out: ir.TensorType) -> np.ndarray:
    """An activation quantizer in float64: round_half_even(real / scale), clamped."""
    if out.bipolar:
        return np.where(real >= 0, 1, -1).astype(np.int64)
    q = np.rint(real / _channel_view(out.scale, real.ndim))
    return np.clip(q, out.lo, out.hi).astype(np.int64)


# --- graph execution --------------------------------------------------------------

def check_input(graph: ir.Graph, x_int) -> np.ndarray:
    """`x_int` as int64 (N, *input shape); ReferenceError naming what is wrong."""
    node = graph.input
    x = np.asarray(x_int)
    if x.dtype.kind not in "iu":
        raise ReferenceError(f"reference input must be integers (use quantize_input first), "
                             f"not {x.dtype}")
    if x.shape[1:] != node.out.shape:
        raise ReferenceError(f"reference input has shape {x.shape}; expected "
                             f"(N, {', '.join(map(str, node.out.shape))})")
    if x.size and (x.min() < node.out.lo or x.max() > node.out.hi):
        raise ReferenceError(f"reference input values {x.min()}..{x.max()} lie outside the "
                             f"input quantizer's range {node.out.lo}..{node.out.hi}")
    if node.out.bipolar and np.any(x == 0):
        raise ReferenceError("a bipolar input holds only -1 and +1, not 0")
    return x.astype(np.int64)


def run_node(node: ir.Node, args: list[np.ndarray], in_types: list[ir.TensorType]):
    """The output of one IR node given its input arrays."""
    if isinstance(node, ir.Conv):
        y = conv2d(args[0], node.weight, node.bias, node.stride, node.padding)
        if node.requant is not None:
            y = requantize(y, node.requant)
        if node.pool is not None:
            k, s = node.pool
            y = max_pool2d(y, (k, k), (s, s), (0, 0, 0, 0))
        return y
    if isinstance(node, ir.Linear):
        y = linear(args[0], node.weight, node.bias)
        return y if node.requant is None else requantize(y, node.requant)
    if isinstance(node, ir.MaxPool):
        return max_pool2d(args[0], node.kernel, node.stride, node.padding)
    if isinstance(node, ir.AvgPool):
        y = global_sum_pool(args[0])
        return y if node.requant is None else requantize(y, node.requant)
    if isinstance(node, ir.Add):
        y = add(args[0], args[1])
        return y if node.requant is None else requantize(y, node.requant)
    if isinstance(node, ir.Requantize):
        return requantize(args[0], node.requant)
    if isinstance(node, ir.Flatten):
        return flatten(args[0])
    if isinstance(node, ir.Relu):
        if in_types[0].kind is ir.Kind.INT:
            return relu(args[0])
        return np.maximum(_real(args[0], in_types[0]), 0.0)
    if isinstance(node, ir.Affine):
        real = _real(args[0], in_types[0])
        return real * _channel_view(node.scale, real.ndim) + _channel_view(node.offset, real.ndim)
    if isinstance(node, ir.Quant):
        return quant_real(_real(args[0], in_types[0]), node.out)
    raise AssertionError(f"no reference for {node.OP}")


def run(graph: ir.Graph, x_int, trace: bool = False):
    """Run `graph` on int input (N, *shape). With `trace`, also return every node's output.

    Lowered graphs are pure integer arithmetic; raw graphs (before the passes) evaluate
    their `Affine`/`Quant` ops in float64, which is how the passes are tested alone.
    """
    values = {graph.input.name: check_input(graph, x_int)}
    types = {graph.input.name: graph.input.out}
    for node in graph.nodes[1:]:
        values[node.name] = run_node(node, [values[i] for i in node.inputs],
                                     [types[i] for i in node.inputs])
        types[node.name] = node.out
    out = values[graph.output]
    return (out, values) if trace else out
