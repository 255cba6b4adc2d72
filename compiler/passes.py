"""The compiler's passes: small named rewrites `(Graph) -> Graph`, run in `PIPELINE` order.

None mutates its input. Each leaves a graph that `ir.verify` accepts at the raw stage;
after the last one, the graph is lowered (no Affine, Quant or real-valued tensor left).

1. `fold_batch_norm`   Affine (batch norm, TensorNorm, Mul/Add by constants) after an
                       accumulator → the accumulator's per-channel real scale and offset.
2. `sink_max_pool`     a max pool on real values moves after the Relu/Quant that follows
                       it (both are monotonic non-decreasing, so they commute).
3. `fold_relu`         Relu on real values before a quantizer → the quantizer's lo = 0.
4. `normalize_signs`   channels whose real scale is negative get negated weights and bias,
                       so every requantization multiplier is positive (0 < M < 2**31).
5. `derive_requant`    Quant → Requantize: power-of-two ratio → exact shift; otherwise
                       (float scales, folded batch norm) a per-channel 31-bit M, B, S
                       fitted to the quantizer's step function (`compiler.requant`).
6. `fuse_layers`       conv/linear/avgpool/add + requantize (+ a non-overlapping max pool
                       after a conv) → one fused node.
7. `absorb_flatten`    Flatten feeding a Linear disappears: the Linear reads (C, H, W)
                       in C-major order, which leaves the layout to the lowering.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import ir
from . import requant as rq
from .errors import UnsupportedError

Pass = Callable[[ir.Graph], ir.Graph]


def _single_consumer(graph: ir.Graph, name: str) -> ir.Node | None:
    users = graph.consumers(name)
    if len(users) == 1 and graph.output != name:
        return users[0]
    return None


def _replace(graph: ir.Graph, old: ir.Node, new: ir.Node) -> ir.Graph:
    return graph.with_nodes([new if n is old else n for n in graph.nodes])


# --- 1. batch norm ---------------------------------------------------------------

def fold_batch_norm(graph: ir.Graph) -> ir.Graph:
    """Fold every Affine into the real scale/offset of the accumulator it follows."""
    while True:
        affine = next((n for n in graph if isinstance(n, ir.Affine)), None)
        if affine is None:
            return graph
        src = graph[affine.inputs[0]]
        if src.out.kind is not ir.Kind.ACC or _single_consumer(graph, src.name) is not affine:
            raise UnsupportedError(
                f"layer {affine.name!r} (batch norm / affine) follows {src.name!r} "
                f"({src.OP}, {src.out.kind.value} tensor); only a batch norm directly after "
                "a conv/linear/pool/add whose output nothing else reads can be folded")
        t = src.out
        folded = t.replace(scale=t.scale * affine.scale, offset=t.offset * affine.scale
                           + affine.offset)
        graph = _replace(graph, src, src.copy(out=folded))
        graph = graph.without(affine.name).rewire(affine.name, src.name)
        # Keep the layer name the user knows for the output tensor when it was the output.


# --- 2. max pool before a quantizer ----------------------------------------------

def sink_max_pool(graph: ir.Graph) -> ir.Graph:
    """Swap `MaxPool → Relu/Quant` on real values into `Relu/Quant → MaxPool`."""
    changed = True
    while changed:
        changed = False
        for pool in graph:
            if not isinstance(pool, ir.MaxPool) or pool.out.kind is ir.Kind.INT:
                continue
            user = _single_consumer(graph, pool.name)
            if not isinstance(user, (ir.Relu, ir.Quant)):
                raise UnsupportedError(
                    f"layer {pool.name!r} (max pool) pools real values that no quantizer "
                    "follows; put the pool after the activation quantizer")
            src_type = graph[pool.inputs[0]].out
            new_user = user.copy(inputs=pool.inputs,
                                 out=user.out.replace(shape=src_type.shape))
            new_pool = pool.copy(inputs=(user.name,), out=user.out.replace(shape=pool.out.shape))
            # The pool takes the quantizer's place in the order; names stay with the ops.
            nodes = []
            for n in graph.nodes:
                if n is pool:
                    nodes.append(new_user)
                elif n is user:
                    nodes.append(new_pool)
                else:
                    nodes.append(n)
            graph = graph.with_nodes(nodes)
            # Consumers of the quantizer now read the pool.
            nodes = [n.copy(inputs=tuple(pool.name if i == user.name else i for i in n.inputs))
                     if n is not new_pool and user.name in n.inputs else n for n in graph.nodes]
            out = pool.name if graph.output == user.name else graph.output
            graph = graph.with_nodes(nodes, out)
            changed = True
            break
    return graph


# --- 3. relu ---------------------------------------------------------------------

def fold_relu(graph: ir.Graph) -> ir.Graph:
    """Relu on a real-valued tensor feeding a quantizer becomes the quantizer's lo = 0."""
    while True:
        relu = next((n for n in graph if isinstance(n, ir.Relu)
                     and graph[n.inputs[0]].out.kind is not ir.Kind.INT), None)
        if relu is None:
            return graph
        user = _single_consumer(graph, relu.name)
        if not isinstance(user, ir.Quant):
            raise UnsupportedError(
                f"layer {relu.name!r} (ReLU) acts on real values that no activation quantizer "
                "follows; follow it with a quantizer (e.g. QuantReLU / QuantIdentity)")
        lo = max(user.out.lo, 0) if not user.out.bipolar else user.out.lo
        if user.out.bipolar:
            raise UnsupportedError(f"layer {relu.name!r} (ReLU) before a bipolar quantizer "
                                   f"{user.name!r} is not supported")
        oracle = user.oracle
        new_user = user.copy(inputs=relu.inputs, out=user.out.replace(lo=lo), oracle=oracle)
        graph = _replace(graph, user, new_user).without(relu.name)


