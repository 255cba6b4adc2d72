"""Frontend for Brevitas `nn.Module`s: torch.fx trace → raw integer IR.

The network is traced with Brevitas and torch.nn modules as leaves, then interpreted once
on a random input of `input_shape` (eval mode), so every quantizer's scale, bit width and
signedness is read from Brevitas itself and every shape is checked as the IR is built.
Integer weights come from `layer.quant_weight().int()`, int biases from the layer's own
bias quantizer, activation ranges from the act quantizers' proxies.

Each activation quantizer gets an *oracle*: the torch modules between the producing
accumulator and the quantizer (batch norm, ReLU, the quantizer itself), evaluated on the
accumulator's real value, so `derive_requant` can fit the requantization to Brevitas's own
float function rather than to an idealized one.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from . import ir
from .errors import AccumulatorOverflowError, CompileError, ShapeError, UnsupportedError

SUPPORTED = ("QuantIdentity (input and activations), QuantReLU, QuantHardTanh, QuantConv2d "
             "(groups=1, dilation=1, zero padding), QuantLinear, BatchNorm1d/2d, TensorNorm, "
             "ReLU, MaxPool2d, AdaptiveAvgPool2d(1) / global AvgPool2d, Flatten / view(N, -1), "
             "Dropout, Identity, residual add of two quantized tensors")
MAX_BITS = 8


def _brevitas_classes():
    import brevitas.nn as qnn
    from brevitas.nn.quant_layer import QuantNonLinearActLayer
    return qnn, QuantNonLinearActLayer


def _is_tensor_norm(m: nn.Module) -> bool:
    return type(m).__name__ == "TensorNorm" and hasattr(m, "running_var")


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (type(m).__module__.startswith("brevitas.") or _is_tensor_norm(m)
                or super().is_leaf_module(m, qualname))


@dataclass
class _Pre:
    """The float network input before its quantizer: pending pre-ops and a flatten."""

    ops: list
    flat: bool = False


def _is_binary(proxy) -> bool:
    """Whether an act quant proxy is Brevitas's binary (bipolar, ±1) quantizer.

    A signed 1-bit *integer* quantizer is not bipolar: its range is [-1, 0].
    """
    fused = getattr(proxy, "fused_activation_quant_proxy", None)
    quant = getattr(fused, "tensor_quant", None)
    return quant is not None and "Binary" in type(quant).__name__


def _scalar(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().reshape(()).item())
    return None


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _t(x) -> float:
    return float(torch.as_tensor(x).detach().reshape(-1)[0])


def _per_channel(x, channels: int) -> np.ndarray:
    arr = torch.as_tensor(x).detach().double().reshape(-1).numpy()
    return np.full(channels, arr[0]) if arr.size == 1 else arr.copy()


class _Converter(fx.Interpreter):
    """Runs the traced graph and builds the IR node by node as it goes."""

    def __init__(self, gm: fx.GraphModule, name: str, input_shape: tuple[int, ...]):
        super().__init__(gm)
        self.qnn, self.act_layer = _brevitas_classes()
        self.modules = dict(gm.named_modules())
        self.name = name
        self.input_shape = input_shape
        self.nodes: list[ir.Node] = []
        self.types: dict[str, ir.TensorType] = {}
        self.val: dict[str, object] = {}       # fx node name -> IR tensor name or _Pre
        self.torch_op: dict[str, object] = {}  # IR node name -> callable for oracles
        self.acc_is_conv: dict[str, bool] = {}

    # -- bookkeeping --------------------------------------------------------------

    def _emit(self, node: ir.Node, torch_op=None) -> str:
        name = node.name
        i = 1
        while name in self.types:
            i += 1
            name = f"{node.name}#{i}"
        node = node.copy(name=name)
        in_types = [self.types[n] for n in node.inputs]
        shape = ir.infer_shape(node, in_types)
        if shape != node.out.shape:
            node = node.copy(out=node.out.replace(shape=shape))
        self.nodes.append(node)
        self.types[name] = node.out
        if torch_op is not None:
            self.torch_op[name] = torch_op
        return name

    def _data_args(self, n: fx.Node) -> list:
        found = []
        fx.node.map_arg((n.args, n.kwargs), lambda a: found.append(a) if a.name in self.val else None)
        return found

    def _ir_input(self, n: fx.Node, what: str) -> str:
        args = self._data_args(n)
        if len(args) != 1:
            raise UnsupportedError(f"{what} {n.name!r} takes {len(args)} data inputs; expected one")
        v = self.val[args[0].name]
        if isinstance(v, _Pre):
            raise UnsupportedError(
                f"{what} {n.name!r} acts on the float network input; the input must first go "
                "through an input quantizer (QuantIdentity)")
        return v

    def _unsupported(self, n: fx.Node, kind: str):
        name = n.target if n.op == "call_module" else n.name
        raise UnsupportedError(f"layer {name!r} ({kind}) is not supported; supported: {SUPPORTED}")

    # -- interpreter hooks ----------------------------------------------------------

    def run_node(self, n: fx.Node):
        if n.op == "placeholder":
            result = super().run_node(n)
            self.val[n.name] = _Pre([])
            return result
        if n.op == "output":
            arg = n.args[0]
            if not isinstance(arg, fx.Node) or arg.name not in self.val \
                    or isinstance(self.val[arg.name], _Pre):
                raise UnsupportedError("the network must return one quantized tensor")
            self.result = self.val[arg.name]
            return super().run_node(n)
        if not self._data_args(n):
            return super().run_node(n)          # constants, shapes, devices
        if n.op == "call_module":
            module = self.modules[n.target]
            self._pre_check_module(n, module)
            result = super().run_node(n)
            self._convert_module(n, module, result)
            return result
        try:
            result = super().run_node(n)
        except RuntimeError as e:
            raise ShapeError(f"op {n.name!r} failed on the shapes that input_shape="
                             f"{self.input_shape} gives: {e}") from None
        if isinstance(result, (torch.Tensor,)) or type(result).__name__.endswith("QuantTensor"):
            self._convert_function(n, result)
        return result

    # -- modules --------------------------------------------------------------------

    def _pre_check_module(self, n: fx.Node, m: nn.Module):
        """Check shapes before torch sees them, so errors name the layer and input_shape."""
        if isinstance(m, (self.qnn.QuantConv2d, self.qnn.QuantLinear)):
            src = self._ir_input(n, type(m).__name__)
            shape = self.types[src].shape
            if isinstance(m, self.qnn.QuantConv2d):
                if len(shape) != 3 or shape[0] != m.in_channels:
                    raise ShapeError(f"layer {n.target!r} (QuantConv2d) expects {m.in_channels} "
                                     f"input channels (C, H, W) but receives shape {shape} "
                                     f"from input_shape={self.input_shape}")
            elif len(shape) != 1 or shape[0] != m.in_features:
                raise ShapeError(f"layer {n.target!r} (QuantLinear) expects {m.in_features} input "
                                 f"features but receives shape {shape} ({math.prod(shape)} "
                                 f"values) from input_shape={self.input_shape}")

    def _convert_module(self, n: fx.Node, m: nn.Module, result):
        name = n.target
        qnn = self.qnn
        if isinstance(m, self.act_layer):
            self._activation(n, m)
        elif isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear)):
            self._weighted(n, m)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) or _is_tensor_norm(m):
            src = self._ir_input(n, type(m).__name__)
            t = self.types[src]
            a, b = self._affine_of(m, t.channels, name)
            self.val[n.name] = self._emit(ir.Affine(name, (src,), ir.TensorType(t.shape, ir.Kind.REAL),
                                                    a, b), torch_op=m)
        elif isinstance(m, nn.ReLU):
            self.val[n.name] = self._relu(n, name)
        elif isinstance(m, nn.MaxPool2d):
            self.val[n.name] = self._max_pool(n, name, m.kernel_size, m.stride, m.padding,
                                              m.dilation, m.ceil_mode)
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
            self.val[n.name] = self._avg_pool(n, m, name)
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                self._unsupported(n, f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim})")
            self.val[n.name] = self._flatten(n, name)
        elif isinstance(m, (nn.Dropout, nn.Identity)):
            self.val[n.name] = self.val[self._data_args(n)[0].name]
        else:
            self._unsupported(n, type(m).__name__)

    def _act_meta(self, n: fx.Node, m, proxy, x) -> ir.TensorType:
        qt = proxy(x)
        if not type(qt).__name__ == "IntQuantTensor":
            raise UnsupportedError(f"layer {n.target!r} ({type(m).__name__}): its quantizer gives "
                                   f"{type(qt).__name__}; only integer quantizers are supported")
        bits = _t(qt.bit_width)
        if np.any(torch.as_tensor(qt.zero_point).detach().numpy() != 0):
            raise UnsupportedError(f"layer {n.target!r} ({type(m).__name__}) has a non-zero zero "
                                   "point; samoyed supports zero point 0 only (symmetric or "
                                   "unsigned quantizers)")
        if bits != int(bits) or not 1 <= bits <= MAX_BITS:
            raise UnsupportedError(f"layer {n.target!r} ({type(m).__name__}) quantizes to "
                                   f"{bits:g} bits; samoyed supports 1 to {MAX_BITS}")
        bits, signed = int(bits), bool(qt.signed)
        scale = torch.as_tensor(qt.scale).detach().double().reshape(-1).numpy()
        if scale.size != 1:
            raise UnsupportedError(f"layer {n.target!r} ({type(m).__name__}) has per-channel "
                                   "activation scales; activations need one scale per tensor")
        bipolar = _is_binary(proxy)
        if bipolar and not (bits == 1 and signed):
            raise UnsupportedError(f"layer {n.target!r}: binary quantizer of {bits} bits, "
                                   f"signed={signed}")
        if bipolar:
            lo, hi = -1, 1
        else:
            lo, hi = ir.int_range(bits, signed, bool(proxy.is_narrow_range))
        return ir.TensorType(tuple(x.shape[1:]), ir.Kind.INT, lo, hi, scale, None, bipolar)

    def _activation(self, n: fx.Node, m):
        arg = self._data_args(n)[0]
        x = self.env[arg]
        src = self.val[arg.name]
        if m.input_quant.is_quant_enabled:
            self._unsupported(n, f"{type(m).__name__} with an input quantizer")
        if not m.act_quant.is_quant_enabled:
            if isinstance(m, self.qnn.QuantReLU):
                self.val[n.name] = self._relu(n, n.target)
            else:
                self.val[n.name] = src          # an identity
            return
        out = self._act_meta(n, m, m.act_quant, x)
        if isinstance(src, _Pre):
            self.val[n.name] = self._input(n, src, out)
            return
        self.val[n.name] = self._quant(n.target, src, out, m.act_quant)

    def _quant(self, name: str, src: str, out: ir.TensorType, proxy) -> str:
        t = self.types[src]
        out = out.replace(shape=t.shape)
        node = ir.Quant(name, (src,), out, oracle=self._oracle(src, proxy))
        return self._emit(node)

    def _oracle(self, src: str, proxy):
        """Brevitas's function from the producing accumulator to this quantizer's ints."""
        chain = []
        name = src
        by_name = {node.name: node for node in self.nodes}
        while True:
            node = by_name[name]
            if isinstance(node, (ir.Affine, ir.Relu)) and node.out.kind is ir.Kind.REAL:
                chain.append(self.torch_op[name])
            elif isinstance(node, ir.MaxPool) and node.out.kind is not ir.Kind.INT:
                pass                       # commutes with the monotonic chain
            else:
                break
            name = node.inputs[0]
        acc = by_name[name]
        if acc.out.kind is ir.Kind.REAL:
            return None
        chain.reverse()
        t = acc.out
        scale, offset = t.scale.copy(), t.offset.copy()
        spatial = len(t.shape) == 3

        def oracle(a: np.ndarray) -> np.ndarray:
            real = a * scale[None, :] + offset[None, :]
            x = torch.from_numpy(real.astype(np.float32))
            if spatial:
                x = x[:, :, None, None]
            with torch.no_grad():
                for op in chain:
                    x = op(x)
                q = proxy(x)
                # value / scale rather than .int(): Brevitas flags bipolar +1 as invalid.
                q = torch.round(q.value / q.scale)
            return q.reshape(q.shape[0], q.shape[1]).numpy().astype(np.int64)
        return oracle

    def _input(self, n: fx.Node, pre: _Pre, out: ir.TensorType) -> str:
        name = n.target if isinstance(n.target, str) else n.name
        shape = tuple(self.input_shape)
        node = ir.Input(name, (), out.replace(shape=shape), tuple(pre.ops),
                        float(out.scale[0]), shape)
        src = self._emit(node)
        if pre.flat:
            src = self._emit(ir.Flatten(f"{name}.flatten", (src,),
                                        ir.flatten_type(out.replace(shape=shape))))
        return src

    def _weighted(self, n: fx.Node, m):
        qnn = self.qnn
        kind = type(m).__name__
        name = n.target
        src = self._ir_input(n, kind)
        x = self.types[src]
        if x.kind is not ir.Kind.INT:
            raise UnsupportedError(f"layer {name!r} ({kind}) reads an unquantized tensor; put an "
                                   "activation quantizer before it")
        if m.input_quant.is_quant_enabled:
            self._unsupported(n, f"{kind} with an input quantizer")
        if isinstance(m, qnn.QuantConv2d):
            if m.groups != 1:
                self._unsupported(n, f"QuantConv2d with groups={m.groups}")
            if tuple(m.dilation) != (1, 1):
                self._unsupported(n, f"QuantConv2d with dilation={tuple(m.dilation)}")
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                self._unsupported(n, f"QuantConv2d with padding={m.padding!r}, "
                                     f"padding_mode={m.padding_mode!r}")
        qw = m.quant_weight()
        if np.any(torch.as_tensor(qw.zero_point).detach().numpy() != 0):
            raise UnsupportedError(f"layer {name!r} ({kind}) has a non-zero weight zero point; "
                                   "samoyed supports zero point 0 only")
        bits = _t(qw.bit_width)
        if bits != int(bits) or not 1 <= bits <= MAX_BITS:
            raise UnsupportedError(f"layer {name!r} ({kind}) has {bits:g}-bit weights; samoyed "
                                   f"supports 1 to {MAX_BITS}")
        if not qw.signed and bits > 7:
            raise UnsupportedError(f"layer {name!r} ({kind}) has unsigned 8-bit weights; they do "
                                   "not fit the int8 datapath")
        weight = qw.int().detach().numpy().astype(np.int8)
        out_c = weight.shape[0]
        w_scale = _per_channel(qw.scale, out_c)
        acc_scale = float(x.scale[0]) * w_scale
        bias, offset = self._bias(n, m, qw, acc_scale)
        out = ir.TensorType((out_c,), ir.Kind.ACC, 0, 0, acc_scale, offset)
        if isinstance(m, qnn.QuantConv2d):
            ph, pw = _pair(m.padding)
            node = ir.Conv(name, (src,), out, weight, bias, _pair(m.stride), (ph, pw, ph, pw),
                           int(bits), w_scale)
        else:
            node = ir.Linear(name, (src,), out, weight, bias, int(bits), w_scale)
        lo, hi = ir.check_accumulator(node, [x])
        node = node.copy(out=out.replace(lo=lo, hi=hi))
        result = self._emit(node)
        if m.output_quant.is_quant_enabled:
            y = self.env[n]
            value = y.value if hasattr(y, "value") else y
            meta = self._act_meta(n, m, m.output_quant, value)
            result = self._quant(f"{name}.output_quant", result, meta, m.output_quant)
        self.val[n.name] = result

    def _bias(self, n: fx.Node, m, qw, acc_scale: np.ndarray):
        """(int bias in accumulator LSBs, residual real offset) of a conv/linear layer.

        An int bias quantizer at the accumulator's scale (Int32Bias) is taken as is. A
        float bias b is rounded half to even to the accumulator LSB, b_int = round(b / s),
        and the remainder b - b_int*s is kept as the accumulator's real offset, which the
        requantization fit absorbs exactly (or the output dequantization, at the end).
        """
        if m.bias is None:
            return None, np.zeros(len(acc_scale))
        if m.bias_quant.is_quant_enabled:
            arg = self._data_args(n)[0]
            x = self.env[arg]
            if not type(x).__name__ == "IntQuantTensor":
                x = self._as_quant_tensor(arg, x)
            qb = m.bias_quant(m.bias, x, qw)
            if np.any(torch.as_tensor(qb.zero_point).detach().numpy() != 0):
                raise UnsupportedError(f"layer {n.target!r}: non-zero bias zero point")
            b_scale = _per_channel(qb.scale, len(acc_scale))
            b_int = qb.int().detach().numpy().astype(np.int64)
            if np.allclose(b_scale, acc_scale, rtol=1e-6, atol=0):
                return b_int, np.zeros(len(acc_scale))
            real = b_int * b_scale
        else:
            real = m.bias.detach().double().numpy()
        b_int = np.rint(real / acc_scale).astype(np.int64)
        if np.any(np.abs(b_int) > ir.INT32_MAX):
            raise AccumulatorOverflowError(
                f"layer {n.target!r}: its bias needs up to {int(np.abs(b_int).max())} "
                "accumulator LSBs, beyond int32")
        return b_int, real - b_int * acc_scale

    def _as_quant_tensor(self, arg: fx.Node, x):
        from brevitas.quant_tensor import IntQuantTensor
        t = self.types[self.val[arg.name]]
        scale = torch.tensor(float(t.scale[0]))
        bits = torch.tensor(float(t.bits))
        return IntQuantTensor(x, scale, torch.tensor(0.0), bits, t.signed, False)

    def _affine_of(self, m, channels: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        if _is_tensor_norm(m):
            a = float(m.weight) / math.sqrt(float(m.running_var) + m.eps)
            b = float(m.bias) - float(m.running_mean) * a
            return np.full(channels, a), np.full(channels, b)
        if m.num_features != channels:
            raise ShapeError(f"layer {name!r} ({type(m).__name__}) has {m.num_features} features "
                             f"but its input has {channels} channels")
        if not m.track_running_stats or m.running_mean is None:
            raise UnsupportedError(f"layer {name!r} ({type(m).__name__}) has no running "
                                   "statistics; batch norm folds only with running stats")
        var = m.running_var.detach().double().numpy()
        mean = m.running_mean.detach().double().numpy()
        w = m.weight.detach().double().numpy() if m.affine else np.ones(channels)
        b = m.bias.detach().double().numpy() if m.affine else np.zeros(channels)
        a = w / np.sqrt(var + m.eps)
        return a, b - mean * a

    def _relu(self, n: fx.Node, name: str) -> str:
        src = self._ir_input(n, "ReLU")
        t = self.types[src]
        out = t.replace(lo=max(t.lo, 0)) if t.kind is ir.Kind.INT else ir.TensorType(t.shape, ir.Kind.REAL)
        return self._emit(ir.Relu(name, (src,), out), torch_op=torch.relu)

    def _max_pool(self, n, name, kernel, stride, padding, dilation, ceil_mode) -> str:
        src = self._ir_input(n, "MaxPool2d")
        if ceil_mode:
            self._unsupported(n, "MaxPool2d with ceil_mode=True")
        if _pair(dilation) != (1, 1):
            self._unsupported(n, f"MaxPool2d with dilation={dilation}")
        k = _pair(kernel)
        s = _pair(stride) if stride not in (None, ()) else k
        ph, pw = _pair(padding)
        t = self.types[src]
        return self._emit(ir.MaxPool(name, (src,), t.replace(shape=t.shape), k, s, (ph, pw, ph, pw)))

    def _avg_pool(self, n, m, name) -> str:
        src = self._ir_input(n, type(m).__name__)
        t = self.types[src]
        if len(t.shape) != 3 or t.kind is not ir.Kind.INT:
            self._unsupported(n, f"{type(m).__name__} on a {t.kind.value} tensor of shape {t.shape}")
        h, w = t.shape[1:]
        if isinstance(m, nn.AdaptiveAvgPool2d):
            ok = _pair(m.output_size if m.output_size is not None else 1) == (1, 1)
        else:
            ok = (_pair(m.kernel_size) == (h, w) and _pair(m.padding) == (0, 0)
                  and not m.ceil_mode)
        if not ok:
            self._unsupported(n, f"{type(m).__name__} other than a global average to 1x1")
        out = ir.TensorType((t.channels, 1, 1), ir.Kind.ACC, h * w * t.lo, h * w * t.hi,
                            t.scale / (h * w))
        return self._emit(ir.AvgPool(name, (src,), out))

    def _flatten(self, n: fx.Node, name: str) -> str:
        v = self.val[self._data_args(n)[0].name]
        if isinstance(v, _Pre):
            v.flat = True
            return v
        t = self.types[v]
        return self._emit(ir.Flatten(name, (v,), ir.flatten_type(t)))

    # -- functions and methods ------------------------------------------------------------

    def _convert_function(self, n: fx.Node, result):
        target = n.target
        data = self._data_args(n)
        names = {operator.add: "add", operator.iadd: "add", torch.add: "add",
                 operator.mul: "mul", torch.mul: "mul", operator.sub: "sub", torch.sub: "sub",
                 operator.truediv: "div", torch.div: "div", torch.flatten: "flatten",
                 torch.relu: "relu", nn.functional.relu: "relu",
                 nn.functional.max_pool2d: "max_pool2d"}
        fname = target if isinstance(target, str) else names.get(target)
        first = self.val[data[0].name]
        if fname in ("view", "reshape", "flatten"):
            if tuple(result.shape[1:]) != (math.prod(result.shape[1:]),) or len(result.shape) != 2:
                self._unsupported(n, f"{fname} to shape {tuple(result.shape)} (only flattening to "
                                     "(N, -1) is supported)")
            self.val[n.name] = self._flatten(n, n.name)
            return
        if isinstance(first, _Pre) and fname in ("mul", "add", "sub", "div") and len(data) == 1:
            const = [a for a in n.args if not (isinstance(a, fx.Node) and a.name in self.val)]
            c = _scalar(self.env[const[0]] if isinstance(const[0], fx.Node) else const[0]) \
                if const else None
            if c is None:
                self._unsupported(n, f"{fname} of the input by a non-scalar")
            if fname == "sub" and n.args[0] is not data[0]:
                self._unsupported(n, "constant minus the input")
            if fname == "div" and n.args[0] is not data[0]:
                self._unsupported(n, "constant divided by the input")
            op = {"mul": ("mul", c), "add": ("add", c), "sub": ("add", -c), "div": ("div", c)}[fname]
            first.ops.append(op)
            self.val[n.name] = first
            return
        if fname == "add" and len(data) == 2:
            self.val[n.name] = self._add(n, [self.val[d.name] for d in data])
            return
        if fname == "relu":
            self.val[n.name] = self._relu(n, n.name)
            return
        if fname == "max_pool2d":
            args = list(n.args[1:]) + [None] * 5
            kw = n.kwargs
            self.val[n.name] = self._max_pool(
                n, n.name, kw.get("kernel_size", args[0]), kw.get("stride", args[1]),
                kw.get("padding", args[2] or 0), kw.get("dilation", args[3] or 1),
                kw.get("ceil_mode", args[4] or False))
            return
        what = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        self._unsupported(n, f"function {what}")

    def _add(self, n: fx.Node, srcs: list) -> str:
        if any(isinstance(s, _Pre) for s in srcs):
            self._unsupported(n, "add on the float network input")
        a, b = (self.types[s] for s in srcs)
        if a.kind is not ir.Kind.INT or b.kind is not ir.Kind.INT:
            raise UnsupportedError(f"residual add {n.name!r} needs two quantized tensors; got "
                                   f"{a.kind.value} and {b.kind.value}")
        if a.bipolar or b.bipolar:
            self._unsupported(n, "add of bipolar tensors")
        sa, sb = a.per_tensor_scale, b.per_tensor_scale
        if sa is None or sb is None or not math.isclose(sa, sb, rel_tol=1e-9):
            raise UnsupportedError(f"residual add {n.name!r} adds tensors of scales {sa} and {sb}; "
                                   "quantize both branches with one shared quantizer")
        out = ir.TensorType(a.shape, ir.Kind.ACC, a.lo + b.lo, a.hi + b.hi, sa)
        return self._emit(ir.Add(n.name, tuple(srcs), out))


def from_module(net: nn.Module, input_shape: tuple[int, ...], name: str | None = None) -> ir.Graph:
    """The raw IR of a Brevitas network for inputs of shape (N, *input_shape)."""
    name = name or getattr(net, "zoo_name", None) or type(net).__name__
    try:
        gm = fx.GraphModule(net, _Tracer().trace(net))
    except Exception as e:  # noqa: BLE001 - tracing errors are the user's network
        raise UnsupportedError(f"cannot trace {type(net).__name__} with torch.fx: {e}") from None
    was_training = net.training
    net.eval()
    try:
        conv = _Converter(gm, name, tuple(input_shape))
        with torch.no_grad():
            conv.run(torch.rand(2, *input_shape))
    except CompileError as e:
        # torch.fx appends "While executing ..." to the message; ours already names the layer.
        raise type(e)(str(e).split("\n\nWhile executing")[0]) from None
    finally:
        net.train(was_training)
    if not conv.nodes or not isinstance(conv.nodes[0], ir.Input):
        raise UnsupportedError("the network has no input quantizer: its first layer must be a "
                               "QuantIdentity (or another activation quantizer) on the input")
    graph = ir.Graph(name, conv.nodes, conv.result)
    used = {i for node in graph.nodes for i in node.inputs} | {graph.output}
    return graph.with_nodes([node for node in graph.nodes if node.name in used])


__all__ = ["from_module", "CompileError"]
