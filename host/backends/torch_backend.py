"""`torch`, `torch:cpu`, `torch:cuda`: the lowered IR run with PyTorch, bit-exact.

Integer values are carried in floating point only where that is provably exact: a
convolution or linear layer runs in float32 when the sum of the absolute values of any
of its products (K · max|x| · max|w| + |bias|) stays below 2**24, so every partial sum is
an exactly representable integer whatever order the kernel adds them in; otherwise it
runs in float64 (exact below 2**53; the compiler proves |acc| < 2**31). Requantization is
done on int64 tensors with the reference's round-half-to-even shift. TF32 and other
reduced-precision paths are switched off for the backend's lifetime, never traded for
speed.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from compiler import ir

from ..errors import BackendError
from .base import Backend

log = logging.getLogger(__name__)

FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53


def _acc_bound(node, in_type: ir.TensorType) -> np.ndarray:
    """Per output channel, the largest |partial sum| any input in range can produce:
    max|x| · Σ|w| + |bias| (a bound on every partial sum, whatever the summation order)."""
    weight = np.abs(np.asarray(node.weight, dtype=np.int64)).reshape(len(node.weight), -1)
    bound = max(abs(in_type.lo), abs(in_type.hi)) * weight.sum(axis=1)
    if node.bias is not None:
        bound = bound + np.abs(np.asarray(node.bias, dtype=np.int64))
    return bound


def round_half_even_shift(v: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """`v / 2**shift` rounded half to even, int64 tensors (sim.reference's rule).

    For shift >= 1: adding half - 1 plus the quotient's low bit makes an arithmetic shift
    round ties to even; shift 0 leaves v as it is.
    """
    s = shift.clamp(min=1)
    half = torch.bitwise_left_shift(torch.ones_like(s), s - 1)
    odd = torch.bitwise_right_shift(v, s) & 1
    q = torch.bitwise_right_shift(v + half - 1 + odd, s)
    return torch.where(shift > 0, q, v)


class _Requant:
    """Requantization of accumulators held as exact integers in a float tensor.

    When `acc * M + B` provably stays below 2**53 for every reachable accumulator (`bound`
    per channel), it is computed in float64, where it is exact, scaled by 2**-S (exact)
    and rounded by `torch.round` (half to even). Otherwise it goes through int64 with the
    reference's rule.
    """

    def __init__(self, rq: ir.Requant, bound: np.ndarray, ndim: int, device):
        shape = (1, -1) + (1,) * (ndim - 2)
        mult = np.asarray(rq.mult, np.int64)
        offset = np.asarray(rq.offset, np.int64)
        shift = np.asarray(rq.shift, np.int64)
        reach = [int(a) * int(m) + abs(int(b)) for a, m, b in zip(bound, mult, offset)]
        self.in_float = max(reach, default=0) < FLOAT64_EXACT

        def tensor(values, dtype):
            return torch.as_tensor(values, dtype=dtype, device=device).view(shape)

        if self.in_float:
            self.mult = tensor(mult.astype(np.float64), torch.float64)
            self.offset = tensor(offset.astype(np.float64), torch.float64)
            self.scale = tensor(np.ldexp(1.0, -shift), torch.float64)
        else:
            self.mult, self.offset = tensor(mult, torch.int64), tensor(offset, torch.int64)
            self.shift = tensor(shift, torch.int64)
        self.lo, self.hi, self.bipolar = rq.lo, rq.hi, rq.bipolar

    def __call__(self, acc: torch.Tensor) -> torch.Tensor:
        if self.in_float:
            v = acc.to(torch.float64) * self.mult + self.offset
            y = (v * self.scale).round_().clamp_(self.lo, self.hi).to(acc.dtype)
        else:
            v = acc.to(torch.int64) * self.mult + self.offset
            y = round_half_even_shift(v, self.shift).clamp(self.lo, self.hi).to(acc.dtype)
        return 2 * y - 1 if self.bipolar else y


class _Layer:
    """One compute node: float conv/linear in its exact dtype, then int64 requant."""

    def __init__(self, node, in_type: ir.TensorType, device):
        self.node = node
        bound = _acc_bound(node, in_type)
        self.dtype = torch.float32 if bound.max(initial=0) < FLOAT32_EXACT else torch.float64
        self.weight = torch.as_tensor(np.asarray(node.weight, np.int64), device=device
                                      ).to(self.dtype)
        self.bias = None if node.bias is None else torch.as_tensor(
            np.asarray(node.bias, np.int64), device=device)
        ndim = 4 if isinstance(node, ir.Conv) else 2
        self.requant = (None if node.requant is None
                        else _Requant(node.requant, bound, ndim, device))
        if self.bias is not None:
            self.bias = self.bias.view((1, -1) + (1,) * (ndim - 2))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        node = self.node
        xf = x.to(self.dtype)
        if isinstance(node, ir.Conv):
            t, l, b, r = node.padding
            if (t, l) != (b, r):
                xf = F.pad(xf, (l, r, t, b))
            acc = F.conv2d(xf, self.weight, stride=node.stride,
                           padding=(t, l) if (t, l) == (b, r) else 0)
        else:
            acc = xf.reshape(len(xf), -1) @ self.weight.T
        if self.bias is not None:
            acc = acc + self.bias.to(self.dtype)
        if isinstance(node, ir.Conv) and node.pool is not None:
            # Requantization is non-decreasing in the accumulator (M > 0) and so is the
            # clamp, so pooling first gives the same integers on a quarter of the values.
            k, s = node.pool
            acc = F.max_pool2d(acc, k, s)
        return acc if self.requant is None else self.requant(acc)


class _Elementwise:
    """Residual add or global average pool: an exact float64 sum, then requantization."""

    def __init__(self, node, in_types: list[ir.TensorType], device):
        self.node = node
        self.requant = None
        if node.requant is not None:
            # The largest |sum| the inputs' ranges allow decides whether requantization
            # may run in float64.
            peak = [max(abs(t.lo), abs(t.hi)) for t in in_types]
            if isinstance(node, ir.Add):
                largest = sum(peak)
            else:
                largest = peak[0] * int(np.prod(in_types[0].shape[1:]))
            bound = np.full(node.out.channels, largest, dtype=object)
            self.requant = _Requant(node.requant, bound, 4, device)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        x = [a.to(torch.float64) for a in args]
        acc = x[0] + x[1] if isinstance(self.node, ir.Add) else x[0].sum(dim=(2, 3), keepdim=True)
        return acc if self.requant is None else self.requant(acc)


def _max_pool(x: torch.Tensor, kernel, stride, padding) -> torch.Tensor:
    # Activations are small exact integers in a float tensor; padded cells must never win.
    t, l, b, r = padding
    if any(padding):
        x = F.pad(x, (l, r, t, b), value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


class TorchBackend(Backend):
    """The lowered graph as a chain of PyTorch ops on one device, batched."""

    def __init__(self, cm, device: str, batch_size: int = 1024):
        self.name = f"torch:{device}"
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._saved_precision = (torch.backends.cuda.matmul.allow_tf32,
                                 torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        graph = cm.graph
        types = {n.name: n.out for n in graph}
        self.input = graph.input.name
        self.steps = []
        for node in graph.nodes[1:]:
            in_type = types[node.inputs[0]]
            if isinstance(node, (ir.Conv, ir.Linear)):
                step = _Layer(node, in_type, self.device)
            elif isinstance(node, ir.MaxPool):
                step = lambda x, n=node: _max_pool(x, n.kernel, n.stride, n.padding)  # noqa: E731
            elif isinstance(node, ir.Flatten):
                step = lambda x: x.reshape(len(x), -1)  # noqa: E731
            elif isinstance(node, (ir.Add, ir.AvgPool)):
                step = _Elementwise(node, [types[name] for name in node.inputs], self.device)
            else:
                raise BackendError(f"layer {node.name}: {type(node).__name__} is not supported "
                                   "by the torch backend (supported: Conv, Linear, MaxPool, "
                                   "AvgPool, Add, Flatten)")
            self.steps.append((node, step))
        self.output = graph.output
        log.debug("torch backend layer dtypes: %s", {n.name: str(s.dtype) for n, s in self.steps
                                                     if isinstance(s, _Layer)})

    @torch.inference_mode()
    def run_ints(self, x_int: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(x_int), self.batch_size):
            x = torch.as_tensor(np.asarray(x_int[i:i + self.batch_size], np.float32),
                                device=self.device)
            if x.dim() == 4:
                # NHWC makes the CPU convolutions and pools markedly faster.
                x = x.contiguous(memory_format=torch.channels_last)
            values = {self.input: x}
            for node, step in self.steps:
                values[node.name] = step(*(values[name] for name in node.inputs))
            outs.append(values[self.output].to(torch.int64).cpu().numpy())
        return np.concatenate(outs)

    def close(self) -> None:
        (torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = self._saved_precision


def create(cm, arg: str) -> TorchBackend:
    device = arg or "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"backend torch:{device}: no CUDA device is available; use "
                           "torch:cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise BackendError(f"backend torch:{device}: unknown device; use torch:cpu or "
                           "torch:cuda")
    return TorchBackend(cm, device)
