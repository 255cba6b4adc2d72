"""The model zoo: Brevitas QAT ConvNets and their plain-PyTorch float twins.

`build(name)` returns the quantized network, `build_float(name)` the same architecture
with no quantizers. Our own models are written once as a layer list (`_SPECS`) that a
`_Layers` factory turns into either quantized or float modules, so the twins cannot drift
apart. FINN's networks from `brevitas_examples.bnn_pynq` (TFC/SFC/LFC/CNV) are built from
brevitas's own classes; their float twin is derived by replacing each quantized module
with its float counterpart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import ZooError

MIN_BITS, MAX_BITS = 1, 8


class Scaling(enum.Enum):
    """How quantizer scales are restricted."""

    POW2 = "pow2"    # power-of-two scales: requantization is an exact shift
    FLOAT = "float"  # learned float scales: requantization needs a multiplier


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about a model name."""

    name: str
    dataset: str
    input_shape: tuple[int, int, int]
    description: str
    default_weight_bits: int = 8
    default_act_bits: int = 8
    finn: bool = False
    layers: tuple = field(default=(), repr=False)


# Layer lists of our own models. ("conv", out_ch, kernel, stride, padding) is conv + BN +
# ReLU; ("pool", k) a k×k max pool; ("fc", out) a hidden linear + BN + ReLU; ("head", out)
# the final linear layer with an int32 bias.
_SPECS = {
    "digits-cnn": ModelInfo(
        "digits-cnn", "digits", (1, 8, 8),
        "3 conv (16-32-32) + BN + ReLU + pool, linear head; 8x8 digits",
        layers=(("conv", 16, 3, 1, 1), ("conv", 32, 3, 1, 1), ("pool", 2),
                ("conv", 32, 3, 1, 1), ("pool", 2), ("head", 10))),
    "fmnist-cnn": ModelInfo(
        "fmnist-cnn", "fashion-mnist", (1, 28, 28),
        "3 conv (32-32-64) + BN + ReLU + pool, FC 128, linear head; sized for an 8x8 array",
        layers=(("conv", 32, 3, 1, 1), ("pool", 2), ("conv", 32, 3, 1, 1), ("pool", 2),
                ("conv", 64, 3, 1, 1), ("pool", 2), ("fc", 128), ("head", 10))),
    "lenet5": ModelInfo(
        "lenet5", "fashion-mnist", (1, 28, 28),
        "LeNet-5 (6-16 conv 5x5, 120-84 FC), no batch norm",
        layers=(("conv", 6, 5, 1, 2), ("pool", 2), ("conv", 16, 5, 1, 0), ("pool", 2),
                ("fc", 120), ("fc", 84), ("head", 10))),
}

# FINN's networks: (brevitas_examples arch, default dataset, input shape, shipped bit widths).
_FINN = {
    "tfc": ("FC", "mnist", (1, 28, 28), (64, 64, 64), ((1, 1), (1, 2), (2, 2))),
    "sfc": ("FC", "mnist", (1, 28, 28), (256, 256, 256), ((1, 1), (1, 2), (2, 2))),
    "lfc": ("FC", "mnist", (1, 28, 28), (1024, 1024, 1024), ((1, 1), (1, 2))),
    "cnv": ("CNV", "cifar10", (3, 32, 32), None, ((1, 1), (1, 2), (2, 2))),
}
for _name, (_arch, _ds, _shape, _feat, _widths) in _FINN.items():
    _SPECS[_name] = ModelInfo(
        _name, _ds, _shape,
        f"FINN bnn_pynq {_name.upper()} (shipped: "
        + ", ".join(f"{w}w{a}a" for w, a in _widths) + ")",
        default_weight_bits=_widths[0][0], default_act_bits=_widths[0][1], finn=True)

DEFAULT_MODEL = "fmnist-cnn"


def names() -> list[str]:
    """All model names, our own first, then FINN's."""
    return list(_SPECS)


def info(name: str) -> ModelInfo:
    """The zoo entry of `name`, or a `ZooError` listing the choices."""
    try:
        return _SPECS[name]
    except KeyError:
        raise ZooError(f"unknown model {name!r}; choose one of: {', '.join(_SPECS)}") from None


