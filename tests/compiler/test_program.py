"""The back end: programs run by the program simulator give exactly the reference's
integers, for zoo nets and random nets, on several array shapes."""

import numpy as np
import pytest
import torch
from compiler_nets import random_net

import compiler
from compiler import ir
from compiler.program import MemoryFitError, im2col, InputPacking, lower
from hw import AcceleratorConfig
from hw.isa import Opcode
from models import zoo
from sim import cycles, machine


CONFIGS = [(4, 4), (8, 8), (16, 16), (3, 5)]


def big(rows, cols, **kw):
    return AcceleratorConfig(rows=rows, cols=cols, act_depth=8192, weight_depth=1 << 16, **kw)


def calibrated(name, **kw):
    return zoo.calibrate(zoo.build(name, **kw), name)


@pytest.fixture(scope="module")
def zoo_models():
    out = {}
    for name, kw in [("digits-cnn", {}), ("fmnist-cnn", {}), ("lenet5", {}),
                     ("tfc", {"weight_bits": 2, "act_bits": 2}), ("cnv", {})]:
        out[name] = compiler.compile(calibrated(name, **kw))
    return out


@pytest.mark.parametrize("rows, cols", CONFIGS)
@pytest.mark.parametrize("name", ["digits-cnn", "fmnist-cnn", "lenet5", "tfc"])
def test_zoo_machine_equals_reference(zoo_models, name, rows, cols):
    cm = zoo_models[name]
    x = cm.quantize_input(zoo.example_input(name, 3).numpy())
    program = lower(cm.graph, big(rows, cols))
    assert np.array_equal(machine.run_frames(program, x), cm.reference(x))


@pytest.mark.slow
def test_cnv_machine_equals_reference(zoo_models):
    cm = zoo_models["cnv"]
    x = cm.quantize_input(zoo.example_input("cnv", 1).numpy())
    program = lower(cm.graph, AcceleratorConfig(rows=8, cols=8, act_depth=1 << 14,
                                                weight_depth=1 << 18, param_depth=4096))
    assert np.array_equal(machine.run_frames(program, x), cm.reference(x))


def test_standalone_pool_gives_pools_their_own_descriptors(zoo_models):
    """A config without pool-on-write (standalone_pool) gets each fused max pool back as
    its conv (full size) and a MAXPOOL descriptor, with the reference's integers."""
    cm = zoo_models["digits-cnn"]
    x = cm.quantize_input(zoo.example_input("digits-cnn", 2).numpy())
    fused = lower(cm.graph, big(4, 4))
    split = lower(cm.graph, big(4, 4, standalone_pool=True))
    pools = sum(d.op is Opcode.CONV and d.pool_k > 1 for d in fused.descriptors)
    assert pools > 0
    assert not any(d.op is Opcode.CONV and d.pool_k > 1 for d in split.descriptors)
    assert sum(d.op is Opcode.MAXPOOL for d in split.descriptors) == pools
    assert len(split.descriptors) == len(fused.descriptors) + pools
    assert np.array_equal(machine.run_frames(split, x), cm.reference(x))


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_random_nets_machine_equals_reference(seed, batch_norm):
    net, shape = random_net(seed, batch_norm=batch_norm)
    cm = compiler.compile(net, input_shape=shape)
    rng = np.random.default_rng(seed)
    x = cm.quantize_input((rng.random((4, *shape)) * 2 - 0.5).astype(np.float32))
    ref = cm.reference(x)
    for rows, cols in CONFIGS:
        program = lower(cm.graph, big(rows, cols))
        assert np.array_equal(machine.run_frames(program, x), ref), (rows, cols)


def test_first_conv_is_k_packed(zoo_models):
    program = lower(zoo_models["fmnist-cnn"].graph, big(8, 8))
    first = program.descriptors[0]
    assert (first.kh, first.kw, first.in_c, first.in_h) == (1, 1, 9, 28)
    assert program.packing.im2col and program.packing.kernel == (3, 3)