# --- 4. signs ----------------------------------------------------------------------

def _negate_channels(node: ir.Node, flip: np.ndarray) -> ir.Node:
    sign = np.where(flip, -1, 1).astype(np.int64)
    w = node.weight.astype(np.int64) * sign.reshape((-1,) + (1,) * (node.weight.ndim - 1))
    bias = None if node.bias is None else node.bias * sign
    bits = node.weight_bits
    if node.weight_bits > 1:
        lo, hi = ir.int_range(bits, True)
        while w.size and (w.min() < lo or w.max() > hi):
            bits += 1
            lo, hi = ir.int_range(bits, True)
        if bits > 8:
            raise UnsupportedError(
                f"layer {node.name!r}: a negative batch-norm scale on channels "
                f"{np.flatnonzero(flip).tolist()} needs the weights negated, and -128 does "
                "not negate in 8 bits; use a narrow-range weight quantizer")
    t = node.out
    out = t.replace(scale=t.scale * sign, offset=t.offset)
    return node.copy(weight=w.astype(np.int8), bias=bias, weight_bits=bits, out=out)


def normalize_signs(graph: ir.Graph) -> ir.Graph:
    """Make the real scale of every requantized accumulator non-negative."""
    for quant in [n for n in graph if isinstance(n, ir.Quant)]:
        src = graph[quant.inputs[0]]
        flip = src.out.scale < 0
        if src.out.kind is not ir.Kind.ACC or not flip.any():
            continue
        if not isinstance(src, (ir.Conv, ir.Linear)):
            raise UnsupportedError(f"layer {src.name!r} ({src.OP}) has a negative real scale")
        sign = np.where(flip, -1, 1).astype(np.int64)
        oracle = quant.oracle
        new_oracle = None if oracle is None else (
            lambda acc, _o=oracle, _s=sign: _o(acc * _s[None, :]))
        graph = _replace(graph, src, _negate_channels(src, flip))
        graph = _replace(graph, graph[quant.name], graph[quant.name].copy(oracle=new_oracle))
    return graph


# --- 5. requantization -------------------------------------------------------------

def _requant_for(graph: ir.Graph, quant: ir.Quant) -> ir.Requant:
    src = graph[quant.inputs[0]]
    t, out = src.out, quant.out
    if t.kind is ir.Kind.REAL:
        raise UnsupportedError(f"layer {quant.name!r} quantizes a real tensor that is not an "
                               "accumulator; this op chain is not supported")
    if np.any(t.scale < 0):
        raise AssertionError("normalize_signs leaves no negative scale")
    out_scale = out.per_tensor_scale
    if out_scale is None:
        raise UnsupportedError(f"layer {quant.name!r}: per-channel activation scales are not "
                               "supported (activations need one scale per tensor)")
    ratio = t.scale / out_scale
    exps = {rq.pow2_exponent(float(r)) for r in ratio}
    if (not out.bipolar and np.all(t.offset == 0) and len(exps) == 1 and None not in exps
            and next(iter(exps)) <= 30):
        return rq.shift_requant(next(iter(exps)), out.lo, out.hi, t.channels)
    if t.kind is ir.Kind.INT:
        amin = np.full(t.channels, t.lo, np.int64)
        amax = np.full(t.channels, t.hi, np.int64)
    else:
        amin, amax = ir.acc_range(src, [graph[i].out for i in src.inputs])
    oracle = quant.oracle or rq.affine_oracle(t.scale, t.offset, out_scale, out.lo, out.hi,
                                              out.bipolar)
    return rq.fit_requant(oracle, amin, amax, ratio, out.lo, out.hi, out.bipolar)