def _check_bits(what: str, bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ZooError(f"{what} must be an integer from {MIN_BITS} to {MAX_BITS}, not {bits!r}")
    return bits


def _scaling(scaling) -> Scaling:
    try:
        return Scaling(scaling)
    except ValueError:
        raise ZooError(f"unknown scaling {scaling!r}; choose one of: "
                       f"{', '.join(s.value for s in Scaling)}") from None


class _Layers:
    """Makes the modules of one architecture, quantized or float."""

    def __init__(self, quant: bool, weight_bits=8, act_bits=8, scaling=Scaling.POW2,
                 batch_norm=True):
        self.quant = quant
        self.weight_bits, self.act_bits = weight_bits, act_bits
        self.scaling = scaling
        self.batch_norm = batch_norm

    def _weight_quant(self):
        import brevitas.quant as bq
        if self.weight_bits == 1:
            return dict(weight_quant=bq.SignedBinaryWeightPerTensorConst)
        quant = (bq.Int8WeightPerTensorFixedPoint if self.scaling is Scaling.POW2
                 else bq.Int8WeightPerTensorFloat)
        return dict(weight_quant=quant, weight_bit_width=self.weight_bits)

    def _act_quant(self, signed: bool, bits: int):
        import brevitas.quant as bq
        pow2 = self.scaling is Scaling.POW2
        if signed:
            quant = bq.Int8ActPerTensorFixedPoint if pow2 else bq.Int8ActPerTensorFloat
        else:
            quant = bq.Uint8ActPerTensorFixedPoint if pow2 else bq.Uint8ActPerTensorFloat
        return dict(act_quant=quant, bit_width=bits, return_quant_tensor=True)

    def input(self) -> nn.Module:
        # Images are in [0, 1]: an unsigned 8-bit input quantizer keeps every pixel level.
        if not self.quant:
            return nn.Identity()
        import brevitas.nn as qnn
        return qnn.QuantIdentity(**self._act_quant(signed=False, bits=8))

    def conv(self, cin, cout, kernel, stride, padding) -> nn.Module:
        bias = not self.batch_norm
        if not self.quant:
            return nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias)
        import brevitas.nn as qnn
        from brevitas.quant import Int32Bias
        return qnn.QuantConv2d(cin, cout, kernel, stride, padding, bias=bias,
                               bias_quant=Int32Bias if bias else None, **self._weight_quant())

    def linear(self, fin, fout, bias: bool, out_quant: bool = False) -> nn.Module:
        if not self.quant:
            return nn.Linear(fin, fout, bias=bias)
        import brevitas.nn as qnn
        from brevitas.quant import Int32Bias
        return qnn.QuantLinear(fin, fout, bias=bias, bias_quant=Int32Bias if bias else None,
                               return_quant_tensor=out_quant, **self._weight_quant())

    def norm(self, channels: int, dims: int) -> nn.Module:
        if not self.batch_norm:
            return nn.Identity()
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)

    def relu(self) -> nn.Module:
        if not self.quant:
            return nn.ReLU()
        import brevitas.nn as qnn
        return qnn.QuantReLU(**self._act_quant(signed=False, bits=self.act_bits))


def _from_spec(info: ModelInfo, make: _Layers) -> nn.Sequential:
    channels, height, width = info.input_shape
    layers: list[nn.Module] = [make.input()]
    features = None  # set once the net is flattened
    for kind, *args in info.layers:
        if kind == "conv":
            out, k, s, p = args
            layers += [make.conv(channels, out, k, s, p), make.norm(out, 2), make.relu()]
            channels = out
            height, width = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
        elif kind == "pool":
            (k,) = args
            layers.append(nn.MaxPool2d(k))
            height, width = height // k, width // k
        elif kind in ("fc", "head"):
            if features is None:
                layers.append(nn.Flatten())
                features = channels * height * width
            (out,) = args
            if kind == "fc":
                layers += [make.linear(features, out, bias=not make.batch_norm),
                           make.norm(out, 1), make.relu()]
            else:
                layers.append(make.linear(features, out, bias=True))
            features = out
        else:  # pragma: no cover - the specs are ours
            raise AssertionError(f"bad layer kind {kind}")
    return nn.Sequential(*layers)


