"""Bad input: unsupported layers, overflow, shapes, zero points — errors that name them."""

import pytest
import torch
from torch import nn

import brevitas.nn as qnn
import brevitas.quant as bq
from brevitas.quant import Int32Bias

import compiler
from compiler import ir


def _inp():
    return qnn.QuantIdentity(act_quant=bq.Uint8ActPerTensorFixedPoint, return_quant_tensor=True)


def _conv(cin, cout, k=3, **kw):
    return qnn.QuantConv2d(cin, cout, k, weight_quant=bq.Int8WeightPerTensorFixedPoint,
                           bias=False, **kw)


def test_unsupported_module_is_named():
    net = nn.Sequential(_inp(), _conv(1, 4), nn.Sigmoid())
    with pytest.raises(compiler.UnsupportedError, match=r"layer '2' \(Sigmoid\) is not supported; "
                                                        r"supported: QuantIdentity"):
        compiler.compile(net, input_shape=(1, 8, 8))


def test_grouped_conv_rejected():
    net = nn.Sequential(_inp(), _conv(2, 4, groups=2))
    with pytest.raises(compiler.UnsupportedError, match=r"QuantConv2d with groups=2"):
        compiler.compile(net, input_shape=(2, 8, 8))


def test_shape_mismatch_names_layer_and_input_shape():
    net = nn.Sequential(_inp(), _conv(3, 4))
    with pytest.raises(compiler.ShapeError, match=r"layer '1' \(QuantConv2d\) expects 3 input "
                                                  r"channels .* input_shape=\(1, 8, 8\)"):
        compiler.compile(net, input_shape=(1, 8, 8))
    lin = nn.Sequential(_inp(), nn.Flatten(), qnn.QuantLinear(10, 2, bias=False))
    with pytest.raises(compiler.ShapeError, match=r"expects 10 input features but receives "
                                                  r"shape \(64,\)"):
        compiler.compile(lin, input_shape=(1, 8, 8))


def test_nonzero_zero_point_rejected():
    net = nn.Sequential(qnn.QuantIdentity(act_quant=bq.ShiftedUint8ActPerTensorFloat,
                                          return_quant_tensor=True), _conv(1, 2))
    net.train()
    net(torch.rand(4, 1, 6, 6) * 2 - 1)   # negative inputs: a non-zero zero point
    with pytest.raises(compiler.UnsupportedError, match=r"non-zero zero point"):
        compiler.compile(net, input_shape=(1, 6, 6))


def test_bits_above_8_rejected():
    net = nn.Sequential(qnn.QuantIdentity(act_quant=bq.Uint8ActPerTensorFixedPoint, bit_width=12,
                                          return_quant_tensor=True), _conv(1, 2))
    with pytest.raises(compiler.UnsupportedError, match=r"quantizes to 12 bits; samoyed supports "
                                                        r"1 to 8"):
        compiler.compile(net, input_shape=(1, 6, 6))


def test_accumulator_overflow_names_layer_and_bound():
    conv = qnn.QuantConv2d(1, 1, 3, bias=True, bias_quant=Int32Bias,
                           weight_quant=bq.Int8WeightPerTensorFixedPoint)
    net = nn.Sequential(_inp(), conv)
    with torch.no_grad():
        conv.bias.fill_(1e9)   # ~2**31 accumulator LSBs of bias alone
    with pytest.raises(compiler.AccumulatorOverflowError, match=r"layer '1'.*beyond"):
        compiler.compile(net, input_shape=(1, 6, 6))


def test_input_must_be_quantized():
    net = nn.Sequential(_conv(1, 2))
    with pytest.raises(compiler.UnsupportedError, match="input quantizer"):
        compiler.compile(net, input_shape=(1, 6, 6))


def test_reference_refuses_bad_input():
    net = nn.Sequential(_inp(), _conv(1, 2))
    cm = compiler.compile(net, input_shape=(1, 6, 6))
    from sim.reference import ReferenceError
    with pytest.raises(ReferenceError, match=r"expected \(N, 1, 6, 6\)"):
        cm.reference(torch.zeros(1, 1, 5, 6, dtype=torch.int64).numpy())
    with pytest.raises(ReferenceError, match=r"outside the input quantizer's range 0..255"):
        cm.reference(torch.full((1, 1, 6, 6), 300).numpy())


def test_verifier_catches_bad_requant():
    net = nn.Sequential(_inp(), _conv(1, 2),
                        qnn.QuantReLU(act_quant=bq.Uint8ActPerTensorFixedPoint))
    cm = compiler.compile(net, input_shape=(1, 6, 6))
    conv = next(n for n in cm.graph if isinstance(n, ir.Conv))
    conv.requant.mult[0] = 0
    with pytest.raises(compiler.IRError, match="multiplier outside"):
        ir.verify(cm.graph)


def test_descriptor_field_overflow_names_the_layer():
    # A 17x17 kernel on the second layer (the first is K-packed into a 1x1 conv) does
    # not fit the descriptor's 4-bit kernel fields.
    net = nn.Sequential(_inp(), _conv(1, 4, k=1), qnn.QuantReLU(return_quant_tensor=True),
                        _conv(4, 4, k=17))
    with pytest.raises(compiler.UnsupportedError,
                       match=r"descriptor 1 \(CONV, layer .*\): field kh=17 does not fit "
                             r"unsigned\(4\) \[0, 15\]: the accelerator's descriptor cannot "
                             r"express this layer"):
        compiler.compile(net, input_shape=(1, 20, 20)).program   # lowered on first use