def derive_requant(graph: ir.Graph) -> ir.Graph:
    """Replace every Quant by a Requantize with integer parameters."""
    for quant in [n for n in graph if isinstance(n, ir.Quant)]:
        params = _requant_for(graph, quant)
        node = ir.Requantize(quant.name, quant.inputs, quant.out, params)
        graph = _replace(graph, quant, node)
    return graph


# --- 6. fusion -----------------------------------------------------------------------

def fuse_layers(graph: ir.Graph) -> ir.Graph:
    """conv/linear/avgpool/add → requantize (→ max pool k=s, no padding) as one node."""
    changed = True
    while changed:
        changed = False
        for node in graph:
            if isinstance(node, (ir.Conv, ir.Linear, ir.AvgPool, ir.Add)) and node.requant is None:
                user = _single_consumer(graph, node.name)
                if isinstance(user, ir.Requantize):
                    fused = node.copy(name=user.name, requant=user.requant, out=user.out)
                    graph = graph.with_nodes([fused if n is node else n for n in graph.nodes
                                              if n is not user])
                    changed = True
                    break
            if isinstance(node, ir.Conv) and node.requant is not None and node.pool is None:
                user = _single_consumer(graph, node.name)
                if (isinstance(user, ir.MaxPool) and user.kernel[0] == user.kernel[1]
                        and user.stride == user.kernel and user.padding == (0, 0, 0, 0)):
                    k = user.kernel[0]
                    fused = node.copy(name=user.name, pool=(k, k), out=user.out)
                    graph = graph.with_nodes([fused if n is node else n for n in graph.nodes
                                              if n is not user])
                    changed = True
                    break
    return graph


def split_pool_on_write(graph: ir.Graph) -> ir.Graph:
    """Undo the max-pool half of `fuse_layers`: a conv that pools on write becomes the
    conv (its full-size output) and a MaxPool node, for configs without pool-on-write
    (`AcceleratorConfig.standalone_pool`). The back end runs it, not `lower`."""
    nodes = []
    for node in graph.nodes:
        if not (isinstance(node, ir.Conv) and node.pool is not None):
            nodes.append(node)
            continue
        _, h, w = graph[node.inputs[0]].out.shape
        kh, kw = np.asarray(node.weight).shape[2:]
        (sh, sw), (t, l, b, r) = node.stride, node.padding
        shape = (node.out.shape[0], (h + t + b - kh) // sh + 1, (w + l + r - kw) // sw + 1)
        conv = node.copy(name=f"{node.name}.conv", pool=None, out=node.out.replace(shape=shape))
        nodes += [conv, ir.MaxPool(node.name, (conv.name,), node.out, node.pool, node.pool,
                                   (0, 0, 0, 0))]
    return graph.with_nodes(nodes)


# --- 7. flatten -----------------------------------------------------------------------

def absorb_flatten(graph: ir.Graph) -> ir.Graph:
    """Drop Flatten nodes whose only readers are Linear layers (and 1-D no-op flattens)."""
    for node in [n for n in graph if isinstance(n, ir.Flatten)]:
        src = graph[node.inputs[0]]
        users = graph.consumers(node.name)
        if len(src.out.shape) == 1 or (users and graph.output != node.name
                                       and all(isinstance(u, ir.Linear) for u in users)):
            graph = graph.without(node.name).rewire(node.name, src.name)
    return graph


def remove_identity_requant(graph: ir.Graph) -> ir.Graph:
    """Drop a Requantize that maps ints to themselves (same scale, range contains input)."""
    for node in [n for n in graph if isinstance(n, ir.Requantize)]:
        src = graph[node.inputs[0]]
        p = node.requant
        if (src.out.kind is ir.Kind.INT and not p.bipolar and np.all(p.mult == 1)
                and np.all(p.shift == 0) and np.all(p.offset == 0)
                and p.lo <= src.out.lo and src.out.hi <= p.hi and graph.output != node.name):
            graph = graph.without(node.name).rewire(node.name, src.name)
    return graph


PIPELINE: tuple[Pass, ...] = (fold_batch_norm, sink_max_pool, fold_relu, normalize_signs,
                              derive_requant, remove_identity_requant, fuse_layers,
                              absorb_flatten)


def lower(graph: ir.Graph, check: bool = False) -> ir.Graph:
    """Run every pass; with `check`, verify the graph after each one."""
    for p in PIPELINE:
        graph = p(graph)
        if check:
            ir.verify(graph, ir.Stage.RAW)
    graph = graph.with_nodes(graph.nodes, stage=ir.Stage.LOWERED)
    return ir.verify(graph)