def _finn_net(name: str, weight_bits: int, act_bits: int) -> nn.Module:
    from brevitas_examples.bnn_pynq.models.CNV import CNV
    from brevitas_examples.bnn_pynq.models.FC import FC
    arch, _, shape, features, _ = _FINN[name]
    # FINN feeds TFC/SFC/LFC the input at the activation width and CNV 8-bit images.
    if arch == "FC":
        return FC(num_classes=10, weight_bit_width=weight_bits, act_bit_width=act_bits,
                  in_bit_width=act_bits, in_channels=shape[0], out_features=list(features))
    return CNV(num_classes=10, weight_bit_width=weight_bits, act_bit_width=act_bits,
               in_bit_width=8, in_ch=shape[0])


def build(name: str, weight_bits: int | None = None, act_bits: int | None = None, *,
          scaling: Scaling | str = Scaling.POW2, batch_norm: bool = True) -> nn.Module:
    """The Brevitas network `name` with weights and activations of the given bit widths.

    Bit widths default to 8 for our models and to the first shipped width for FINN's.
    `scaling` picks power-of-two (default) or float quantizer scales; `batch_norm=False`
    drops batch norm from our models (the conv/linear layers then get int32 biases).
    """
    entry = info(name)
    weight_bits = _check_bits("weight bit width",
                              entry.default_weight_bits if weight_bits is None else weight_bits)
    act_bits = _check_bits("activation bit width",
                           entry.default_act_bits if act_bits is None else act_bits)
    scaling = _scaling(scaling)
    if entry.finn:
        if scaling is not Scaling.POW2 or not batch_norm:
            raise ZooError(f"{name} is FINN's network as shipped: it has no scaling or "
                           "batch-norm options")
        net = _finn_net(name, weight_bits, act_bits)
    else:
        net = _from_spec(entry, _Layers(True, weight_bits, act_bits, scaling, batch_norm))
    net.zoo_name = name
    return net


def _floatify(module: nn.Module) -> nn.Module:
    """Replace every Brevitas layer of `module` by its float counterpart (in place)."""
    import brevitas.nn as qnn
    for child_name, child in module.named_children():
        if isinstance(child, qnn.QuantConv2d):
            new = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size,
                            child.stride, child.padding, bias=child.bias is not None)
        elif isinstance(child, qnn.QuantLinear):
            new = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
        elif isinstance(child, (qnn.QuantIdentity, qnn.QuantHardTanh)):
            # FINN's activations are quantizers over [-1, 1]: their float twin is hardtanh.
            new = nn.Hardtanh(-1.0, 1.0)
        elif isinstance(child, qnn.QuantReLU):
            new = nn.ReLU()
        else:
            _floatify(child)
            continue
        setattr(module, child_name, new)
    return module


def build_float(name: str, *, batch_norm: bool = True) -> nn.Module:
    """The float twin of `name`: the same architecture and parameter names, no quantizers."""
    entry = info(name)
    if entry.finn:
        net = _floatify(_finn_net(name, entry.default_weight_bits, entry.default_act_bits))
    else:
        net = _from_spec(entry, _Layers(False, batch_norm=batch_norm))
    net.zoo_name = name
    return net


def load_float_weights(quant_net: nn.Module, float_net: nn.Module) -> None:
    """Start QAT from trained float weights: copy every parameter/buffer the twins share."""
    missing = quant_net.load_state_dict(float_net.state_dict(), strict=False)
    if missing.unexpected_keys:
        raise AssertionError(f"float twin has parameters the QAT net lacks: "
                             f"{missing.unexpected_keys}")


@torch.no_grad()
def calibrate(net: nn.Module, name: str, batches: int = 3, batch: int = 16,
              seed: int = 0) -> nn.Module:
    """Set an untrained net's activation scales and BN statistics from a few train-mode
    passes on random inputs, then switch it to eval; for tests and benchmarks that need a
    realistic quantized net without training one."""
    torch.manual_seed(seed)
    net.train()
    for _ in range(batches):
        net(example_input(name, batch))
    return net.eval()


@torch.no_grad()
def example_input(name: str, batch: int = 1) -> torch.Tensor:
    """A random input of the model's shape, in [0, 1] like the data sets."""
    return torch.rand(batch, *info(name).input_shape)
