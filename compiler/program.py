"""Back end: lowered IR → accelerator program and memory image.

Passes, in order (each a function over the previous one's result):

1. `plan_layers`: one `LayerPlan` per IR compute node — the descriptor fields, the weight
   tiles and PARAM records — with K-packing of the first convolution (the host writes its
   input im2col-packed, so it becomes a 1×1 convolution over kh·kw·C_in channels; a first
   linear layer likewise gets its input as one pixel of C·H·W channels) and linear layers
   mapped onto convolutions over their unflattened input (flatten never moves data);
2. `allocate`: activation tensors get bank addresses (first fit over live ranges), weight
   and PARAM blocks get consecutive addresses; every memory is checked against the
   config and a model that does not fit raises `MemoryFitError` naming the layer, the
   memory, what it needs and has, and the smallest config that fits;
3. `emit`: descriptors packed with `hw.isa`, and the static memory image.

The result is a `Program`; `sim.machine.run` executes it and `sim.cycles.estimate`
counts its cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw import isa, layout
from hw.config import AcceleratorConfig
from hw.isa import Opcode

from . import ir
from .errors import CompileError, UnsupportedError
from .passes import split_pool_on_write


class MemoryFitError(CompileError):
    """The network does not fit the accelerator's memories."""


@dataclass
class Tensor:
    """An activation tensor in the banks: (C, H, W) at word `base`."""

    name: str
    shape: tuple[int, int, int]
    signed: bool
    raw: bool = False
    base: int = -1

    def words(self, rows: int) -> int:
        c, h, w = self.shape
        return layout.act_words(h * w, c, rows, self.raw)


@dataclass
class InputPacking:
    """How the host writes a frame: plain NHWC, or im2col-packed for a K-packed layer."""

    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    im2col: bool = False


@dataclass
class LayerPlan:
    """One descriptor before addresses are known."""

    node: str
    fields: dict
    inputs: list[str]
    output: Tensor
    weights: np.ndarray | None = None      # (words, cols) int8 tiles
    params: np.ndarray | None = None       # PARAM records, uint8


@dataclass
class Program:
    """A compiled network's program, memory image and I/O placement for one config."""

    config: AcceleratorConfig
    descriptors: list[isa.Descriptor]
    layer_names: list[str]
    image: layout.MemoryImage
    input: Tensor
    packing: InputPacking
    output: Tensor
    output_shape: tuple[int, ...]
    usage: dict = field(default_factory=dict)

    def pack_input(self, x_int: np.ndarray) -> np.ndarray:
        """Bank words of one frame (C, H, W ints) as the host writes them."""
        x = np.asarray(x_int, dtype=np.int64)
        if self.packing.im2col:
            x = im2col(x, self.packing)
        return layout.to_banks(x.transpose(1, 2, 0), self.config.rows)

    def input_groups(self, x_int: np.ndarray) -> tuple[bytes, int, int]:
        """One frame without its bank padding: (data, width, group) for a WRITE_GROUPS of
        the link, which writes each `width` bytes of `data` (a pixel's channels) followed
        by zeros up to `group` bytes (the pixel's bank words). `pack_input` is the same
        frame with the zeros."""
        words = self.pack_input(x_int)
        channels, rows = self.input.shape[0], self.config.rows
        group = layout.ceil_div(channels, rows) * rows
        return words.reshape(-1, group)[:, :channels].tobytes(), channels, group

    def load_input(self, act: np.ndarray, x_int: np.ndarray) -> None:
        words = self.pack_input(x_int)
        act[self.input.base:self.input.base + len(words)] = words

    def read_output(self, act: np.ndarray) -> np.ndarray:
        """The output tensor of a finished run, in the reference's shape (no batch axis)."""
        c, h, w = self.output.shape
        words = act[self.output.base:self.output.base + self.output.words(self.config.rows)]
        if self.output.raw:
            hwc = layout.raw_from_banks(words, (h, w, c), self.config.rows)
        else:
            hwc = layout.from_banks(words, (h, w, c), self.config.rows, self.output.signed)
        return hwc.transpose(2, 0, 1).reshape(self.output_shape)


def im2col(x_chw: np.ndarray, packing: InputPacking) -> np.ndarray:
    """(C, H, W) → (kh*kw*C, OH, OW), channel (i*kw + j)*C + c = x[c, oy*s+i, ox*s+j]."""
    c, h, w = x_chw.shape
    (kh, kw), (sh, sw), (t, l, b, r) = packing.kernel, packing.stride, packing.padding
    xp = np.zeros((c, h + t + b, w + l + r), dtype=np.int64)
    xp[:, t:t + h, l:l + w] = x_chw
    oh, ow = (h + t + b - kh) // sh + 1, (w + l + r - kw) // sw + 1
    cols = [xp[:, i:i + sh * oh:sh, j:j + sw * ow:sw] for i in range(kh) for j in range(kw)]
    return np.concatenate(cols, axis=0)


