"""Export → import through QONNX: same integers as the Brevitas frontend and as qonnx."""

import os

import numpy as np
import pytest
import torch
from compiler_nets import random_net

import compiler
from models import zoo

os.environ.setdefault("BREVITAS_JIT", "0")


def _export(net, shape, path):
    from brevitas.export import export_qonnx
    export_qonnx(net, input_t=torch.rand(1, *shape), export_path=str(path), dynamo=False)
    return str(path)


def _execute(path, x):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    m = ModelWrapper(path).transform(InferShapes())
    inits = {t.name for t in m.graph.initializer}
    name = next(i.name for i in m.graph.input if i.name not in inits)
    return np.concatenate([execute_onnx(m, {name: x[i:i + 1]})[m.graph.output[0].name]
                           for i in range(len(x))])


@pytest.mark.parametrize("seed,bn", [(0, False), (5, False), (101, True)])
def test_random_net_round_trip(seed, bn, tmp_path):
    net, shape = random_net(seed, batch_norm=bn)
    cm_b = compiler.compile(net, input_shape=shape)
    cm_q = compiler.compile(_export(net, shape, tmp_path / "n.onnx"), check=True)
    x = np.random.default_rng(seed).random((16,) + shape).astype(np.float32)
    xi = cm_b.quantize_input(x)
    assert np.array_equal(cm_q.quantize_input(x), xi)
    assert np.array_equal(cm_q.reference(xi), cm_b.reference(xi))


@pytest.mark.parametrize("name,bits", [("lenet5", 8), ("tfc", 1)])
def test_reference_agrees_with_qonnx_execute(name, bits, tmp_path):
    kw = dict(batch_norm=False) if name == "lenet5" else {}
    net = zoo.build(name, bits, bits, **kw)
    net.train()
    with torch.no_grad():
        net(torch.rand(8, *zoo.info(name).input_shape))
    net.eval()
    path = _export(net, zoo.info(name).input_shape, tmp_path / "n.onnx")
    cm = compiler.compile(path)
    x = np.random.default_rng(0).random((3,) + zoo.info(name).input_shape).astype(np.float32)
    y = cm.reference(cm.quantize_input(x))
    theirs = _execute(path, x).reshape(len(x), -1)
    ours = cm.dequantize(y).reshape(len(x), -1)
    if cm.output_type.offset.any():
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)   # TensorNorm in float
    else:
        # The output is the int32 accumulator: qonnx's floats are exactly int * scale.
        ints = np.rint(theirs / cm.output_scale[None, :]).astype(np.int64)
        assert np.array_equal(ints, y.reshape(len(x), -1))
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))


def test_input_shape_mismatch_is_reported(tmp_path):
    net, shape = random_net(0)
    path = _export(net, shape, tmp_path / "n.onnx")
    with pytest.raises(compiler.ShapeError, match="does not match the ONNX graph's input"):
        compiler.compile(path, input_shape=(shape[0], shape[1] + 1, shape[2]))


def test_unsupported_onnx_op_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([
        helper.make_node("Quant", ["x", "s", "z", "b"], ["q"], domain="qonnx.custom_op.general",
                         signed=0, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Sigmoid", ["q"], ["y"], name="sig")], "g", [x], [y],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [0.5]),
         helper.make_tensor("z", TensorProto.FLOAT, [], [0.0]),
         helper.make_tensor("b", TensorProto.FLOAT, [], [8.0])])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g), path)
    with pytest.raises(compiler.UnsupportedError, match=r"ONNX node 'sig' \(Sigmoid\) is not supported"):
        compiler.compile(str(path))
