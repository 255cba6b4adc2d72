"""Agreement between a compiled model and the Brevitas network it came from.

`brevitas_ints` records Brevitas's own integers at every IR tensor named after a module
(quantizers, pools, the last linear layer); `layer_agreement` feeds each IR node the
integers Brevitas fed it, so one LSB never cascades; `end_to_end` runs the whole
reference from Brevitas's input integers. Used by the tests and `bench/agreement.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sim import reference

from . import ir
from .compiled import CompiledModel


@dataclass
class Agreement:
    """How many elements are equal and how far apart the rest are (in LSBs)."""

    name: str
    elements: int
    equal: int
    max_lsb: int

    @property
    def fraction(self) -> float:
        return self.equal / self.elements if self.elements else 1.0


def _value(out) -> np.ndarray:
    v = out.value if hasattr(out, "value") else out
    return v.detach().double().numpy()


def _raw_scale(cm: CompiledModel, node: ir.Node) -> np.ndarray:
    """The scale of a Conv/Linear accumulator as Brevitas outputs it (before any BN)."""
    src = cm.graph[node.inputs[0]].out
    return float(src.scale[0]) * node.weight_scale


@torch.no_grad()
def brevitas_ints(net: torch.nn.Module, cm: CompiledModel, x: torch.Tensor
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(Brevitas's ints by IR tensor name, Brevitas's float output) for float input x."""
    modules = dict(net.named_modules())
    captured: dict[str, np.ndarray] = {}
    hooks = []
    for node in cm.graph:
        if node.name not in modules:
            continue

        def hook(_m, _inp, out, node=node):
            v = _value(out)
            t = node.out
            if t.kind is ir.Kind.ACC:
                scale = _raw_scale(cm, node)
            else:
                scale = t.scale
            shape = (1, -1) + (1,) * (v.ndim - 2)
            if isinstance(node, ir.Input) and v.shape[1:] != t.shape:
                v = v.reshape((len(v),) + t.shape)    # FINN's FC flattens first
                shape = (1, -1) + (1,) * (v.ndim - 2)
            captured[node.name] = np.rint(v / scale.reshape(shape)).astype(np.int64)
        hooks.append(modules[node.name].register_forward_hook(hook))
    was_training = net.training
    net.eval()
    try:
        out = _value(net(x))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return captured, out


def _compare(name: str, ours: np.ndarray, theirs: np.ndarray) -> Agreement:
    ours = ours.reshape(theirs.shape)
    diff = np.abs(ours - theirs)
    return Agreement(name, int(diff.size), int((diff == 0).sum()),
                     int(diff.max()) if diff.size else 0)


def layer_agreement(cm: CompiledModel, ints: dict[str, np.ndarray]) -> list[Agreement]:
    """Each node with captured inputs and output, run on Brevitas's input integers."""
    rows = []
    for node in cm.graph.nodes[1:]:
        if node.name not in ints or not all(i in ints for i in node.inputs):
            continue
        if node.out.kind is ir.Kind.ACC and node.out.offset.any():
            continue  # a folded TensorNorm/BN after the last layer: compared end to end
        args = [ints[i] for i in node.inputs]
        y = reference.run_node(node, args, [cm.graph[i].out for i in node.inputs])
        rows.append(_compare(node.name, y, ints[node.name]))
    return rows


def end_to_end(cm: CompiledModel, ints: dict[str, np.ndarray], out_float: np.ndarray
               ) -> tuple[Agreement | None, float]:
    """(element agreement of the final ints if Brevitas exposes them, argmax agreement).

    Argmax compares integer outputs when Brevitas's are known: its float outputs carry
    float32 accumulation noise that breaks ties between equal integers arbitrarily.
    """
    x = ints[cm.graph.input.name]
    y = cm.reference(x)
    elem = None
    if cm.graph.output in ints and not (cm.output_type.kind is ir.Kind.ACC
                                        and cm.output_type.offset.any()):
        elem = _compare(cm.graph.output, y, ints[cm.graph.output])
    ours = cm.dequantize(y).reshape(len(y), -1)
    theirs = out_float.reshape(len(out_float), -1)
    if elem is not None and np.all(cm.output_scale > 0):
        ours, theirs = y.reshape(len(y), -1), ints[cm.graph.output].reshape(len(y), -1)
    return elem, float((ours.argmax(1) == theirs.argmax(1)).mean())
