"""Frontend for QONNX files (Brevitas's `export_qonnx` or any tool writing QONNX).

The graph is walked in order with each tensor classified as a float constant, a quantized
constant (a `Quant`/`BipolarQuant` of a constant: weights and biases), the float network
input before its quantizer (with pending Mul/Add/Sub/Div and a flatten), or an IR tensor.
Ops on constants only are folded with NumPy. The result is the same raw IR the Brevitas
frontend builds, without oracles: requantization is fitted to the exact float64 affine map
of the QONNX semantics (`Quant`: clamp(round_half_even(x / scale + zeropt)) * scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import ir
from .errors import CompileError, ShapeError, UnsupportedError

SUPPORTED_OPS = ("Quant, BipolarQuant, Conv (group=1, dilation=1), Gemm, MatMul, "
                 "BatchNormalization, Relu, MaxPool, GlobalAveragePool, AveragePool (global), "
                 "Flatten, Reshape (to N x -1), Transpose (of weights), Add (bias, residual), "
                 "Mul/Add/Sub/Div by constants, Identity, Dropout, Constant")
MAX_BITS = 8


@dataclass
class _QConst:
    ints: np.ndarray
    scale: np.ndarray
    bits: int
    signed: bool
    bipolar: bool = False


@dataclass
class _Pre:
    ops: list = field(default_factory=list)
    flat: bool = False


class _Builder:
    def __init__(self, model, input_shape):
        self.model = model
        self.nodes: list[ir.Node] = []
        self.types: dict[str, ir.TensorType] = {}
        self.val: dict[str, object] = {}
        g = model.graph
        from onnx import numpy_helper
        for init in g.initializer:
            self.val[init.name] = numpy_helper.to_array(init).astype(np.float64)
        inputs = [i for i in g.input if i.name not in self.val]
        if len(inputs) != 1:
            raise UnsupportedError(f"the ONNX graph has {len(inputs)} inputs; samoyed needs one")
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
        file_shape = tuple(dims[1:])
        if input_shape is not None and tuple(input_shape) != file_shape:
            raise ShapeError(f"input_shape={tuple(input_shape)} does not match the ONNX graph's "
                             f"input {inputs[0].name!r} of shape {tuple(dims)} (batch first)")
        self.input_shape = file_shape
        self.val[inputs[0].name] = _Pre()

    # -- helpers ---------------------------------------------------------------------

    def emit(self, node: ir.Node) -> str:
        in_types = [self.types[n] for n in node.inputs]
        shape = ir.infer_shape(node, in_types)
        if shape != node.out.shape:
            node = node.copy(out=node.out.replace(shape=shape))
        self.nodes.append(node)
        self.types[node.name] = node.out
        return node.name

    def unsupported(self, n, why: str = ""):
        raise UnsupportedError(f"ONNX node {n.name!r} ({n.op_type}) is not supported"
                               f"{': ' + why if why else ''}; supported: {SUPPORTED_OPS}")

    @staticmethod
    def attrs(n) -> dict:
        from onnx import helper
        out = {}
        for a in n.attribute:
            v = helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        return out

    # -- ops -------------------------------------------------------------------------

    def node(self, n):
        args = [self.val.get(i) if i else None for i in n.input]
        args = [np.asarray(a, np.float64) if isinstance(a, (float, np.floating)) else a
                for a in args]
        if any(i and i not in self.val for i in n.input):
            missing = [i for i in n.input if i and i not in self.val]
            raise CompileError(f"ONNX node {n.name!r} reads undefined tensors {missing}")
        op = n.op_type
        consts = all(isinstance(a, np.ndarray) or a is None for a in args)
        if op == "Constant":
            from onnx import numpy_helper
            self.val[n.output[0]] = numpy_helper.to_array(n.attribute[0].t).astype(np.float64)
            return
        if op in ("Quant", "BipolarQuant"):
            return self.quant(n, args)
        if consts and op != "Transpose":
            for name, value in zip(n.output, [self.fold(n, args)]):
                self.val[name] = np.asarray(value, np.float64)
            return
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            self.unsupported(n)
        self.val[n.output[0]] = handler(n, args)

    def fold(self, n, args):
        a = self.attrs(n)
        f = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide,
             "Pow": np.power, "Sqrt": np.sqrt, "Neg": np.negative, "Log": np.log,
             "Exp": np.exp, "Ceil": np.ceil, "Floor": np.floor, "Round": np.rint,
             "Abs": np.abs, "Sign": np.sign, "Reciprocal": np.reciprocal,
             "Max": np.maximum, "Min": np.minimum}.get(n.op_type)
        if f is not None:
            return f(*[x for x in args if x is not None])
        if n.op_type == "Clip":
            lo = args[1] if len(args) > 1 and args[1] is not None else -np.inf
            hi = args[2] if len(args) > 2 and args[2] is not None else np.inf
            return np.clip(args[0], lo, hi)
        if n.op_type == "Reshape":
            return args[0].reshape(args[1].astype(np.int64))
        if n.op_type in ("Identity", "Cast"):
            return args[0]
        if n.op_type == "Greater":
            return args[0] > args[1]
        if n.op_type == "Where":
            return np.where(args[0], args[1], args[2])
        if n.op_type == "Shape":
            return np.array(args[0].shape, np.float64)
        if n.op_type == "Unsqueeze" and "axes" in a:
            return np.expand_dims(args[0], tuple(a["axes"]))
        self.unsupported(n, "on constants")

    def quant(self, n, args):
        a = self.attrs(n)
        x = args[0]
        bipolar = n.op_type == "BipolarQuant"
        scale = np.asarray(args[1], np.float64)
        if bipolar:
            bits, signed, narrow = 1, True, False
        else:
            zp, bits = np.asarray(args[2]), float(np.asarray(args[3]).reshape(-1)[0])
            signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
            if np.any(zp != 0):
                raise UnsupportedError(f"ONNX node {n.name!r} (Quant) has a non-zero zero point; "
                                       "samoyed supports zero point 0 only")
            if a.get("rounding_mode", "ROUND") != "ROUND":
                raise UnsupportedError(f"ONNX node {n.name!r} (Quant) rounds with "
                                       f"{a['rounding_mode']}; only ROUND (half to even) is supported")
            if bits != int(bits) or not 1 <= bits <= (32 if isinstance(x, np.ndarray) else MAX_BITS):
                raise UnsupportedError(f"ONNX node {n.name!r} (Quant) quantizes to {bits:g} bits; "
                                       f"samoyed supports 1 to {MAX_BITS}")
            bits = int(bits)
        if isinstance(x, np.ndarray):
            if bipolar:
                ints = np.where(x >= 0, 1, -1)
            else:
                lo, hi = ir.int_range(bits, signed, narrow)
                ints = np.clip(np.rint(x / scale), lo, hi)
            self.val[n.output[0]] = _QConst(ints.astype(np.int64), scale, bits, signed, bipolar)
            return
        if scale.size != 1:
            raise UnsupportedError(f"ONNX node {n.name!r}: per-channel activation scales are not "
                                   "supported")
        lo, hi = (-1, 1) if bipolar else ir.int_range(bits, signed, narrow)
        if isinstance(x, _Pre):
            shape = self.input_shape
            out = ir.TensorType(shape, ir.Kind.INT, lo, hi, float(scale.reshape(-1)[0]), None, bipolar)
            name = self.emit(ir.Input(n.output[0], (), out, tuple(x.ops), float(scale.reshape(-1)[0]),
                                      shape))
            if x.flat:
                name = self.emit(ir.Flatten(f"{name}.flatten", (name,), ir.flatten_type(out)))
            self.val[n.output[0]] = name
            return
        t = self.types[x]
        out = ir.TensorType(t.shape, ir.Kind.INT, lo, hi, float(scale.reshape(-1)[0]), None, bipolar)
        self.val[n.output[0]] = self.emit(ir.Quant(n.output[0], (x,), out))

    def _ir(self, n, v) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, _Pre):
            raise UnsupportedError(f"ONNX node {n.name!r} ({n.op_type}) acts on the float input "
                                   "before any Quant; the input must be quantized first")
        self.unsupported(n, "this operand combination")

    def _weighted(self, n, x, w: _QConst, bias, make):
        src = self._ir(n, x)
        t = self.types[src]
        if t.kind is not ir.Kind.INT:
            raise UnsupportedError(f"ONNX node {n.name!r} ({n.op_type}) reads an unquantized tensor")
        if not isinstance(w, _QConst):
            raise UnsupportedError(f"ONNX node {n.name!r} ({n.op_type}) has float weights; "
                                   "weights must come from a Quant/BipolarQuant")
        if w.bits > MAX_BITS:
            raise UnsupportedError(f"ONNX node {n.name!r}: {w.bits}-bit weights; samoyed supports "
                                   f"1 to {MAX_BITS}")
        out_c = w.ints.shape[0]
        w_scale = np.broadcast_to(np.asarray(w.scale, np.float64).reshape(-1), (out_c,)).copy() \
            if np.asarray(w.scale).size in (1, out_c) else None
        if w_scale is None:
            raise UnsupportedError(f"ONNX node {n.name!r}: weight scale shape {np.shape(w.scale)}")
        acc_scale = float(t.scale[0]) * w_scale
        b_int, offset = None, np.zeros(out_c)
        if bias is not None:
            if isinstance(bias, _QConst):
                b_scale = np.broadcast_to(np.asarray(bias.scale, np.float64).reshape(-1), (out_c,))
                real = bias.ints.reshape(-1) * b_scale
                if np.allclose(b_scale, acc_scale, rtol=1e-6, atol=0):
                    b_int = bias.ints.reshape(-1).astype(np.int64)
            else:
                real = np.asarray(bias, np.float64).reshape(-1)
            if b_int is None:
                b_int = np.rint(real / acc_scale).astype(np.int64)
                offset = real - b_int * acc_scale
        out = ir.TensorType((out_c,), ir.Kind.ACC, 0, 0, acc_scale, offset)
        node = make(src, out, w.ints.astype(np.int8), b_int, w.bits, w_scale)
        lo, hi = ir.check_accumulator(node, [t])
        return self.emit(node.copy(out=out.replace(lo=lo, hi=hi)))

    def op_Conv(self, n, args):
        a = self.attrs(n)
        if a.get("group", 1) != 1:
            self.unsupported(n, f"group={a['group']}")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            self.unsupported(n, f"dilations={a['dilations']}")
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
            self.unsupported(n, f"auto_pad={a['auto_pad']}")
        pads = tuple(a.get("pads", [0, 0, 0, 0]))
        stride = tuple(a.get("strides", [1, 1]))
        bias = args[2] if len(args) > 2 else None
        return self._weighted(n, args[0], args[1], bias, lambda src, out, w, b, bits, ws: ir.Conv(
            n.output[0], (src,), out, w, b, stride, pads, bits, ws))

    def _linear(self, n, x, w: _QConst, bias):
        return self._weighted(n, x, w, bias, lambda src, out, wt, b, bits, ws: ir.Linear(
            n.output[0], (src,), out, wt, b, bits, ws))

    def op_Gemm(self, n, args):
        a = self.attrs(n)
        w = args[1]
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            self.unsupported(n, "transA, alpha or beta")
        if isinstance(w, _QConst) and not a.get("transB", 0):
            w = _QConst(w.ints.T, w.scale.T if np.ndim(w.scale) == 2 else w.scale, w.bits,
                        w.signed, w.bipolar)
        return self._linear(n, args[0], w, args[2] if len(args) > 2 else None)

    def op_MatMul(self, n, args):
        w = args[1]
        if not isinstance(w, _QConst):
            self.unsupported(n, "MatMul needs quantized constant weights")
        scale = w.scale.T if np.ndim(w.scale) == 2 else w.scale
        return self._linear(n, args[0], _QConst(w.ints.T, scale, w.bits, w.signed, w.bipolar), None)

    def op_Transpose(self, n, args):
        x = args[0]
        perm = self.attrs(n).get("perm")
        if isinstance(x, _QConst):
            s = x.scale if np.ndim(x.scale) < 2 else np.transpose(x.scale, perm)
            return _QConst(np.transpose(x.ints, perm), s, x.bits, x.signed, x.bipolar)
        if isinstance(x, np.ndarray):
            return np.transpose(x, perm)
        self.unsupported(n, "Transpose of activations")

    def _affine(self, n, src: str, scale, offset) -> str:
        t = self.types[src]
        c = t.channels
        def per_channel(v):
            v = np.asarray(v, np.float64)
            if v.size == 1:
                return np.full(c, float(v.reshape(-1)[0]))
            squeezed = v.reshape(-1)
            if squeezed.size == c and (v.ndim <= 1 or v.shape[-1] == c or
                                       (v.ndim >= 3 and v.shape[-3] == c)):
                return squeezed
            self.unsupported(n, f"constant of shape {v.shape} is not per-channel")
        return self.emit(ir.Affine(n.output[0], (src,), ir.TensorType(t.shape, ir.Kind.REAL),
                                   per_channel(scale), per_channel(offset)))

    def _arith(self, n, args, kind):
        x, c = args
        if isinstance(c, str) or isinstance(c, _Pre):
            if kind in ("Add", "Mul"):
                x, c = c, x
            else:
                self.unsupported(n, "constant on the left")
        if isinstance(x, str) and isinstance(c, str):
            return self.residual(n, x, c) if kind == "Add" else self.unsupported(n)
        if isinstance(c, _QConst):
            c = c.ints * c.scale
        if not isinstance(c, np.ndarray):
            self.unsupported(n)
        if isinstance(x, _Pre):
            if c.size != 1:
                self.unsupported(n, "a non-scalar on the float input")
            v = float(c.reshape(-1)[0])
            x.ops.append({"Mul": ("mul", v), "Add": ("add", v), "Sub": ("add", -v),
                          "Div": ("div", v)}[kind])
            return x
        src = self._ir(n, x)
        if kind == "Mul":
            return self._affine(n, src, c, 0.0)
        if kind == "Div":
            return self._affine(n, src, 1.0 / c, 0.0)
        return self._affine(n, src, 1.0, c if kind == "Add" else -c)

    def op_Mul(self, n, args):
        return self._arith(n, args, "Mul")

    def op_Add(self, n, args):
        return self._arith(n, args, "Add")

    def op_Sub(self, n, args):
        return self._arith(n, args, "Sub")

    def op_Div(self, n, args):
        return self._arith(n, args, "Div")

    def residual(self, n, a: str, b: str) -> str:
        ta, tb = self.types[a], self.types[b]
        if ta.kind is not ir.Kind.INT or tb.kind is not ir.Kind.INT:
            raise UnsupportedError(f"ONNX node {n.name!r} (Add) needs two quantized tensors")
        sa, sb = ta.per_tensor_scale, tb.per_tensor_scale
        if sa is None or sb is None or not np.isclose(sa, sb, rtol=1e-9, atol=0):
            raise UnsupportedError(f"ONNX node {n.name!r} (Add) adds tensors of scales {sa} and "
                                   f"{sb}; both branches need one scale")
        out = ir.TensorType(ta.shape, ir.Kind.ACC, ta.lo + tb.lo, ta.hi + tb.hi, sa)
        return self.emit(ir.Add(n.output[0], (a, b), out))

    def op_BatchNormalization(self, n, args):
        src = self._ir(n, args[0])
        gamma, beta, mean, var = (np.asarray(v, np.float64) for v in args[1:5])
        eps = self.attrs(n).get("epsilon", 1e-5)
        scale = gamma / np.sqrt(var + eps)
        return self._affine(n, src, scale, beta - mean * scale)

    def op_Relu(self, n, args):
        src = self._ir(n, args[0])
        t = self.types[src]
        out = t.replace(lo=max(t.lo, 0)) if t.kind is ir.Kind.INT else ir.TensorType(t.shape, ir.Kind.REAL)
        return self.emit(ir.Relu(n.output[0], (src,), out))

    def op_MaxPool(self, n, args):
        a = self.attrs(n)
        if a.get("ceil_mode", 0):
            self.unsupported(n, "ceil_mode=1")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            self.unsupported(n, "dilations")
        k = tuple(a["kernel_shape"])
        src = self._ir(n, args[0])
        t = self.types[src]
        return self.emit(ir.MaxPool(n.output[0], (src,), t.replace(shape=t.shape), k,
                                    tuple(a.get("strides", [1, 1])), tuple(a.get("pads", [0] * 4))))

    def _global_avg(self, n, src):
        t = self.types[src]
        if t.kind is not ir.Kind.INT or len(t.shape) != 3:
            self.unsupported(n, "average pool of a non-quantized tensor")
        h, w = t.shape[1:]
        out = ir.TensorType((t.channels, 1, 1), ir.Kind.ACC, h * w * t.lo, h * w * t.hi,
                            t.scale / (h * w))
        return self.emit(ir.AvgPool(n.output[0], (src,), out))

    def op_GlobalAveragePool(self, n, args):
        return self._global_avg(n, self._ir(n, args[0]))

    def op_AveragePool(self, n, args):
        src = self._ir(n, args[0])
        a = self.attrs(n)
        if tuple(a["kernel_shape"]) != self.types[src].shape[1:] or any(a.get("pads", [0])):
            self.unsupported(n, "only a global average (kernel = input size) is supported")
        return self._global_avg(n, src)

    def _flatten(self, n, x):
        if isinstance(x, _Pre):
            x.flat = True
            return x
        src = self._ir(n, x)
        return self.emit(ir.Flatten(n.output[0], (src,), ir.flatten_type(self.types[src])))

    def op_Flatten(self, n, args):
        if self.attrs(n).get("axis", 1) != 1:
            self.unsupported(n, "axis other than 1")
        return self._flatten(n, args[0])

    def op_Reshape(self, n, args):
        target = [int(v) for v in np.asarray(args[1]).reshape(-1)]
        if len(target) != 2 or target[1] not in (-1, int(np.prod(
                self.input_shape if isinstance(args[0], _Pre) else self.types[args[0]].shape))):
            self.unsupported(n, f"reshape to {target} (only to N x -1)")
        return self._flatten(n, args[0])

    def op_Identity(self, n, args):
        return args[0]

    op_Dropout = op_Identity


def from_onnx(path: Path, input_shape=None) -> ir.Graph:
    """The raw IR of a QONNX model file."""
    import onnx
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise CompileError(f"{path}: not a readable ONNX file ({e})") from None
    b = _Builder(model, input_shape)
    for n in model.graph.node:
        b.node(n)
    # A QuantTensor output is exported as (value, scale, zero point, bit width...): the
    # value comes first and the metadata are constants; anything else is ambiguous.
    outs = [o.name for o in model.graph.output if isinstance(b.val.get(o.name), str)]
    if len(outs) != 1:
        raise UnsupportedError(f"the ONNX graph has {len(outs)} computed outputs; samoyed "
                               "needs one")
    out = b.val.get(outs[0])
    if not isinstance(out, str):
        raise UnsupportedError("the ONNX graph's output is not computed from its quantized input")
    if not b.nodes or not isinstance(b.nodes[0], ir.Input):
        raise UnsupportedError("the ONNX graph has no input Quant node")
    graph = ir.Graph(Path(path).stem, b.nodes, out)
    used = {i for node in graph.nodes for i in node.inputs} | {graph.output}
    return graph.with_nodes([node for node in graph.nodes if node.name in used])