# --- pass 1: plan ----------------------------------------------------------------------

def _params(node, out_channels: int) -> np.ndarray:
    bias = getattr(node, "bias", None)  # ADD and AVGPOOL have none
    bias = np.zeros(out_channels, dtype=np.int64) if bias is None else bias
    rq = node.requant
    if rq is None:  # raw int32 output: acc + bias only
        ones, zeros = np.ones(out_channels, np.int64), np.zeros(out_channels, np.int64)
        return isa.pack_params(bias, ones, zeros, zeros)
    return isa.pack_params(bias, rq.mult, rq.offset, rq.shift)


def _clamp_fields(node) -> dict:
    rq = node.requant
    if rq is None:
        return {"out_raw": 1, "lo": 0, "hi": 0}
    return {"lo": rq.lo, "hi": rq.hi, "bipolar": int(rq.bipolar), "relu": int(rq.lo == 0)}


def _conv_like_plan(node, weight: np.ndarray, stride, padding, pool, src: Tensor, config,
                    first: bool) -> tuple[LayerPlan, InputPacking | None]:
    """A CONV descriptor for `node` (a Conv, or a Linear seen as a convolution whose kernel
    covers its whole input)."""
    R, C = config.rows, config.cols
    o, i, kh, kw = weight.shape
    (sh, sw), (t, l, b, r) = stride, padding
    _, h, w = src.shape
    conv_h, conv_w = ir.conv_out_hw(h, w, (kh, kw), stride, padding)
    packing = None
    if first and i < R and (kh, kw) != (1, 1):
        # K-packing: the host sends the image im2col-packed and the layer becomes a 1×1
        # convolution, so its kh*kw*C_in products fill the rows instead of C_in of R.
        packing = InputPacking((kh, kw), (sh, sw), (t, l, b, r), im2col=True)
        weight = weight.transpose(0, 2, 3, 1).reshape(o, kh * kw * i, 1, 1)
        i, kh, kw, sh, sw, t, l, b, r, h, w = kh * kw * i, 1, 1, 1, 1, 0, 0, 0, 0, conv_h, conv_w
        src = Tensor(src.name, (i, h, w), src.signed)
    if sh != sw:
        raise UnsupportedError(f"layer {node.name}: stride {stride} is not square; the "
                               "accelerator supports equal strides")
    pool_k, pool_s = pool if pool else (1, 1)
    if pool_k != pool_s:
        raise UnsupportedError(f"layer {node.name}: pool-on-write needs kernel == stride, "
                               f"not {pool}")
    out_h, out_w = conv_h // pool_s, conv_w // pool_s
    fields = dict(op=Opcode.CONV, in_signed=int(src.signed), in_h=h, in_w=w, in_c=i, out_c=o,
                  kh=kh, kw=kw, stride=sh, pad_t=t, pad_l=l, pad_b=b, pad_r=r,
                  pool_k=pool_k, pool_s=pool_s, out_h=out_h, out_w=out_w,
                  tile_px=min(conv_h * conv_w, config.acc_depth),
                  **_clamp_fields(node))
    out = Tensor(node.name, (o, out_h, out_w), node.out.lo < 0, raw=node.requant is None)
    plan = LayerPlan(node.name, fields, [src.name], out,
                     layout.weight_tiles(weight, R, C).view(np.uint8), _params(node, o))
    return plan, packing


def _conv_plan(node: ir.Conv, src: Tensor, config, first: bool):
    return _conv_like_plan(node, np.asarray(node.weight, dtype=np.int64), node.stride,
                           node.padding, node.pool, src, config, first)


def _linear_plan(node: ir.Linear, src: Tensor, config, first: bool):
    # torch.flatten order is C-major: feature c*H*W + y*W + x is weight[:, c, y, x] of a
    # convolution whose kernel covers the whole H×W input, so flatten moves no data.
    c, h, w = src.shape
    weight = np.asarray(node.weight, dtype=np.int64).reshape(-1, c, h, w)
    return _conv_like_plan(node, weight, (1, 1), (0, 0, 0, 0), None, src, config, first)


