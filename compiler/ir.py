"""The integer IR: a small dataclass graph that frontends produce and passes rewrite.

A `Graph` is a topologically ordered list of nodes, one output tensor each, named like the
layer they come from. Every tensor has a `TensorType`:

- `Kind.INT`: a quantized activation, integers in [lo, hi], real value `int * scale`;
- `Kind.ACC`: an int32 accumulator (conv/linear/pool sum/add), real value
  `acc * scale[c] + offset[c]` per channel;
- `Kind.REAL`: a float tensor of the raw IR (after an `Affine` or `Relu` that is not yet
  folded). No REAL tensor survives lowering.

Frontends emit the raw ops (`Quant`, `Affine`, `Relu`, unfused `Conv`...); the passes in
`compiler.passes` fold and fuse them until only the lowered ops remain: `Input`, `Conv`
and `Linear` (with an optional `Requant` and pool), `MaxPool`, `AvgPool`, `Add`,
`Requantize`, `Flatten`, `Relu` on ints. `sim.reference` is the executable definition of
every op; `verify` checks a graph between passes.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from .errors import AccumulatorOverflowError, IRError, ShapeError

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MAX_MULT = (1 << 31) - 1          # 0 < M < 2**31 (an unsigned 31-bit PARAM field)
MAX_OFFSET = (1 << 55) - 1        # |B| fits the signed 56-bit PARAM field
MAX_SHIFT = 62


class Kind(enum.Enum):
    """What the integers of a tensor are."""

    INT = "int"
    ACC = "acc"
    REAL = "real"


class Stage(enum.Enum):
    """How far a graph is lowered: which ops `verify` accepts."""

    RAW = "raw"
    LOWERED = "lowered"


def _channels(shape: tuple[int, ...]) -> int:
    return shape[0]


@dataclass(eq=False)
class TensorType:
    """Shape (per sample, NCHW without N), integer range and real-value mapping."""

    shape: tuple[int, ...]
    kind: Kind
    lo: int = 0
    hi: int = 0
    scale: np.ndarray = None      # (C,) float64
    offset: np.ndarray = None     # (C,) float64
    bipolar: bool = False         # values are -1 or +1 (FINN's BipolarQuant), never 0

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        self.lo, self.hi = int(self.lo), int(self.hi)
        c = _channels(self.shape)
        self.scale = _per_channel(self.scale, c, 1.0)
        self.offset = _per_channel(self.offset, c, 0.0)

    @property
    def channels(self) -> int:
        return _channels(self.shape)

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def bits(self) -> int:
        """Bits needed to store the range (1 for bipolar: one sign bit)."""
        if self.bipolar:
            return 1
        if self.lo >= 0:
            return max(self.hi.bit_length(), 1)
        return max(self.hi.bit_length(), (-self.lo - 1).bit_length()) + 1

    @property
    def per_tensor_scale(self) -> float | None:
        """The scale if every channel shares it, else None."""
        return float(self.scale[0]) if np.all(self.scale == self.scale[0]) else None

    def replace(self, **changes) -> "TensorType":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = {"shape": list(self.shape), "kind": self.kind.value, "lo": self.lo, "hi": self.hi,
             "bipolar": self.bipolar}
        d["scale"] = [float(s) for s in self.scale]
        d["offset"] = [float(o) for o in self.offset]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TensorType":
        return cls(tuple(d["shape"]), Kind(d["kind"]), d["lo"], d["hi"],
                   np.array(d["scale"], dtype=np.float64), np.array(d["offset"], dtype=np.float64),
                   d["bipolar"])


def _per_channel(value, channels: int, default: float) -> np.ndarray:
    if value is None:
        value = default
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1 or (arr.size != channels and arr.size and np.all(arr == arr[0])):
        arr = np.full(channels, arr[0])
    if arr.size != channels:
        raise IRError(f"per-channel array of {arr.size} values for {channels} channels")
    return arr


def flatten_type(t: TensorType) -> TensorType:
    """The type of `t` flattened to one axis (C-major): per-channel values repeat H*W times."""
    per = int(np.prod(t.shape[1:])) if len(t.shape) > 1 else 1
    return t.replace(shape=(int(np.prod(t.shape)),), scale=np.repeat(t.scale, per),
                     offset=np.repeat(t.offset, per))


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """The integer range of a `bits`-wide quantizer, as Brevitas defines it."""
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(narrow)


@dataclass(eq=False)
class Requant:
    """Per-channel requantization `clamp(round_half_even_shift(acc*M + B, S), lo, hi)`.

    `bipolar` maps the clamped {0, 1} to {-1, +1} (y = 2*z - 1), for BipolarQuant outputs.
    `exact` records whether the compiler proved the parameters reproduce the source's
    float function on the whole reachable accumulator range; `method` says how they were
    derived ("shift", "fit", "nominal").
    """

    mult: np.ndarray
    offset: np.ndarray
    shift: np.ndarray
    lo: int
    hi: int
    bipolar: bool = False
    exact: bool = True
    method: str = "shift"

    ARRAYS: ClassVar[tuple[str, ...]] = ("mult", "offset", "shift")


@dataclass(eq=False)
class Node:
    """One op of the graph; `inputs` name producer nodes, `out` types its output."""

    name: str
    inputs: tuple[str, ...]
    out: TensorType

    OP: ClassVar[str] = "node"
    ARRAYS: ClassVar[tuple[str, ...]] = ()

    def copy(self, **changes) -> "Node":
        return dataclasses.replace(self, **changes)


@dataclass(eq=False)
class Input(Node):
    """The network input: float pre-ops (applied in float32), then the input quantizer.

    `pre_ops` are ("mul" | "add", constant) pairs applied in order before quantizing
    (FINN's `2*x - 1`); `quant_scale` is the quantizer's scale and `out` its int range.
    """

    pre_ops: tuple = ()
    quant_scale: float = 1.0
    in_shape: tuple[int, ...] = ()
    OP: ClassVar[str] = "input"


@dataclass(eq=False)
class Conv(Node):
    """2-D convolution, int weights (O, I, kh, kw), int bias in the accumulator's LSB.

    `padding` is (top, left, bottom, right). With `requant` the output is the requantized
    int tensor, and with `pool` = (k, s) a max pool applied on write.
    """

    weight: np.ndarray = None
    bias: np.ndarray = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    weight_bits: int = 8
    weight_scale: np.ndarray = None
    requant: Requant | None = None
    pool: tuple[int, int] | None = None
    OP: ClassVar[str] = "conv"
    ARRAYS: ClassVar[tuple[str, ...]] = ("weight", "bias", "weight_scale")


@dataclass(eq=False)
class Linear(Node):
    """Fully connected layer, int weights (O, I); `in_shape` is the shape it flattens."""

    weight: np.ndarray = None
    bias: np.ndarray = None
    weight_bits: int = 8
    weight_scale: np.ndarray = None
    requant: Requant | None = None
    OP: ClassVar[str] = "linear"
    ARRAYS: ClassVar[tuple[str, ...]] = ("weight", "bias", "weight_scale")


@dataclass(eq=False)
class Quant(Node):
    """Raw IR: an activation quantizer applied to a real-valued (ACC/REAL) tensor.

    `out` gives its scale and int range; `oracle`, when a frontend can give one, evaluates
    the source framework's own float function from the producer's accumulator to this
    quantizer's integers (array (N, C) of accumulators → ints); it is not saved.
    """

    oracle: Callable | None = field(default=None, repr=False)
    OP: ClassVar[str] = "quant"


@dataclass(eq=False)
class Affine(Node):
    """Raw IR: per-channel `real * scale + offset` (batch norm, TensorNorm, Mul/Add)."""

    scale: np.ndarray = None
    offset: np.ndarray = None
    OP: ClassVar[str] = "affine"
    ARRAYS: ClassVar[tuple[str, ...]] = ("scale", "offset")


@dataclass(eq=False)
class Relu(Node):
    """max(x, 0): on a real tensor (raw IR) or on ints."""

    OP: ClassVar[str] = "relu"


@dataclass(eq=False)
class MaxPool(Node):
    """Max pool, floor mode; `padding` (top, left, bottom, right) pads with -inf."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    OP: ClassVar[str] = "maxpool"


@dataclass(eq=False)
class AvgPool(Node):
    """Global average pool to 1×1: the int sum over H×W (scale / (H*W)), then `requant`."""

    requant: Requant | None = None
    OP: ClassVar[str] = "avgpool"


@dataclass(eq=False)
class Add(Node):
    """Residual add of two int tensors of one scale: `a + b`, then `requant`.

    Lowered with `requant`, it is the contract's "requantize each input to a common
    scale, add, clamp" with equal multipliers: clamp(rshe(a*M + b*M + B, S)).
    """

    requant: Requant | None = None
    OP: ClassVar[str] = "add"


@dataclass(eq=False)
class Requantize(Node):
    """A standalone requantization of an int or accumulator tensor."""

    requant: Requant = None
    OP: ClassVar[str] = "requantize"


@dataclass(eq=False)
class Flatten(Node):
    """(C, H, W) → (C*H*W,), C-major like torch.flatten."""

    OP: ClassVar[str] = "flatten"


NODE_TYPES: dict[str, type[Node]] = {cls.OP: cls for cls in (
    Input, Conv, Linear, Quant, Affine, Relu, MaxPool, AvgPool, Add, Requantize, Flatten)}
RAW_ONLY = (Quant, Affine)


@dataclass(eq=False)
class Graph:
    """A topologically ordered list of nodes with one input (the first) and one output."""

    name: str
    nodes: list[Node]
    output: str
    stage: Stage = Stage.RAW

    def __post_init__(self):
        self._index = {n.name: n for n in self.nodes}

    def __getitem__(self, name: str) -> Node:
        return self._index[name]

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def __iter__(self):
        return iter(self.nodes)

    @property
    def input(self) -> Input:
        return self.nodes[0]

    @property
    def output_node(self) -> Node:
        return self._index[self.output]

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def with_nodes(self, nodes: list[Node], output: str | None = None,
                   stage: Stage | None = None) -> "Graph":
        """A new graph over `nodes` (passes never mutate their input graph)."""
        return Graph(self.name, list(nodes), output or self.output, stage or self.stage)

    def rewire(self, old: str, new: str) -> "Graph":
        """A new graph where every use of tensor `old` reads `new` instead."""
        nodes = [n.copy(inputs=tuple(new if i == old else i for i in n.inputs))
                 if old in n.inputs else n for n in self.nodes]
        return self.with_nodes(nodes, new if self.output == old else self.output)

    def without(self, name: str) -> "Graph":
        return self.with_nodes([n for n in self.nodes if n.name != name])


# --- shape inference and bounds -------------------------------------------------------

def conv_out_hw(h: int, w: int, kernel, stride, padding) -> tuple[int, int]:
    kh, kw = kernel
    t, l, b, r = padding
    return (h + t + b - kh) // stride[0] + 1, (w + l + r - kw) // stride[1] + 1


def infer_shape(node: Node, in_types: list[TensorType]) -> tuple[int, ...]:
    """The output shape `node` must have given its inputs' types; ShapeError if none."""
    if isinstance(node, Input):
        return tuple(node.in_shape)
    x = in_types[0].shape
    if isinstance(node, Conv):
        if len(x) != 3:
            raise ShapeError(f"layer {node.name!r} (conv) needs a (C, H, W) input, got {x}")
        o, i, kh, kw = node.weight.shape
        if x[0] != i:
            raise ShapeError(f"layer {node.name!r} (conv) expects {i} input channels but "
                             f"receives {x[0]} (input shape {x})")
        oh, ow = conv_out_hw(x[1], x[2], (kh, kw), node.stride, node.padding)
        if oh < 1 or ow < 1:
            raise ShapeError(f"layer {node.name!r} (conv {kh}x{kw}) does not fit its "
                             f"{x[1]}x{x[2]} input")
        if node.pool:
            k, s = node.pool
            oh, ow = (oh - k) // s + 1, (ow - k) // s + 1
        return (o, oh, ow)
    if isinstance(node, Linear):
        features = int(np.prod(x))
        if node.weight.shape[1] != features:
            raise ShapeError(f"layer {node.name!r} (linear) expects {node.weight.shape[1]} input "
                             f"features but receives {features} (input shape {x})")
        return (node.weight.shape[0],)
    if isinstance(node, MaxPool):
        if len(x) != 3:
            raise ShapeError(f"layer {node.name!r} (max pool) needs a (C, H, W) input, got {x}")
        oh, ow = conv_out_hw(x[1], x[2], node.kernel, node.stride, node.padding)
        if oh < 1 or ow < 1:
            raise ShapeError(f"layer {node.name!r} (max pool {node.kernel}) does not fit its "
                             f"{x[1]}x{x[2]} input")
        return (x[0], oh, ow)
    if isinstance(node, AvgPool):
        if len(x) != 3:
            raise ShapeError(f"layer {node.name!r} (avg pool) needs a (C, H, W) input, got {x}")
        return (x[0], 1, 1)
    if isinstance(node, Flatten):
        return (int(np.prod(x)),)
    if isinstance(node, Add):
        if in_types[1].shape != x:
            raise ShapeError(f"layer {node.name!r} (add) adds shapes {x} and {in_types[1].shape}")
        return x
    return x  # elementwise: Quant, Affine, Relu, Requantize


def acc_range(node: Node, in_types: list[TensorType]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel [min, max] of the accumulator of a Conv/Linear/AvgPool/Add (int64).

    Conv/Linear: each product lies in [min(w*lo, w*hi), max(...)]; zero padding and
    border windows drop terms, which stays inside since lo <= 0 <= hi for every type.
    """
    x = in_types[0]
    if isinstance(node, (Conv, Linear)):
        w = node.weight.reshape(node.weight.shape[0], -1).astype(np.int64)
        lo = np.minimum(w * x.lo, w * x.hi).sum(axis=1)
        hi = np.maximum(w * x.lo, w * x.hi).sum(axis=1)
        bias = np.zeros(len(w), np.int64) if node.bias is None else node.bias.astype(np.int64)
        return lo + bias, hi + bias
    if isinstance(node, AvgPool):
        n = x.shape[1] * x.shape[2]
        c = x.channels
        return np.full(c, n * x.lo, np.int64), np.full(c, n * x.hi, np.int64)
    if isinstance(node, Add):
        c = x.channels
        return (np.full(c, x.lo + in_types[1].lo, np.int64),
                np.full(c, x.hi + in_types[1].hi, np.int64))
    raise AssertionError(f"{node.OP} has no accumulator")


def check_accumulator(node: Node, in_types: list[TensorType]) -> tuple[int, int]:
    """The accumulator's [min, max] over all channels; AccumulatorOverflowError if > int32."""
    lo, hi = acc_range(node, in_types)
    lo, hi = int(lo.min()), int(hi.max())
    if lo < INT32_MIN or hi > INT32_MAX:
        bound = max(-lo, hi)
        raise AccumulatorOverflowError(
            f"layer {node.name!r} ({node.OP}): its int32 accumulator could reach {bound} "
            f"(range [{lo}, {hi}]), beyond 2**31-1 = {INT32_MAX}; use fewer bits or "
            "smaller weights/bias for this layer")
    return lo, hi


# --- verifier -------------------------------------------------------------------------

def _fail(node: Node, what: str):
    raise IRError(f"IR node {node.name!r} ({node.OP}): {what}")


def _check_requant(node: Node, rq: Requant, channels: int) -> None:
    for name in Requant.ARRAYS:
        arr = getattr(rq, name)
        if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.shape != (channels,):
            _fail(node, f"requant {name} must be int64 of shape ({channels},)")
    if np.any(rq.mult <= 0) or np.any(rq.mult > MAX_MULT):
        _fail(node, f"requant multiplier outside 0 < M < 2**31: {rq.mult.min()}..{rq.mult.max()}")
    if np.any(rq.shift < 0) or np.any(rq.shift > MAX_SHIFT):
        _fail(node, f"requant shift outside 0..{MAX_SHIFT}")
    if np.any(np.abs(rq.offset) > MAX_OFFSET):
        _fail(node, "requant offset does not fit 56 signed bits")
    if not rq.lo <= rq.hi:
        _fail(node, f"requant clamp lo {rq.lo} > hi {rq.hi}")


def _check_weights(node: Node) -> None:
    w = node.weight
    if not isinstance(w, np.ndarray) or w.dtype not in (np.int8, np.int16, np.int32, np.int64):
        _fail(node, "weights must be an integer array")
    lo, hi = int_range(node.weight_bits, True)
    if node.weight_bits == 1:
        lo, hi = -1, 1
    if w.size and (w.min() < lo or w.max() > hi):
        _fail(node, f"weights {w.min()}..{w.max()} exceed {node.weight_bits} bits")
    if node.bias is not None and (node.bias.dtype != np.int64 or node.bias.shape != (w.shape[0],)):
        _fail(node, f"bias must be int64 of shape ({w.shape[0]},)")


def verify(graph: Graph, stage: Stage | None = None) -> Graph:
    """Check `graph` is well formed for `stage` (default: its own); returns it."""
    stage = stage or graph.stage
    seen: dict[str, TensorType] = {}
    if not graph.nodes or not isinstance(graph.nodes[0], Input):
        raise IRError("the first node of a graph must be its Input")
    for i, node in enumerate(graph.nodes):
        if type(node) not in NODE_TYPES.values():
            raise IRError(f"IR node {node.name!r}: unknown type {type(node).__name__}")
        if node.name in seen:
            _fail(node, "duplicate name")
        if isinstance(node, Input) and i:
            _fail(node, "a graph has one Input, first")
        if stage is Stage.LOWERED and isinstance(node, RAW_ONLY):
            _fail(node, "raw op left in a lowered graph")
        arity = 0 if isinstance(node, Input) else 2 if isinstance(node, Add) else 1
        if len(node.inputs) != arity:
            _fail(node, f"takes {arity} inputs, has {len(node.inputs)}")
        for name in node.inputs:
            if name not in seen:
                _fail(node, f"reads {name!r}, which is not produced before it")
        in_types = [seen[n] for n in node.inputs]
        shape = infer_shape(node, in_types)
        if shape != node.out.shape:
            _fail(node, f"output shape {node.out.shape} but its inputs give {shape}")
        if isinstance(node, (Conv, Linear)):
            _check_weights(node)
        if isinstance(node, (Conv, Linear, AvgPool, Add)):
            if any(t.kind is not Kind.INT for t in in_types):
                _fail(node, "inputs must be quantized int tensors")
            check_accumulator(node, in_types)
        rq = getattr(node, "requant", None)
        if rq is not None:
            _check_requant(node, rq, node.out.channels)
            if node.out.kind is not Kind.INT:
                _fail(node, "a requantized output must be of kind INT")
        elif isinstance(node, (Conv, Linear, AvgPool, Add)) and node.out.kind is not Kind.ACC:
            _fail(node, "an op without requant outputs its accumulator (kind ACC)")
        if isinstance(node, Requantize) and node.requant is None:
            _fail(node, "Requantize without parameters")
        if stage is Stage.LOWERED and node.out.kind is Kind.REAL:
            _fail(node, "real-valued tensor left in a lowered graph")
        if node.out.kind is not Kind.REAL and node.out.lo > node.out.hi:
            _fail(node, f"range lo {node.out.lo} > hi {node.out.hi}")
        seen[node.name] = node.out
    if graph.output not in seen:
        raise IRError(f"graph output {graph.output!r} is not a node")
    if stage is Stage.LOWERED:
        used = {i for n in graph.nodes for i in n.inputs} | {graph.output}
        dead = [n.name for n in graph.nodes if n.name not in used]
        if dead:
            raise IRError(f"nodes whose outputs are never used: {dead}")
    return graph