@pytest.mark.parametrize("name", ["digits-cnn", "fmnist-cnn", "lenet5", "tfc"])
def test_without_k_packing_the_first_layer_runs_as_it_is(zoo_models, name):
    cm = zoo_models[name]
    x = cm.quantize_input(zoo.example_input(name, 2).numpy())
    packed, plain = lower(cm.graph, big(8, 8)), lower(cm.graph, big(8, 8), k_pack=False)
    assert np.array_equal(machine.run_frames(plain, x), cm.reference(x))
    assert len(plain.descriptors) == len(packed.descriptors)
    data, width, group = plain.input_groups(x[0])
    assert (width, group) == (plain.input.shape[0], 8 * -(-plain.input.shape[0] // 8))
    if name == "tfc":
        # A first linear layer is packed either way: one pixel of the image's 784 bytes.
        assert plain.packing.im2col and plain.descriptors == packed.descriptors
        assert len(data) == width == x[0].size
    else:
        assert not plain.packing.im2col and plain.input.shape == cm.input_shape
        conv = next(n for n in cm.graph.nodes if isinstance(n, ir.Conv))
        assert (plain.descriptors[0].kh, plain.descriptors[0].kw) == conv.weight.shape[2:]
        assert len(data) == x[0].size          # a byte a pixel and channel: no padding


def test_compile_takes_k_pack_as_a_bool(zoo_models):
    with pytest.raises(compiler.CompileError, match="k_pack must be True or False, not 'no'"):
        compiler.compile(calibrated("digits-cnn"), k_pack="no")


def test_first_linear_is_k_packed(zoo_models):
    program = lower(zoo_models["tfc"].graph, big(8, 8))
    first = program.descriptors[0]
    assert (first.kh, first.kw, first.in_c, first.in_h) == (1, 1, 784, 1)


def test_im2col_order():
    x = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    cols = im2col(x, InputPacking((2, 2), (1, 1), (0, 0, 0, 0), True))
    assert cols.shape == (8, 2, 2)
    # channel (i*kw + j)*C + c holds x[c, oy + i, ox + j]
    assert cols[(1 * 2 + 0) * 2 + 1, 0, 1] == x[1, 1, 1]


def test_model_that_does_not_fit_names_layer_memory_and_fix(zoo_models):
    cfg = AcceleratorConfig(rows=8, cols=8, act_depth=8192, weight_depth=4096)
    with pytest.raises(MemoryFitError, match=r"layer 16 does not fit the weight memory: needs "
                                             r"12,992 words \(103,936 bytes\), 4,096 available "
                                             r"\(32,768 bytes\); the smallest config that fits "
                                             r"sets weight_depth=16384"):
        lower(zoo_models["fmnist-cnn"].graph, cfg)


def test_fmnist_estimate_reports_layers(zoo_models):
    program = lower(zoo_models["fmnist-cnn"].graph, big(8, 8))
    est = cycles.estimate(program.descriptors, 8, 8)
    assert est.macs == 3_010_304
    assert [layer.bound for layer in est.layers[:5]] == ["compute"] * 5
    assert est.utilization >= 0.85
    assert 0 < est.utilization <= 1


def test_inspect_shows_modelled_cycles(zoo_models, tmp_path, capsys):
    from host import cli
    cm = zoo_models["digits-cnn"]
    path = tmp_path / "net.samoyed"
    cm.save(path)
    assert cli.main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "accelerator 8x8: modelled cycles per frame" in text
    assert f"total: {cm.estimate().cycles:,} cycles/frame" in text


def test_inspect_reports_a_model_that_does_not_fit(zoo_models, tmp_path, capsys):
    from host import cli
    cm = compiler.compile(calibrated("fmnist-cnn"),
                          config=AcceleratorConfig(rows=8, cols=8, weight_depth=1024))
    path = tmp_path / "net.samoyed"
    cm.save(path)
    assert cli.main(["inspect", str(path)]) == 0
    assert "accelerator: layer 8 does not fit the weight memory" in capsys.readouterr().out


@pytest.mark.parametrize("seed", range(8))
def test_torch_backend_is_bit_exact_on_random_nets(seed):
    import host
    net, shape = random_net(seed, batch_norm=bool(seed % 2))
    cm = compiler.compile(net, input_shape=shape)
    rng = np.random.default_rng(seed)
    x = cm.quantize_input((rng.random((16, *shape)) * 2 - 0.5).astype(np.float32))
    assert np.array_equal(host.Session(cm, "torch:cpu").run(x).ints, cm.reference(x))


class ResidualNet(torch.nn.Module):
    """conv → relu → conv → relu, a residual add of the two, global average pool, linear."""

    def __init__(self, signed_branch=False):
        import brevitas.nn as qnn
        import brevitas.quant as bq
        from brevitas.quant import Int32Bias
        super().__init__()
        act = dict(act_quant=bq.Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
        wq = dict(weight_quant=bq.Int8WeightPerTensorFixedPoint, bias=True, bias_quant=Int32Bias)
        self.inp = qnn.QuantIdentity(**act)
        self.conv1 = qnn.QuantConv2d(3, 10, 3, padding=1, **wq)
        self.act1 = qnn.QuantReLU(**act)
        self.conv2 = qnn.QuantConv2d(10, 10, 3, padding=1, **wq)
        self.act2 = qnn.QuantReLU(act_quant=self.act1.act_quant, return_quant_tensor=True)
        self.post = qnn.QuantReLU(**act)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.pool_q = qnn.QuantIdentity(**act)
        self.fc = qnn.QuantLinear(10, 5, **wq)

    def forward(self, x):
        x = self.inp(x)
        y = self.act1(self.conv1(x))
        z = self.act2(self.conv2(y))
        return self.fc(self.pool_q(self.pool(self.post(y + z))).flatten(1))


@torch.no_grad()
def test_residual_add_and_average_pool_run_exactly():
    import host
    torch.manual_seed(0)
    net = ResidualNet()
    net.train()
    for _ in range(3):
        net(torch.rand(8, 3, 9, 9))
    net.eval()
    cm = compiler.compile(net, input_shape=(3, 9, 9))
    ops = [type(n).__name__ for n in cm.graph.nodes]
    assert "Add" in ops and "AvgPool" in ops
    x = cm.quantize_input(np.random.default_rng(0).random((6, 3, 9, 9)).astype(np.float32))
    ref = cm.reference(x)
    for rows, cols in CONFIGS:
        program = lower(cm.graph, big(rows, cols))
        assert np.array_equal(machine.run_frames(program, x), ref), (rows, cols)
    assert [d.op.name for d in program.descriptors] == ["CONV", "CONV", "ADD", "AVGPOOL",
                                                        "CONV", "END"]
    assert np.array_equal(host.Session(cm, "torch:cpu").run(x).ints, ref)
    est = cycles.estimate(program.descriptors, 3, 5)
    add = est.layers[2]
    # 4 groups of 3 channels, two taps (the two inputs) per pixel, one tile of 81.
    from hw.accelerator import conv_cycles
    assert add.cycles == conv_cycles(3, 5, 2 * 81, 4, several_tiles=False)
