"""host.Session on the program simulator: same integers as the reference, clear errors."""

import numpy as np
import pytest

import compiler
import host
from host.errors import BackendError
from models import zoo


@pytest.fixture(scope="module")
def cm():
    return compiler.compile(zoo.calibrate(zoo.build("digits-cnn"), "digits-cnn"))


def test_sim_session_matches_reference(cm):
    images = zoo.example_input("digits-cnn", 5).numpy()
    out = host.Session(cm, backend="sim").run(images)
    ref = cm.reference(cm.quantize_input(images))
    assert out.ints.dtype.kind == "i" and np.array_equal(out.ints, ref)
    assert np.array_equal(out.labels, cm.dequantize(ref).argmax(axis=1))
    assert out.values.shape == (5, 10)


def test_session_accepts_quantized_ints(cm):
    x = cm.quantize_input(zoo.example_input("digits-cnn", 2).numpy())
    assert np.array_equal(host.Session(cm, "sim").run(x).ints, cm.reference(x))


def test_auto_falls_back_to_the_cpu(cm, caplog, monkeypatch):
    monkeypatch.delenv("SAMOYED_BOARD", raising=False)
    caplog.set_level("INFO")
    sess = host.Session(cm, backend="auto")
    assert "backend auto: chose torch:cpu" in caplog.text
    assert sess.backend.name == "torch:cpu"


@pytest.mark.parametrize("name", ["digits-cnn", "fmnist-cnn", "lenet5", "tfc"])
def test_torch_backend_is_bit_exact_on_zoo_nets(name):
    model = compiler.compile(zoo.calibrate(zoo.build(name), name))
    x = model.quantize_input(zoo.example_input(name, 64).numpy())
    assert np.array_equal(host.Session(model, "torch:cpu").run(x).ints, model.reference(x))


def test_torch_cuda_without_a_gpu_is_a_clear_error(cm):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BackendError, match="no CUDA device is available; use torch:cpu"):
        host.Session(cm, "torch:cuda")


@pytest.mark.parametrize("images, message", [
    (np.zeros((1, 8, 8), np.float32), r"add the batch axis, e.g. images\[None\]"),
    (np.zeros((2, 1, 28, 28), np.float32), r"expects \(N, 1, 8, 8\)"),
    (np.full((1, 1, 8, 8), 300), r"integer input holds 300..300, outside the input "
                                  r"quantizer's range 0..255"),
    (np.zeros((1, 1, 8, 8), bool), "neither float images nor ints"),
])
def test_bad_input_is_one_clear_error(cm, images, message):
    with pytest.raises(BackendError, match=message):
        host.Session(cm, "sim").run(images)


def test_unknown_backend(cm):
    with pytest.raises(BackendError, match="unknown backend 'fpga'; choose one of: auto, sim, rtl, torch"):
        host.Session(cm, "fpga")
