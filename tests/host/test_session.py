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


def test_torch_backend_int8_convolutions_equal_the_float_path(monkeypatch):
    """fmnist-cnn's convolutions run on oneDNN's int8 kernels where the CPU has them; the
    integers equal the float32 path's and the reference's."""
    from host.backends import torch_backend as tb
    model = compiler.compile(zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn"))
    x = model.quantize_input(zoo.example_input("fmnist-cnn", 32).numpy())
    fast = host.Session(model, "torch:cpu")
    convs = [name for name, how in fast.backend.arithmetic.items() if how.startswith("int8")]
    if not tb._onednn_int8_available():
        pytest.skip("this torch build has no oneDNN int8 convolution")
    assert len(convs) == 3
    monkeypatch.setattr(tb, "_onednn_int8_available", lambda: False)
    slow = host.Session(model, "torch:cpu")
    assert set(slow.backend.arithmetic.values()) == {"float32"}
    assert np.array_equal(fast.run(x).ints, slow.run(x).ints)
    assert np.array_equal(fast.run(x).ints, model.reference(x))


def test_torch_backend_drops_int8_kernels_that_fail_their_self_check(monkeypatch, caplog):
    """A CPU whose int8 kernel is not exact (saturating u8·s8 pairs without VNNI) is
    caught by the layer's self-check and that layer computes in float32 instead."""
    from host.backends import torch_backend as tb
    if not tb._onednn_int8_available():
        pytest.skip("this torch build has no oneDNN int8 convolution")
    exact_call = tb._Int8Conv.__call__
    monkeypatch.setattr(tb._Int8Conv, "__call__",
                        lambda self, x: exact_call(self, x).clamp(-32768, 32767))
    caplog.set_level("INFO")
    model = compiler.compile(zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn"))
    sess = host.Session(model, "torch:cpu")
    assert "oneDNN int8 convolution not used (_NotExact" in caplog.text
    convs = [node.name for node in model.graph if type(node).__name__ == "Conv"]
    dropped = [name for name in convs if sess.backend.arithmetic[name] == "float32"]
    assert dropped and f"layer {dropped[0]}: oneDNN int8 convolution not used" in caplog.text
    x = model.quantize_input(zoo.example_input("fmnist-cnn", 16).numpy())
    assert np.array_equal(sess.run(x).ints, model.reference(x))


def test_run_with_progress_gives_the_same_integers(cm, capsys):
    """A progress bar (frame by frame on sim) changes nothing in the results."""
    x = cm.quantize_input(zoo.example_input("digits-cnn", 5).numpy())
    sess = host.Session(cm, "sim")
    assert np.array_equal(sess.run(x, progress=True).ints, cm.reference(x))
    err = capsys.readouterr().err
    assert "sim:" in err and "0/5 [" in err


def test_torch_backend_runs_chunks_in_parallel_threads():
    """Chunks on several threads give the reference's integers in input order, and the
    caller's torch thread count is left as it was."""
    import torch
    model = compiler.compile(zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn"))
    x = model.quantize_input(zoo.example_input("fmnist-cnn", 37).numpy())
    sess = host.Session(model, "torch:cpu")
    sess.backend.batch_size, sess.backend.workers = 4, 3
    threads = torch.get_num_threads()
    assert np.array_equal(sess.run(x).ints, model.reference(x))
    assert torch.get_num_threads() == threads
    sess.backend.workers = 1
    assert np.array_equal(sess.run(x, progress=True).ints, model.reference(x))



def test_torch_backend_fused_pool_requant_equals_pytorchs_passes(monkeypatch):
    """fmnist-cnn's three convolutions pool, add their bias and requantize in one compiled
    pass (numba); the integers equal PyTorch's separate passes and the reference's, also
    on random nets whose fused layers keep float32 outputs (seed 1; seed 8 with a pool)."""
    from compiler_nets import random_net
    from host.backends import kernels
    if not kernels.available():
        pytest.skip("numba is not installed")
    model = compiler.compile(zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn"))
    convs = [node.name for node in model.graph if type(node).__name__ == "Conv"]
    nets = [(model, model.quantize_input(zoo.example_input("fmnist-cnn", 70).numpy()))]
    for seed in (1, 6, 8):
        net, shape = random_net(seed, batch_norm=bool(seed % 2))
        cm = compiler.compile(net, input_shape=shape)
        rng = np.random.default_rng(seed)
        nets.append((cm, cm.quantize_input((rng.random((9, *shape)) * 2 - 0.5)
                                           .astype(np.float32))))
    fused = [host.Session(cm, "torch:cpu") for cm, _ in nets]
    assert fused[0].backend.fused_layers == convs
    assert all(s.backend.fused_layers for s in fused)
    monkeypatch.setattr(kernels, "available", lambda: False)
    plain = [host.Session(cm, "torch:cpu") for cm, _ in nets]
    assert not any(s.backend.fused_layers for s in plain)
    for (cm, x), fast, slow in zip(nets, fused, plain):
        ref = cm.reference(x)
        assert np.array_equal(fast.run(x).ints, ref)
        assert np.array_equal(slow.run(x).ints, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_requant_kernel_matches_numpy(dtype):
    """The compiled kernel on its own: an overlapping 3x3 / stride 2 pool, per-channel
    bias, multiply-add, round half to even (ties included) and clamp, against NumPy."""
    from host.backends import kernels
    if not kernels.available():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(0)
    acc = rng.integers(-3000, 3000, (3, 9, 8, 5)).astype(dtype)
    bias = rng.integers(-50, 50, 5).astype(np.float64)
    mult = np.array([0.5, 0.25, 1 / 64, 0.125, 2.0 ** -10])      # ties happen at 0.5 steps
    offset = np.array([0.0, 0.5, -3.0, 1.5, 0.0])
    k, s = 3, 2
    windows = np.lib.stride_tricks.sliding_window_view(acc, (k, k), axis=(1, 2))[:, ::s, ::s]
    peak = windows.max(axis=(-1, -2)).astype(np.float64)
    want = np.clip(np.rint((peak + bias) * mult + offset), -7, 200)
    for out_dtype in (dtype, np.uint8):
        lo = 0.0 if out_dtype == np.uint8 else -7.0
        got = kernels.pool_requant_nhwc(acc, k, s, bias, mult, offset, lo, 200.0, out_dtype)
        assert got.dtype == out_dtype and got.shape == want.shape
        assert np.array_equal(got, np.clip(want, lo, 200).astype(out_dtype))
