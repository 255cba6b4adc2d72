"""Every zoo model builds, runs, and carries the quantizers it promises."""

import brevitas.nn as qnn
import pytest
import torch
from brevitas.quant import Int32Bias
from torch import nn

from models import zoo
from models.errors import ZooError

QUANT_TYPES = (qnn.QuantConv2d, qnn.QuantLinear, qnn.QuantIdentity, qnn.QuantReLU)


def quant_layers(net):
    return [m for m in net.modules() if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear))]


@pytest.mark.parametrize("name", zoo.names())
def test_build_and_float_twin_share_architecture(name):
    net, twin = zoo.build(name), zoo.build_float(name)
    x = zoo.example_input(name, batch=3)
    net.eval(), twin.eval()
    assert net(x).shape == (3, 10) and twin(x).shape == (3, 10)
    assert not any(isinstance(m, QUANT_TYPES) for m in twin.modules())
    # Same parameter names and shapes: QAT can start from the float weights.
    float_params = {k: v.shape for k, v in twin.named_parameters()}
    quant_params = {k: v.shape for k, v in net.named_parameters() if k in float_params}
    assert quant_params == float_params
    zoo.load_float_weights(net, twin)
    for layer_q, layer_f in zip(quant_layers(net), [m for m in twin.modules()
                                                     if isinstance(m, (nn.Conv2d, nn.Linear))]):
        assert torch.equal(layer_q.weight, layer_f.weight)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_bit_widths_reach_every_quantizer(bits):
    net = zoo.build("fmnist-cnn", weight_bits=bits, act_bits=bits)
    net.eval()
    net(zoo.example_input("fmnist-cnn", 2))
    for layer in quant_layers(net):
        qw = layer.quant_weight()
        assert int(qw.bit_width) == bits
        assert qw.signed
        levels = torch.unique(qw.int())
        assert len(levels) <= 2 ** bits
        if bits == 1:  # bipolar: {-1, +1}
            assert set(levels.tolist()) <= {-1, 1}
    relus = [m for m in net.modules() if isinstance(m, qnn.QuantReLU)]
    assert relus and all(int(m.act_quant.bit_width()) == bits for m in relus)
    inp = net[0]
    assert isinstance(inp, qnn.QuantIdentity) and int(inp.act_quant.bit_width()) == 8


def test_defaults_pow2_scales_and_int32_head_bias():
    net = zoo.build("fmnist-cnn")
    net.eval()
    out = net[0](zoo.example_input("fmnist-cnn"))
    scale = float(out.scale)
    assert scale == 2.0 ** round(torch.log2(torch.tensor(scale)).item())
    head = quant_layers(net)[-1]
    assert isinstance(head, qnn.QuantLinear) and head.bias is not None
    assert issubclass(head.bias_quant.quant_injector, Int32Bias)
    assert head.bias_quant.quant_injector.bit_width == 32


def test_float_scaling_and_no_batch_norm():
    net = zoo.build("digits-cnn", scaling="float", batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(layer.bias is not None for layer in quant_layers(net))
    net.eval()
    assert net(zoo.example_input("digits-cnn")).shape == (1, 10)


def test_finn_models_have_their_shipped_widths():
    net = zoo.build("cnv")
    assert {int(layer.quant_weight().bit_width) for layer in quant_layers(net)} == {1}
    net = zoo.build("tfc", weight_bits=2, act_bits=2)
    assert {int(layer.quant_weight().bit_width) for layer in quant_layers(net)} == {2}
    assert zoo.info("cnv").dataset == "cifar10" and zoo.info("tfc").dataset == "mnist"


def test_default_datasets():
    assert zoo.info("fmnist-cnn").dataset == "fashion-mnist"
    assert zoo.info("digits-cnn").dataset == "digits"
    assert zoo.DEFAULT_MODEL == "fmnist-cnn"


@pytest.mark.parametrize("bits", [0, 9, -1, 2.5, True])
def test_bad_bit_widths(bits):
    with pytest.raises(ZooError, match=f"weight bit width must be an integer from 1 to 8, "
                                       f"not {bits!r}"):
        zoo.build("fmnist-cnn", weight_bits=bits)


def test_unknown_names_list_choices():
    with pytest.raises(ZooError, match="unknown model 'resnet'; choose one of: digits-cnn, "
                                       "fmnist-cnn, lenet5, tfc, sfc, lfc, cnv"):
        zoo.build("resnet")
    with pytest.raises(ZooError, match="unknown scaling 'log'; choose one of: pow2, float"):
        zoo.build("fmnist-cnn", scaling="log")
    with pytest.raises(ZooError, match="cnv is FINN's network as shipped"):
        zoo.build("cnv", batch_norm=False)