def _maxpool_plan(node: ir.MaxPool, src: Tensor, acc_depth: int) -> LayerPlan:
    (kh, kw), (sh, sw), (t, l, b, r) = node.kernel, node.stride, node.padding
    if kh != kw or sh != sw:
        raise UnsupportedError(f"layer {node.name}: max pool {node.kernel}/{node.stride} is "
                               "not square; the accelerator supports square pools")
    c, oh, ow = node.out.shape
    fields = dict(op=Opcode.MAXPOOL, in_signed=int(src.signed), in_h=src.shape[1],
                  in_w=src.shape[2], in_c=c, out_c=c, pool_k=kh, pool_s=sh, pad_t=t, pad_l=l,
                  pad_b=b, pad_r=r, out_h=oh, out_w=ow, tile_px=min(oh * ow, acc_depth))
    return LayerPlan(node.name, fields, [src.name], Tensor(node.name, (c, oh, ow), src.signed))


def _elementwise_plan(node, srcs: list[Tensor], op: Opcode, acc_depth: int) -> LayerPlan:
    """ADD (two inputs) or AVGPOOL (one): post-processing with PARAM records, no weights."""
    src = srcs[0]
    c, h, w = src.shape
    out_shape = node.out.shape + (1,) * (3 - len(node.out.shape))
    pixels = 1 if op is Opcode.AVGPOOL else h * w
    fields = dict(op=op, in_signed=int(src.signed), in_h=h, in_w=w, in_c=c, out_c=c,
                  out_h=out_shape[1], out_w=out_shape[2], tile_px=min(pixels, acc_depth),
                  **_clamp_fields(node))
    if len(srcs) > 1:
        if srcs[1].shape != src.shape:
            raise UnsupportedError(f"layer {node.name}: adds tensors of shapes "
                                   f"{src.shape} and {srcs[1].shape}")
        fields["in2_signed"] = int(srcs[1].signed)
    out = Tensor(node.name, tuple(out_shape), node.out.lo < 0, raw=node.requant is None)
    return LayerPlan(node.name, fields, [t.name for t in srcs], out, None, _params(node, c))


def plan_layers(graph: ir.Graph, config, k_pack: bool = True
                ) -> tuple[list[LayerPlan], Tensor, InputPacking]:
    """Pass 1: a LayerPlan per compute node of a lowered graph; `k_pack` packs a first
    convolution's taps into the array's rows (the host sends its input im2col-packed). A
    first linear layer is packed either way."""
    inp = graph.input
    shape = tuple(inp.out.shape) + (1,) * (3 - len(inp.out.shape))
    tensors = {inp.name: Tensor(inp.name, shape, inp.out.lo < 0)}
    packing = InputPacking()
    plans = []
    for node in graph.nodes[1:]:
        src = tensors[node.inputs[0]]
        if isinstance(node, ir.Flatten):
            tensors[node.name] = src  # a view: the consumer reads the unflattened tensor
            continue
        if isinstance(node, (ir.Conv, ir.Linear)):
            # A first linear layer is always packed: its input as one pixel of C*H*W
            # channels is the image's own bytes, and its kernel could not be expressed.
            first = (src.name == inp.name and len(graph.consumers(inp.name)) == 1
                     and (k_pack or isinstance(node, ir.Linear)))
            make = _conv_plan if isinstance(node, ir.Conv) else _linear_plan
            plan, pack = make(node, src, config, first)
            if pack is not None:
                packing = pack
                f = plan.fields
                tensors[inp.name] = Tensor(inp.name, (f["in_c"], f["in_h"], f["in_w"]),
                                           src.signed)
        elif isinstance(node, ir.MaxPool):
            plan = _maxpool_plan(node, src, config.acc_depth)
        elif isinstance(node, ir.Add):
            plan = _elementwise_plan(node, [tensors[n] for n in node.inputs], Opcode.ADD,
                                     config.acc_depth)
        elif isinstance(node, ir.AvgPool):
            plan = _elementwise_plan(node, [src], Opcode.AVGPOOL, config.acc_depth)
        else:
            raise UnsupportedError(f"layer {node.name}: {type(node).__name__} is not supported "
                                   "by the accelerator back end (supported: Conv, Linear, "
                                   "MaxPool, AvgPool, Add, Flatten)")
        plans.append(plan)
        tensors[node.name] = plan.output
    return plans, tensors[inp.name], packing


# --- pass 2: allocate --------------------------------------------------------------------

