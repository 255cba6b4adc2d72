"""Property tests: random Brevitas nets compile and agree with Brevitas's integers."""

import numpy as np
import pytest
import torch
from compiler_nets import random_net

import compiler
from compiler import compare, ir


def _agree(net, shape, n=16, seed=0):
    cm = compiler.compile(net, input_shape=shape, check=True)
    x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 0.5
    ints, out = compare.brevitas_ints(net, cm, x)
    assert np.array_equal(cm.quantize_input(x.numpy()), ints[cm.graph.input.name])
    return cm, ints, out


@pytest.mark.parametrize("seed", range(12))
def test_pow2_random_net_equals_brevitas_end_to_end(seed):
    net, shape = random_net(seed)
    cm, ints, out = _agree(net, shape)
    y = cm.reference(ints[cm.graph.input.name])
    assert np.array_equal(y, ints[cm.graph.output])
    for row in compare.layer_agreement(cm, ints):
        assert row.equal == row.elements, row
    # Pure power-of-two nets need no multiplier: every requantization is a shift.
    for node in cm.graph:
        rq = getattr(node, "requant", None)
        if rq is not None:
            assert rq.method == "shift" and rq.exact and np.all(rq.offset == 0)


@pytest.mark.parametrize("seed", range(100, 110))
def test_batch_norm_random_net_per_layer(seed):
    net, shape = random_net(seed, batch_norm=True)
    cm, ints, out = _agree(net, shape)
    rows = compare.layer_agreement(cm, ints)
    assert rows
    for row in rows:
        assert row.max_lsb <= 1, row
        assert row.fraction >= 0.999, row
    _, argmax = compare.end_to_end(cm, ints, out)
    assert argmax >= 0.9


def test_requant_fits_are_exact_for_batch_norm_nets():
    net, shape = random_net(101, batch_norm=True)
    cm = compiler.compile(net, input_shape=shape)
    fits = [n.requant for n in cm.graph if getattr(n, "requant", None) is not None]
    assert fits and all(rq.exact for rq in fits)
    assert all(np.all((rq.mult > 0) & (rq.mult < 2**31)) for rq in fits)


def test_lowered_graph_verifies_and_has_no_raw_ops():
    net, shape = random_net(3, batch_norm=True)
    cm = compiler.compile(net, input_shape=shape)
    ir.verify(cm.graph, ir.Stage.LOWERED)
    assert not any(isinstance(n, (ir.Quant, ir.Affine)) for n in cm.graph)
