"""Random small Brevitas nets for the compiler tests (built directly, never trained)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _act(bits: int, signed: bool, relu: bool, bipolar: bool = False):
    import brevitas.nn as qnn
    import brevitas.quant as bq
    if bipolar:
        return qnn.QuantIdentity(act_quant=bq.SignedBinaryActPerTensorConst, return_quant_tensor=True)
    if relu:
        return qnn.QuantReLU(act_quant=bq.Uint8ActPerTensorFixedPoint, bit_width=bits,
                             return_quant_tensor=True)
    quant = bq.Int8ActPerTensorFixedPoint if signed else bq.Uint8ActPerTensorFixedPoint
    return qnn.QuantIdentity(act_quant=quant, bit_width=bits, return_quant_tensor=True)


def _weights(bits: int) -> dict:
    import brevitas.quant as bq
    if bits == 1:
        # Brevitas's default binary scale is 0.1; a power-of-two one keeps shifts exact.
        class Binary(bq.SignedBinaryWeightPerTensorConst):
            scaling_const = 1.0
        return dict(weight_quant=Binary)
    return dict(weight_quant=bq.Int8WeightPerTensorFixedPoint, weight_bit_width=bits)


def random_net(seed: int, batch_norm: bool = False) -> tuple[nn.Module, tuple[int, int, int]]:
    """A random conv net with power-of-two scales; returns (net, input_shape).

    Kernels 1-5, strides 1-3, paddings, odd sizes, channel counts not multiples of 8,
    bits 1-8, max pools (some overlapping or padded), optional batch norm with
    non-trivial statistics (some negative scales), int32 biases, a linear head.
    """
    import brevitas.nn as qnn
    from brevitas.quant import Int32Bias
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(5, 14)), int(rng.integers(5, 14))
    shape = (c, h, w)
    layers: list[nn.Module] = [_act(8, bool(rng.integers(2)), False)]
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(1, 6))
        if k > min(h, w):
            break
        s, p = int(rng.integers(1, 4)), int(rng.integers(0, k // 2 + 1))
        out = int(rng.choice([3, 5, 6, 7, 9, 11, 13]))
        wb, ab = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        bias = not batch_norm or bool(rng.integers(2))
        layers.append(qnn.QuantConv2d(c, out, k, s, p, bias=bias,
                                      bias_quant=Int32Bias if bias else None, **_weights(wb)))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        kind = rng.integers(4)
        layers.append(_act(ab, kind == 1, kind == 0, bipolar=(kind == 3 and batch_norm)))
        c, h, w = out, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if min(h, w) >= 3 and rng.integers(2):
            pk = int(rng.integers(2, 4))
            ps, pp = int(rng.integers(1, 4)), int(rng.integers(0, pk // 2 + 1))
            layers.append(nn.MaxPool2d(pk, ps, pp))
            h, w = (h + 2 * pp - pk) // ps + 1, (w + 2 * pp - pk) // ps + 1
    layers.append(nn.Flatten())
    features = c * h * w
    if rng.integers(2):
        hidden = int(rng.integers(3, 20))
        wb, ab = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        layers += [qnn.QuantLinear(features, hidden, bias=True, bias_quant=Int32Bias, **_weights(wb))]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(_act(ab, False, True))
        features = hidden
    layers.append(qnn.QuantLinear(features, int(rng.integers(2, 11)), bias=True,
                                  bias_quant=Int32Bias, return_quant_tensor=True,
                                  **_weights(int(rng.integers(2, 9)))))
    net = nn.Sequential(*layers)
    calibrate(net, shape, rng)
    return net, shape


@torch.no_grad()
def calibrate(net: nn.Module, shape, rng) -> None:
    """A few train-mode passes set activation scales and BN statistics; then BN gets
    random affine parameters (some negative) so folding is not trivial."""
    net.train()
    for _ in range(3):
        net(torch.rand(8, *shape) * 2 - 0.5)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            sign = torch.from_numpy(np.where(rng.random(n) < 0.2, -1.0, 1.0)).float()
            m.weight.uniform_(0.3, 1.5).mul_(sign)
            m.bias.normal_(0, 0.3)
            m.running_var.mul_(torch.empty(n).uniform_(0.5, 2))
    net.eval()
