"""`CompiledModel`: the lowered IR with its accelerator config and quantization metadata."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from hw.config import AcceleratorConfig
from sim import reference

from . import ir


@dataclass
class LayerInfo:
    """One row of `samoyed inspect`'s table."""

    name: str
    op: str
    in_shape: tuple
    out_shape: tuple
    in_bits: str
    weight_bits: str
    out_bits: str
    scale: str
    macs: int
    params: int
    memory: int        # bytes: int8 weights + 16-byte PARAM per requantized channel + output
    requant: str


def _bits(t: ir.TensorType) -> str:
    if t.kind is ir.Kind.ACC:
        return "i32"
    return f"{'b' if t.bipolar else 'i' if t.signed else 'u'}{t.bits}"


@dataclass
class CompiledModel:
    """A compiled network: `reference` runs it on ints, `quantize_input` makes them."""

    graph: ir.Graph
    config: AcceleratorConfig
    name: str = ""
    source: str = ""
    meta: dict = field(default_factory=dict)
    #: K-pack the first convolution: its taps fill the array's rows, so it takes fewer
    #: cycles, and the host sends its input im2col-packed, kh·kw times the image's bytes.
    #: False sends the image as it is: the choice for a link-bound board (docs/isa.md).
    k_pack: bool = True

    @functools.cached_property
    def program(self):
        """The accelerator program for `config` (compiler.program.Program); raises
        MemoryFitError naming the layer and memory when the network does not fit."""
        from .program import lower
        return lower(self.graph, self.config, self.k_pack)

    @property
    def memory_image(self):
        """Weights, parameters and descriptors as the host loads them (hw.layout.MemoryImage)."""
        return self.program.image

    def estimate(self):
        """Modelled cycles of one frame on `config` (sim.cycles.Estimate): `.cycles`,
        `.utilization`, `.layers`."""
        from sim import cycles
        return cycles.estimate_on(self.program.descriptors, self.config)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.input.out.shape

    @property
    def input_node(self) -> ir.Input:
        return self.graph.input

    @property
    def output_type(self) -> ir.TensorType:
        return self.graph.output_node.out

    @property
    def output_scale(self) -> np.ndarray:
        """Per-output-channel scale: real output = int * output_scale + output_offset."""
        return self.output_type.scale.copy()

    @property
    def output_offset(self) -> np.ndarray:
        """Per-output-channel offset (non-zero after a folded TensorNorm or float bias)."""
        return self.output_type.offset.copy()

    def quantize_input(self, x_float) -> np.ndarray:
        """The network's input quantizer applied as Brevitas does it, float32 throughout."""
        x = np.asarray(x_float)
        if x.shape[1:] != self.input_node.in_shape:
            raise reference.ReferenceError(
                f"input has shape {x.shape}; {self.name} expects (N, "
                f"{', '.join(map(str, self.input_node.in_shape))})")
        return reference.quantize_input(x, self.input_node)

    def reference(self, x_int, trace: bool = False):
        """The integer output (int64) for int input (N, *input_shape); see sim.reference."""
        return reference.run(self.graph, x_int, trace=trace)

    def dequantize(self, y_int) -> np.ndarray:
        y = np.asarray(y_int, dtype=np.float64)
        shape = (1, -1) + (1,) * (y.ndim - 2)
        return y * self.output_scale.reshape(shape) + self.output_offset.reshape(shape)

    def layers(self) -> list[LayerInfo]:
        """Per-node shapes, bits, scales, MACs, parameters and memory."""
        rows = []
        types = {}
        for node in self.graph:
            ins = [types[i] for i in node.inputs]
            out = node.out
            types[node.name] = out
            macs = params = mem = 0
            wbits = ""
            if isinstance(node, (ir.Conv, ir.Linear)):
                params = node.weight.size + (0 if node.bias is None else node.bias.size)
                if isinstance(node, ir.Conv):
                    o, _, kh, kw = node.weight.shape
                    oh, ow = ir.conv_out_hw(ins[0].shape[1], ins[0].shape[2], (kh, kw),
                                            node.stride, node.padding)
                    macs = node.weight[0].size * o * oh * ow
                else:
                    macs = node.weight.size
                wbits = f"i{node.weight_bits}"
                mem = node.weight.size
            rq = getattr(node, "requant", None)
            if rq is not None:
                mem += 16 * len(rq.mult)
            mem += int(np.prod(out.shape)) * (4 if out.kind is ir.Kind.ACC else 1)
            s = out.per_tensor_scale
            scale = f"{s:.4g}" if s is not None else f"{out.scale.min():.3g}..{out.scale.max():.3g}"
            rq_desc = ""
            if rq is not None:
                rq_desc = rq.method + ("" if rq.exact else "~")
            op = node.OP + (f"+pool{node.pool[0]}" if getattr(node, "pool", None) else "")
            rows.append(LayerInfo(node.name, op, ins[0].shape if ins else node.in_shape,
                                  out.shape, _bits(ins[0]) if ins else "f32", wbits, _bits(out),
                                  scale, int(macs), int(params), int(mem), rq_desc))
        return rows

    def summary(self) -> str:
        """The layer table as text."""
        rows = self.layers()
        head = ("layer", "op", "in", "out", "in", "w", "out", "scale", "MACs", "params",
                "bytes", "requant")
        table = [head] + [(r.name, r.op, "x".join(map(str, r.in_shape)),
                           "x".join(map(str, r.out_shape)), r.in_bits, r.weight_bits, r.out_bits,
                           r.scale, f"{r.macs:,}", f"{r.params:,}", f"{r.memory:,}", r.requant)
                          for r in rows]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
        lines = ["  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths))) for row in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
        total = (sum(r.macs for r in rows), sum(r.params for r in rows), sum(r.memory for r in rows))
        lines.append(f"total: {total[0]:,} MACs, {total[1]:,} parameters, {total[2]:,} bytes; "
                     f"output scale {self.output_type.per_tensor_scale or 'per channel'}")
        return "\n".join(lines)

    def save(self, path) -> None:
        """Write one `.samoyed` file (see compiler.artifact)."""
        from .artifact import save
        save(self, path)
