"""`torch`, `torch:cpu`, `torch:cuda`: the lowered IR run with PyTorch, bit-exact.

On a CPU, a convolution whose activations and weights fit 8 bits and whose sums stay
below 2**24 runs on oneDNN's int8 kernels (u8 x s8 -> exact int32 sums, returned as
float32 of scale 1), after a per-layer self-check against float64; this is what makes the
backend faster than the float network it came from. Elsewhere:
integer values are carried in floating point only where that is provably exact: a
convolution or linear layer runs in float32 when the sum of the absolute values of any
of its products (K · max|x| · max|w| + |bias|) stays below 2**24, so every partial sum is
an exactly representable integer whatever order the kernel adds them in; otherwise it
runs in float64 (exact below 2**53; the compiler proves |acc| < 2**31). Requantization is
one float64 multiply-add and round-half-to-even where that is provably exact, else the
reference's shift on int64 tensors. TF32 and other
reduced-precision paths are switched off for the backend's lifetime, never traded for
speed. On a CPU, a convolution's max pool, bias and requantization run as one compiled
pass (host.backends.kernels, where numba is installed), and one chunk of images runs per
thread.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from compiler import ir

from ..errors import BackendError
from . import kernels
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
            # (acc·M + B)·2**-S == acc·(M·2**-S) + B·2**-S exactly: scaling by a power of
            # two keeps every product and sum exact, so one multiply-add does it (fused
            # or not: both are exact).
            # The per-channel factors broadcast over the last axis of a channels-last view.
            self.mult = torch.as_tensor(np.ldexp(mult.astype(np.float64), -shift),
                                        device=device)
            self.offset = torch.as_tensor(np.ldexp(offset.astype(np.float64), -shift),
                                          device=device)
        else:
            self.mult, self.offset = tensor(mult, torch.int64), tensor(offset, torch.int64)
            self.shift = tensor(shift, torch.int64)
        self.lo, self.hi, self.bipolar = rq.lo, rq.hi, rq.bipolar
        # Unsigned 8-bit results travel as uint8: a quarter of the bytes to the next
        # layer, which the int8 convolution reads as they are.
        self.out_dtype = torch.uint8 if 0 <= rq.lo and rq.hi <= 255 and not rq.bipolar \
            else None

    def __call__(self, acc: torch.Tensor) -> torch.Tensor:
        if self.in_float:
            nhwc = acc.dim() == 4
            a = acc.permute(0, 2, 3, 1) if nhwc else acc
            v = torch.addcmul(self.offset, a.to(torch.float64), self.mult)
            y = v.round_().clamp_(self.lo, self.hi).to(self.out_dtype or acc.dtype)
            y = y.permute(0, 3, 1, 2) if nhwc else y
        else:
            v = acc.to(torch.int64) * self.mult + self.offset
            y = round_half_even_shift(v, self.shift).clamp(self.lo, self.hi).to(
                self.out_dtype or acc.dtype)
        return 2 * y - 1 if self.bipolar else y


def _padding(node) -> tuple[tuple[int, int, int, int] | None, list[int]]:
    """A convolution's padding as (an explicit F.pad for uneven padding, else None;
    the symmetric padding the convolution op itself takes)."""
    t, l, b, r = node.padding
    if (t, l) == (b, r):
        return None, [t, l]
    return (l, r, t, b), [0, 0]


def _onednn_int8_available() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops, "onednn")
            and hasattr(torch.ops.onednn, "qconv2d_pointwise"))


class _Int8Conv:
    """A convolution on oneDNN's int8 kernels (u8 activations x s8 weights, int32 sums)
    with a float32 result of scale 1, which is exact while every sum stays below 2**24.

    Signed activations travel as u8 with zero point 128, which oneDNN subtracts exactly.
    Some CPUs without VNNI add u8·s8 pairs in saturating int16; a layer whose self-check
    against float64 (on the extreme inputs that would saturate and on random ones) is not
    equal raises `_NotExact`, and the layer runs in floating point instead.
    """

    def __init__(self, node, in_type: ir.TensorType, weight: np.ndarray):
        self.node = node
        self.zero_point = 0 if in_type.lo >= 0 else 128
        self.pre_pad, self.padding = _padding(node)
        self.stride = list(node.stride)
        weight = torch.as_tensor(weight)
        out_c = len(weight)
        self.w_scale = torch.ones(out_c, dtype=torch.float32)
        self.w_zero = torch.zeros(out_c, dtype=torch.int64)
        self.packed = torch.ops.onednn.qconv_prepack(
            weight.to(torch.int8), self.w_scale, 1.0, self.zero_point, self.stride,
            self.padding, [1, 1], 1, None)
        self._self_check(weight, in_type)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        q = (x + self.zero_point if self.zero_point else x).to(torch.uint8)
        q = q.contiguous(memory_format=torch.channels_last)
        if self.pre_pad is not None:
            q = F.pad(q, self.pre_pad, value=self.zero_point)
        return torch.ops.onednn.qconv2d_pointwise(
            q, 1.0, self.zero_point, self.packed, self.w_scale, self.w_zero, None,
            self.stride, self.padding, [1, 1], 1, 1.0, 0, torch.float32, "none", [], "")

    def _self_check(self, weight, in_type):
        shape = (2, weight.shape[1]) + tuple(in_type.shape[-2:])
        extreme = torch.where(weight.sum(dim=(0, 2, 3)) >= 0, in_type.hi, in_type.lo)
        gen = torch.Generator().manual_seed(0)
        probes = [extreme.view(1, -1, 1, 1).expand(shape).to(torch.float32),
                  torch.full(shape, float(in_type.hi)), torch.full(shape, float(in_type.lo)),
                  torch.randint(in_type.lo, in_type.hi + 1, shape, generator=gen
                                ).to(torch.float32)]
        for x in probes:
            xd = x.to(torch.float64)
            if self.pre_pad is not None:
                xd = F.pad(xd, self.pre_pad)
            want = F.conv2d(xd, weight.to(torch.float64), stride=self.stride,
                            padding=self.padding)
            if not torch.equal(self(x).to(torch.float64), want):
                raise _NotExact(self.node.name)


class _NotExact(Exception):
    pass


class _Layer:
    """One compute node: conv/linear in an exact arithmetic, then requantization."""

    def __init__(self, node, in_type: ir.TensorType, device):
        self.node = node
        bound = _acc_bound(node, in_type)
        self.dtype = torch.float32 if bound.max(initial=0) < FLOAT32_EXACT else torch.float64
        self.int8 = None
        weight = np.asarray(node.weight, np.int64)
        if (isinstance(node, ir.Conv) and self.dtype == torch.float32 and device.type == "cpu"
                and in_type.lo >= -128 and in_type.hi <= (255 if in_type.lo >= 0 else 127)
                and weight.min(initial=0) >= -128 and weight.max(initial=0) <= 127
                and _onednn_int8_available()):
            try:
                self.int8 = _Int8Conv(node, in_type, weight)
            except (_NotExact, RuntimeError) as error:
                log.info("layer %s: oneDNN int8 convolution not used (%s: %s); float32 "
                         "instead", node.name, type(error).__name__, error)
        self.weight = torch.as_tensor(weight, device=device).to(self.dtype)
        self.bias = None if node.bias is None else torch.as_tensor(
            np.asarray(node.bias, np.int64), device=device)
        ndim = 4 if isinstance(node, ir.Conv) else 2
        self.requant = (None if node.requant is None
                        else _Requant(node.requant, bound, ndim, device))
        if self.bias is not None:
            self.bias = self.bias.view((1, -1) + (1,) * (ndim - 2))
        # On a CPU, a convolution's pool, bias and float64 requantization run as one
        # compiled pass over its accumulators (host.backends.kernels).
        self.fused = None
        rq = self.requant
        if (device.type == "cpu" and ndim == 4 and rq is not None and rq.in_float
                and not rq.bipolar and kernels.available()):
            k, s = node.pool if node.pool is not None else (1, 1)
            bias = np.zeros(len(weight)) if node.bias is None \
                else np.asarray(node.bias, np.int64).astype(np.float64)
            out_dtype = np.uint8 if rq.out_dtype == torch.uint8 \
                else (np.float32 if self.dtype == torch.float32 else np.float64)
            self.fused = (int(k), int(s), bias, rq.mult.numpy(), rq.offset.numpy(),
                          float(rq.lo), float(rq.hi), out_dtype)

    @property
    def arithmetic(self) -> str:
        """How the layer's sums are computed: "int8 (oneDNN)", "float32" or "float64"."""
        return "int8 (oneDNN)" if self.int8 is not None else str(self.dtype).split(".")[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        node = self.node
        if self.int8 is not None:
            acc = self.int8(x)
        elif isinstance(node, ir.Conv):
            xf = x.to(self.dtype)
            pre_pad, padding = _padding(node)
            if pre_pad is not None:
                xf = F.pad(xf, pre_pad)
            acc = F.conv2d(xf, self.weight, stride=node.stride, padding=padding)
        else:
            acc = x.to(self.dtype).reshape(len(x), -1) @ self.weight.T
        if self.fused is not None:
            nhwc = acc.permute(0, 2, 3, 1).contiguous()   # a view: the convs give NHWC
            out = kernels.pool_requant_nhwc(nhwc.numpy(), *self.fused)
            return torch.from_numpy(out).permute(0, 3, 1, 2)
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
    # Activations are small exact integers; padded cells must never win. (uint8 goes to
    # float32: torch 2.x's channels-last uint8 max_pool2d rejects some shapes, 12x11.)
    x = x.to(torch.float32) if x.dtype == torch.uint8 else x
    t, l, b, r = padding
    if any(padding):
        x = F.pad(x, (l, r, t, b), value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


class TorchBackend(Backend):
    """The lowered graph as a chain of PyTorch ops on one device, batched."""

    def __init__(self, cm, device: str, batch_size: int | None = None):
        self.name = f"torch:{device}"
        self.device = torch.device(device)
        # On a CPU, chunks of 64 images keep every intermediate tensor in the caches
        # (fmnist-cnn's first convolution: 6.4 MB); a GPU wants large batches.
        self.batch_size = batch_size or (64 if self.device.type == "cpu" else 1024)
        # Chunks run at once (each single-threaded); None: one per torch thread on a CPU.
        self.workers = None
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
        log.debug("torch backend layer arithmetic: %s", self.arithmetic)

    @property
    def arithmetic(self) -> dict[str, str]:
        """Per conv/linear layer, how its sums are computed exactly."""
        return {n.name: s.arithmetic for n, s in self.steps if isinstance(s, _Layer)}

    @property
    def fused_layers(self) -> list[str]:
        """Conv layers whose pool and requantization run as one compiled pass."""
        return [n.name for n, s in self.steps if isinstance(s, _Layer) and s.fused is not None]

    @property
    def parallel_chunks(self) -> int:
        """How many chunks of `batch_size` images run at once."""
        return self.workers or (torch.get_num_threads() if self.device.type == "cpu" else 1)

    def run_ints(self, x_int: np.ndarray) -> np.ndarray:
        chunks = [x_int[i:i + self.batch_size] for i in range(0, len(x_int), self.batch_size)]
        threads = torch.get_num_threads()
        workers = min(len(chunks), self.parallel_chunks)
        if workers <= 1:
            return np.concatenate([self._run_chunk(chunk) for chunk in chunks])
        # On a CPU, one single-threaded chunk per thread: as fast as every chunk on all
        # threads on an idle machine, and far faster when another process holds a core,
        # where OpenMP's barriers wait on the preempted thread (fmnist-cnn on 2 cores
        # beside an FPGA build: ~15,000 against 1,000-4,000 images/s).
        try:
            with ThreadPoolExecutor(workers, initializer=torch.set_num_threads,
                                    initargs=(1,)) as pool:
                return np.concatenate(list(pool.map(self._run_chunk, chunks)))
        finally:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def _run_chunk(self, x_int: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(x_int, np.float32), device=self.device)
        if x.dim() == 4:
            # NHWC makes the CPU convolutions and pools markedly faster.
            x = x.contiguous(memory_format=torch.channels_last)
        values = {self.input: x}
        for node, step in self.steps:
            values[node.name] = step(*(values[name] for name in node.inputs))
        return values[self.output].to(torch.int64).cpu().numpy()

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
