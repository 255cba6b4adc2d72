"""Each pass alone, on the raw IR of a small net, checked by the float64 raw reference."""

import numpy as np
import pytest
from compiler_nets import random_net

import compiler
from compiler import ir, passes
from sim import reference


@pytest.fixture(scope="module")
def raw_bn():
    net, shape = random_net(103, batch_norm=True)
    return compiler.frontend(net, shape), shape


def _x(graph, n=8):
    t = graph.input.out
    return np.random.default_rng(1).integers(t.lo, t.hi + 1, (n,) + t.shape)


def test_fold_batch_norm_keeps_function(raw_bn):
    raw, _ = raw_bn
    folded = ir.verify(passes.fold_batch_norm(raw))
    assert any(isinstance(n, ir.Affine) for n in raw)
    assert not any(isinstance(n, ir.Affine) for n in folded)
    x = _x(raw)
    assert np.array_equal(reference.run(folded, x), reference.run(raw, x))


def test_fold_relu_sets_clamp_and_keeps_function(raw_bn):
    raw, _ = raw_bn
    g = passes.sink_max_pool(passes.fold_batch_norm(raw))
    folded = ir.verify(passes.fold_relu(g))
    assert not any(isinstance(n, ir.Relu) and g[n.inputs[0]].out.kind is not ir.Kind.INT
                   for n in folded)
    x = _x(raw)
    assert np.array_equal(reference.run(folded, x), reference.run(g, x))


def test_normalize_signs_makes_scales_non_negative(raw_bn):
    raw, _ = raw_bn
    g = passes.fold_relu(passes.sink_max_pool(passes.fold_batch_norm(raw)))
    signed = ir.verify(passes.normalize_signs(g))
    for q in (n for n in signed if isinstance(n, ir.Quant)):
        assert np.all(signed[q.inputs[0]].out.scale >= 0)
    x = _x(raw)
    assert np.array_equal(reference.run(signed, x), reference.run(g, x))


def test_derive_requant_and_fuse_match_float_semantics(raw_bn):
    raw, _ = raw_bn
    g = raw
    for p in passes.PIPELINE[:4]:
        g = p(g)
    lowered = passes.lower(raw, check=True)
    x = _x(raw, 32)
    # Without an oracle the fit reproduces the exact float64 affine map on every input.
    no_oracle = g.with_nodes([n.copy(oracle=None) if isinstance(n, ir.Quant) else n for n in g])
    exact = passes.lower(no_oracle)
    assert np.array_equal(reference.run(exact, x), reference.run(no_oracle, x))
    assert any(getattr(n, "requant", None) is not None for n in lowered)


def test_shift_requant_is_pure_shift():
    net, shape = random_net(4)
    raw = compiler.frontend(net, shape)
    g = raw
    for p in passes.PIPELINE[:5]:
        g = p(g)
    rqs = [n.requant for n in g if isinstance(n, ir.Requantize)]
    assert rqs and all(r.method == "shift" and np.all(r.offset == 0) for r in rqs)
    for r in rqs:
        assert np.all((r.mult == 1) | (r.shift == 0))


def test_fuse_and_absorb_flatten():
    net, shape = random_net(1)
    lowered = passes.lower(compiler.frontend(net, shape), check=True)
    assert not any(isinstance(n, (ir.Flatten, ir.Requantize)) for n in lowered)
    assert isinstance(lowered[lowered.output], ir.Linear)


def test_round_half_even_shift():
    v = np.array([5, 6, 7, -5, -6, -7, 4, 12, -12])
    assert reference.round_half_even_shift(v, 1).tolist() == [2, 3, 4, -2, -3, -4, 2, 6, -6]
    assert reference.round_half_even_shift(v, 3).tolist() == [1, 1, 1, -1, -1, -1, 0, 2, -2]
    assert reference.round_half_even_shift(np.array([10]), 2).tolist() == [2]   # 2.5 -> 2
    assert reference.round_half_even_shift(np.array([14]), 2).tolist() == [4]   # 3.5 -> 4