def allocate(plans: list[LayerPlan], inp: Tensor, config) -> dict:
    """Pass 2: bank addresses for every tensor (first fit over live ranges), weight and
    PARAM offsets; raises MemoryFitError when a memory overflows."""
    R = config.rows
    producers = {inp.name: inp, **{p.output.name: p.output for p in plans}}
    last_use = {inp.name: 0}
    for index, plan in enumerate(plans):
        for name in plan.inputs:
            last_use[name] = index
    last_use[plans[-1].output.name] = len(plans)  # the output stays until the host reads it

    live: list[tuple[int, int, str]] = []  # (start, end, tensor)
    peak = 0

    def place(tensor: Tensor):
        nonlocal peak
        size = tensor.words(R)
        base = 0
        for s, e, _ in sorted(live):
            if base + size <= s:
                break
            base = max(base, e)
        tensor.base = base
        live.append((base, base + size, tensor.name))
        peak = max(peak, base + size)

    place(inp)
    for index, plan in enumerate(plans):
        # Inputs of this layer stay live while it runs; tensors used only earlier are freed.
        live = [(s, e, n) for s, e, n in live if last_use[n] >= index]
        place(plan.output)
        plan.fields["src"] = producers[plan.inputs[0]].base
        if len(plan.inputs) > 1:
            plan.fields["src2"] = producers[plan.inputs[1]].base
        plan.fields["dst"] = plan.output.base

    wgt = prm = 0
    for plan in plans:
        if plan.weights is not None:
            plan.fields["wgt"] = wgt
            wgt += len(plan.weights)
        if plan.params is not None:
            plan.fields["prm"] = prm
            prm += len(plan.params) // isa.PARAM_BYTES
    usage = {"act_words": peak, "weight_words": wgt, "param_records": prm,
             "descriptors": len(plans) + 1}
    limits = {"act_words": ("activation banks", config.act_depth, "act_depth"),
              "weight_words": ("weight memory", config.weight_depth, "weight_depth"),
              "param_records": ("parameter memory", config.param_depth, "param_depth"),
              "descriptors": ("program memory", config.program_depth, "program_depth")}
    word_bytes = {"act_words": R, "weight_words": config.cols,
                  "param_records": isa.PARAM_BYTES, "descriptors": isa.DESCRIPTOR_BYTES}
    for key, (memory, available, field_name) in limits.items():
        if usage[key] > available:
            culprit = _culprit(plans, key, available, R, config.cols)
            smallest = 1 << (usage[key] - 1).bit_length()
            size = word_bytes[key]
            raise MemoryFitError(
                f"{culprit}does not fit the {memory}: needs {usage[key]:,} words "
                f"({usage[key] * size:,} bytes), {available:,} available "
                f"({available * size:,} bytes); the smallest config that fits sets "
                f"{field_name}={smallest}")
    return usage


def _culprit(plans, key, available, rows, cols) -> str:
    """'layer X ' for the first layer whose allocation crosses the limit."""
    total = 0
    for plan in plans:
        if key == "weight_words" and plan.weights is not None:
            total += len(plan.weights)
        elif key == "param_records" and plan.params is not None:
            total += len(plan.params) // isa.PARAM_BYTES
        elif key == "act_words":
            total = plan.output.base + plan.output.words(rows)
        if total > available:
            return f"layer {plan.node} "
    return "the network "


# --- pass 3: emit ----------------------------------------------------------------------

def lower(graph: ir.Graph, config: AcceleratorConfig, k_pack: bool = True) -> Program:
    """Lower a lowered IR graph to a Program for `config`."""
    if graph.stage is not ir.Stage.LOWERED:
        raise CompileError("the back end takes a lowered graph; run compiler.passes.lower first")
    if config.standalone_pool:
        graph = split_pool_on_write(graph)
    plans, inp, packing = plan_layers(graph, config, k_pack)
    if not plans:
        raise UnsupportedError(f"{graph.name} has no layer the accelerator can run")
    usage = allocate(plans, inp, config)
    descriptors = [isa.Descriptor(p.fields) for p in plans]
    try:
        prg = isa.pack_program([dict(p.fields) for p in plans], [p.node for p in plans])
    except isa.IsaError as error:
        raise UnsupportedError(f"{error}: the accelerator's descriptor cannot express this "
                               "layer; change the layer (smaller kernel, stride, padding or "
                               "size) or split it") from None
    wgt = np.concatenate([p.weights for p in plans if p.weights is not None] or
                         [np.zeros((0, config.cols), np.uint8)])
    prm = np.concatenate([p.params for p in plans if p.params is not None] or
                         [np.zeros(0, np.uint8)])
    image = layout.MemoryImage(config.rows, config.cols, config.act_depth, wgt, prm, prg)
    program = [isa.unpack(prg[i * isa.DESCRIPTOR_BYTES:(i + 1) * isa.DESCRIPTOR_BYTES])
               for i in range(len(descriptors) + 1)]
    return Program(config, program, [p.node for p in plans], image, inp, packing,
                   plans[-1].output, tuple(graph.output_node.out.shape), usage)
