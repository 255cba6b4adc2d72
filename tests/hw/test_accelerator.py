"""hw.Accelerator as RTL: whole networks and random layers through the host link.

Every run goes through the framed byte protocol into the simulated design (Icarus for
the quick tests, Verilator for the big network), with random stalls on both byte
streams, and its integers must equal the program simulator's and the reference's. The
design's cycle counter must be within CYCLE_TOLERANCE of the cycle model for whole
networks.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import compiler
import host
from compiler.errors import CompileError
from hw import AcceleratorConfig, ConfigError, isa
from hw.accelerator import check_config
from hw.isa import Opcode
from host import protocol as P
from host import rtl
from host.backends.board import BoardBackend
from host.errors import BackendError
from models import zoo
from sim import machine

import compiler_nets

CYCLE_TOLERANCE = 0.02      # RTL cycles vs cm.estimate() (issue 5); today they are equal



# fmnist-cnn's 103 KB of weights need twice the default weight memory on 4x4.
CONFIGS = {"4x4": dict(weight_depth=32768), "8x8": {}}


def _simulation(request, label, simulator, connections=64):
    # A module's simulation waits for its next client however long the tests between
    # take (a fresh checkout builds other designs meanwhile); the finalizer ends it.
    try:
        sim = rtl.RtlSimulation(AcceleratorConfig.parse(label, **CONFIGS[label]), simulator,
                                backpressure=1234, connections=connections,
                                accept_timeout=None)
    except BackendError as error:
        pytest.fail(str(error))
    request.addfinalizer(lambda: sim.close(timeout=120))
    return sim


@pytest.fixture(scope="module", params=["4x4", "8x8"])
def verilator(request):
    return _simulation(request, request.param, "verilator")


@pytest.fixture(scope="module")
def icarus_4x4(request):
    return _simulation(request, "4x4", "icarus", connections=8)


# The iCEBreaker's reduced accelerator (boards.registry: 1x1, descriptors fetched two
# bytes at a time, tags delayed in block RAM, serial output-size multiplies, compact
# STATUS registers, the compact post-processor, max pools as descriptors, one-pixel
# tiles in a register accumulator), with memories big enough for digits-cnn.
REDUCED = AcceleratorConfig(rows=1, cols=1, act_depth=4096, weight_depth=16384,
                            param_depth=128, program_depth=16, acc_depth=1,
                            program_beat_bytes=2, ram_delays=True, serial_size=True,
                            compact_link=True, compact_post=True, compact_feeder=True,
                            standalone_pool=True)


@pytest.fixture(scope="module")
def verilator_reduced(request):
    sim = rtl.RtlSimulation(REDUCED, "verilator", backpressure=1234, connections=8,
                            accept_timeout=None)
    request.addfinalizer(lambda: sim.close(timeout=120))
    return sim


def run_rtl(sim, cm, x):
    """Outputs and final STATUS of frames `x` on the simulation `sim`."""
    board = BoardBackend(cm, sim.url, response_timeout=60.0, attempts=2)
    try:
        return board.run_ints(x), board.last_status
    finally:
        board.close()


def check_run(cm, x, out, status, *, tolerance=CYCLE_TOLERANCE, sim=None):
    """Outputs == the program simulator's and the reference's; STATUS done; cycles within
    `tolerance` of the model; MACs exact. When the outputs differ and `sim` is given, the
    frames are rerun on a traced build and the failure names its waveform."""
    assert out.dtype.kind == "i"
    want = machine.run_frames(cm.program, x)
    if sim is not None and not np.array_equal(out, want):
        pytest.fail(f"RTL outputs differ from the program simulator's at "
                    f"{np.argwhere(out != want)[:8].tolist()}; waveform of a rerun: "
                    f"{_rerun_with_waves(sim.config, sim.simulator, cm, x)}")
    assert np.array_equal(out, want)
    assert np.array_equal(out, cm.reference(x))
    assert status.flags == P.StatusFlag.DONE
    estimate = cm.estimate()
    cycles = status.counters["cycles"]
    assert abs(cycles - estimate.cycles) <= tolerance * estimate.cycles, (cycles, estimate.cycles)
    assert status.counters["macs"] == estimate.macs
    return cycles, estimate.cycles


def _rerun_with_waves(config, simulator, cm, x):
    """Run `x` again on a traced build of the design; the waveform's path."""
    traced = rtl.RtlSimulation(config, simulator, connections=1, waves=True)
    try:
        run_rtl(traced, cm, x)
    finally:
        traced.close(timeout=120)
    return traced.waves_file


def _digits(config, k_pack=True):
    return compiler.compile(zoo.calibrate(zoo.build("digits-cnn"), "digits-cnn"), config=config,
                            k_pack=k_pack)


# The board backend sends the input in WRITE_GROUPS frames: 9 of 16 (or 12) bytes a pixel
# K-packed, 1 of 8 (or 4) plain, which runs the first convolution with one row in use.
@pytest.mark.parametrize("k_pack", [True, False], ids=["k_packed", "plain"])
def test_digits_cnn_on_verilator(verilator, k_pack):
    cm = _digits(verilator.config, k_pack)
    assert cm.program.packing.im2col == k_pack
    x = cm.quantize_input(zoo.example_input("digits-cnn", 4).numpy())
    check_run(cm, x, *run_rtl(verilator, cm, x), sim=verilator)


def test_a_failing_run_can_be_traced():
    """What a failing integration test does: rerun on a traced build; the FST is there."""
    config = AcceleratorConfig.parse("4x4", **CONFIGS["4x4"])
    cm = _digits(config)
    x = cm.quantize_input(zoo.example_input("digits-cnn", 1).numpy())
    path = _rerun_with_waves(config, "icarus", cm, x)
    assert path.suffix == ".fst" and path.stat().st_size > 10_000


def test_digits_cnn_on_icarus(icarus_4x4):
    """The first run after power-up on a four-state simulator: every register starts
    from its declared value, none from X (sim.runners._kick_comb_blocks)."""
    cm = _digits(icarus_4x4.config)
    x = cm.quantize_input(zoo.example_input("digits-cnn", 2).numpy())
    check_run(cm, x, *run_rtl(icarus_4x4, cm, x), sim=icarus_4x4)


def _random_rtl_nets(config, count, seeds):
    """Compiled random nets (odd shapes, strides, paddings, channel counts, bits 1-8,
    pool-on-write, K-packed first layers, bipolar outputs): the first `count` with a
    standalone (overlapping or padded) MAXPOOL and the first `count` without."""
    pooled, plain = [], []
    for seed in seeds:
        net, shape = compiler_nets.random_net(seed, batch_norm=seed % 2 == 1)
        try:
            cm = compiler.compile(net, input_shape=shape, config=config)
        except CompileError:
            continue                      # e.g. a random net whose sums could overflow
        rtl.check_program(cm.program, config)
        ops = {d.op for d in isa.unpack_program(cm.program.image.prg)}
        group = pooled if Opcode.MAXPOOL in ops else plain
        if len(group) < count:
            group.append((seed, cm, shape))
        if len(pooled) == len(plain) == count:
            return pooled + plain
    raise AssertionError(f"seeds gave {len(pooled)} pooled and {len(plain)} plain nets")


def test_random_nets_on_verilator(verilator):
    import torch
    config = verilator.config
    for seed, cm, shape in _random_rtl_nets(config, 3, range(200, 300)):
        images = torch.rand(2, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 0.5
        x = cm.quantize_input(images.numpy())
        out, status = run_rtl(verilator, cm, x)
        check_run(cm, x, out, status, sim=verilator)


def test_reduced_config_cycle_terms():
    """What the reductions add to every descriptor: 15 more program reads (16 of 2 bytes
    instead of 1 of 32), and no setup cycle for the output size on one multiplier (its
    seven states take as long as SIZE .. PIXELS_CHECK)."""
    from hw.accelerator import extra_setup_cycles
    assert extra_setup_cycles(AcceleratorConfig()) == (0, 0)
    assert extra_setup_cycles(REDUCED) == (14, 0)


def test_reduced_config_is_bit_exact_and_cycle_exact(verilator_reduced):
    """The reduced variant runs digits-cnn and random nets (pooled and plain) with the
    program simulator's integers, and its cycle counter equals the model's, which adds
    the longer fetch and setup (hw.accelerator.extra_setup_cycles)."""
    import torch
    sim = verilator_reduced
    cm = _digits(REDUCED)
    x = cm.quantize_input(zoo.example_input("digits-cnn", 1).numpy())
    cycles, model = check_run(cm, x, *run_rtl(sim, cm, x), sim=sim)
    assert cycles == model
    for seed, cm, shape in _random_rtl_nets(REDUCED, 1, range(200, 300)):
        images = torch.rand(2, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 0.5
        x = cm.quantize_input(images.numpy())
        cycles, model = check_run(cm, x, *run_rtl(sim, cm, x), sim=sim)
        assert cycles == model, seed


def test_residual_add_and_global_average_pool_on_verilator(verilator):
    """ADD (two inputs, requantized) and AVGPOOL (a 9x9 global pool) on the RTL."""
    import torch
    folder = Path(__file__).parents[1] / "compiler"
    spec = importlib.util.spec_from_file_location("compiler_test_program",
                                                  folder / "test_program.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)     # its neighbour compiler_nets is on pytest's path
    torch.manual_seed(0)
    net = module.ResidualNet()
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(8, 3, 9, 9))
    net.eval()
    cm = compiler.compile(net, input_shape=(3, 9, 9), config=verilator.config)
    ops = [d.op for d in isa.unpack_program(cm.program.image.prg)]
    assert Opcode.ADD in ops and Opcode.AVGPOOL in ops
    x = cm.quantize_input(np.random.default_rng(0).random((3, 3, 9, 9)).astype(np.float32))
    check_run(cm, x, *run_rtl(verilator, cm, x), sim=verilator)


def test_session_backend_rtl():
    """The user's path: host.Session(cm, backend="rtl") builds (or reuses) the design."""
    cm = _digits(AcceleratorConfig.parse("8x8"))
    images = zoo.example_input("digits-cnn", 2).numpy()
    with host.Session(cm, backend="rtl") as session:
        out = session.run(images)
    assert np.array_equal(out.ints, cm.reference(cm.quantize_input(images)))


@pytest.mark.slow
def test_fmnist_cnn_on_verilator(verilator):
    config = verilator.config
    cm = compiler.compile(zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn"), config=config)
    x = cm.quantize_input(zoo.example_input("fmnist-cnn", 2).numpy())
    out, status = run_rtl(verilator, cm, x)
    check_run(cm, x, out, status, sim=verilator)
    utilization = status.counters["macs"] / (status.counters["cycles"] * config.rows * config.cols)
    assert utilization >= 0.85, utilization


# --- protocol faults and the watchdog, on the 4x4 design ------------------------------

class RawLink:
    """Frames to the simulated design over a plain socket."""

    def __init__(self, url):
        host_, port = url.removeprefix("socket://").split(":")
        self.sock = socket.create_connection((host_, int(port)), timeout=60)
        self.decoder = P.FrameDecoder()

    def exchange(self, data, timeout=60.0):
        self.sock.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(4096)
            assert chunk, "the simulation closed the connection"
            frames = [f for f in self.decoder.feed(chunk) if isinstance(f, P.Frame)]
            if frames:
                return frames[0]
        raise AssertionError("no answer from the design")

    def close(self):
        self.sock.close()


def test_protocol_faults_nak_and_leave_memory_untouched(icarus_4x4):
    link = RawLink(icarus_4x4.url)
    try:
        known = bytes(range(40, 72))
        assert link.exchange(P.write_request(1, P.Space.ACTIVATIONS, 64, known).encode()).cmd \
            == P.Reply.ACK
        bad = bytearray(P.write_request(2, P.Space.ACTIVATIONS, 64, bytes(32)).encode())
        bad[-1] ^= 0x40                                        # CRC
        nak = link.exchange(bytes(bad))
        assert (nak.cmd, nak.payload) == (P.Reply.NAK, bytes([P.NakCode.BAD_CRC]))
        truncated = P.write_request(3, P.Space.ACTIVATIONS, 64, bytes(32)).encode()[:-7]
        nak = link.exchange(truncated)
        assert (nak.cmd, nak.payload) == (P.Reply.NAK, bytes([P.NakCode.TRUNCATED]))
        nak = link.exchange(P.encode_frame(0x7E, 4, 0, b""))
        assert (nak.cmd, nak.payload) == (P.Reply.NAK, bytes([P.NakCode.UNKNOWN_COMMAND]))
        back = link.exchange(P.read_request(5, P.Space.ACTIVATIONS, 64, 32).encode())
        assert back.cmd == P.Reply.ACK and back.payload == known
    finally:
        link.close()


def test_every_memory_reads_back_what_was_written(verilator):
    """Bytes written to each memory come back from a READ, from an offset inside a word
    across three words: every byte of the read-back's picks (the 8x8's 64-byte weight
    word in two steps of slices, then the byte)."""
    link = RawLink(verilator.url)
    rng = np.random.default_rng(11)
    try:
        for seq, space in enumerate(P.Space):
            data = rng.integers(0, 256, 150, dtype=np.uint8).tobytes()
            ack = link.exchange(P.write_request(2 * seq, space, 37, data).encode())
            assert ack.cmd == P.Reply.ACK, (space, ack)
            back = link.exchange(P.read_request(2 * seq + 1, space, 37, len(data)).encode())
            assert back.cmd == P.Reply.ACK and back.payload == data, space
    finally:
        link.close()


def test_watchdog_stops_a_hung_run_and_names_the_descriptor(icarus_4x4):
    """An unknown opcode hangs the sequencer: the watchdog aborts the run and STATUS says
    which descriptor was executing."""
    conv = {"op": Opcode.CONV, "in_h": 1, "in_w": 1, "in_c": 4, "out_c": 4, "out_h": 1,
            "out_w": 1, "kh": 1, "kw": 1, "stride": 1, "pool_k": 1, "pool_s": 1,
            "tile_px": 1, "dst": 8, "lo": -128, "hi": 127}
    program = isa.pack_program([conv, {"op": 7}]).tobytes()
    link = RawLink(icarus_4x4.url)
    try:
        assert link.exchange(P.write_request(1, P.Space.PROGRAM, 0, program).encode()).cmd \
            == P.Reply.ACK
        assert link.exchange(P.run_request(2, 0, 3000).encode()).cmd == P.Reply.ACK
        for seq in range(3, 200):
            status = P.DeviceStatus.decode(link.exchange(P.status_request(seq).encode()).payload)
            if not status.flags & P.StatusFlag.RUNNING:
                break
        assert status.flags == P.StatusFlag.WATCHDOG
        assert status.run_cycles == 3000
        assert status.counters["descriptor"] == 1
    finally:
        link.close()


# --- refusals before anything is built or sent -----------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=6, cols=6), "needs a power-of-two rows, not 6; use 4 or 8"),
    (dict(rows=4, cols=8), "needs cols <= rows"),
    (dict(rows=8, cols=8, weight_load_rows=2), "loads whole weight tiles"),
])
def test_check_config_refuses_what_the_rtl_cannot_build(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        check_config(AcceleratorConfig(**kwargs))


def test_check_program_names_the_unsupported_descriptor():
    config = AcceleratorConfig(rows=8, cols=4)      # buildable, but pools need R == C
    for seed in range(200, 300):
        net, shape = compiler_nets.random_net(seed)
        try:
            cm = compiler.compile(net, input_shape=shape, config=config)
        except CompileError:
            continue
        ops = [d.op for d in isa.unpack_program(cm.program.image.prg)]
        if Opcode.MAXPOOL in ops:
            break
    index = ops.index(Opcode.MAXPOOL)
    with pytest.raises(BackendError, match=rf"descriptor {index} \(layer .*\) is MAXPOOL: the "
                                           "RTL runs it on square arrays only"):
        rtl.check_program(cm.program, cm.config)
    with pytest.raises(BackendError, match="is MAXPOOL"):
        host.Session(cm, backend="rtl:icarus")


def test_check_program_refuses_pool_on_write_without_it():
    """A program with pool-on-write, sent to a standalone_pool config, is refused with
    the layer and the fix (compiling for that config splits the pool off)."""
    cm = _digits(AcceleratorConfig(rows=1, cols=1, act_depth=4096, weight_depth=16384,
                                   acc_depth=1))
    index = next(i for i, d in enumerate(isa.unpack_program(cm.program.image.prg))
                 if d.op is Opcode.CONV and d.pool_k > 1)
    with pytest.raises(BackendError, match=rf"descriptor {index} \(layer .*\) max-pools on "
                                           r"write \(pool_k=2\); the 1x1 config has no "
                                           "pool-on-write"):
        rtl.check_program(cm.program, REDUCED)
    # and tiles larger than its one-pixel accumulator
    cm = _digits(AcceleratorConfig(rows=1, cols=1, act_depth=4096, weight_depth=16384,
                                   standalone_pool=True))
    with pytest.raises(BackendError, match=r"descriptor 0 \(layer .*\) accumulates pixel "
                                           r"tiles of 64 pixels; the 1x1 config's "
                                           r"accumulators hold 1 \(acc_depth\)"):
        rtl.check_program(cm.program, REDUCED)


@pytest.mark.parametrize("field", ["in_c", "out_c"])
def test_check_program_refuses_a_conv_without_channels(field):
    """The sequencer's MAC count and loops assume at least one channel in and out: a
    CONV descriptor with none is named, not run."""
    cm = _digits(AcceleratorConfig(rows=8, cols=8))
    descriptors = isa.unpack_program(cm.program.image.prg)
    index = next(i for i, d in enumerate(descriptors) if d.op is Opcode.CONV)
    descriptors[index][field] = 0
    program = SimpleNamespace(image=SimpleNamespace(prg=isa.pack_program(descriptors)))
    with pytest.raises(BackendError, match=rf"descriptor {index} \(no layer name\) is a CONV "
                                           rf"of in_c=.* channels: a convolution needs"):
        rtl.check_program(program, cm.config)


def test_rtl_backend_names_unknown_simulators():
    cm = compiler.compile(zoo.calibrate(zoo.build("digits-cnn"), "digits-cnn"))
    with pytest.raises(BackendError, match="unknown simulator; use rtl:verilator or rtl:icarus"):
        host.Session(cm, backend="rtl:modelsim")


STOP_TIMEOUT = 300       # seconds for `samoyed virtual-board --engine rtl` to stop after Ctrl-C


def test_virtual_board_rtl_engine(tmp_path):
    """`samoyed virtual-board --engine rtl`: the RTL behind a TCP port, driven by the
    board backend exactly like a real board; Ctrl-C stops it."""
    import os
    import signal
    import subprocess
    import sys
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Started with SIGINT ignored, as a non-interactive shell starts a background job
    # (CI runners, `make test &`): Ctrl-C must still stop it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "virtual-board", "--engine", "rtl", "--port",
         str(port), "--config", "8x8"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, cwd=Path(__file__).parents[2], env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "listening on" in line:
                break
        assert f"board:socket://127.0.0.1:{port}" in lines[-1], "".join(lines)
        cm = _digits(AcceleratorConfig.parse("8x8"))
        x = cm.quantize_input(zoo.example_input("digits-cnn", 2).numpy())
        with host.Session(cm, backend=f"board:socket://127.0.0.1:{port}") as session:
            assert np.array_equal(session.run(x).ints, cm.reference(x))
    finally:
        proc.send_signal(signal.SIGINT)
        # communicate() drains what the server printed after "listening on" (a full pipe
        # would block it). The bound is generous: on a loaded 2-core machine the
        # simulator's teardown has taken over a minute.
        stuck = None
        try:
            out, _ = proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            alive = proc.poll() is None      # the CLI itself, or only what it started
            proc.kill()
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                out = "(its output stayed open: a child process holds it)"
            stuck = (f"the virtual board did not stop within {STOP_TIMEOUT} s of Ctrl-C (the "
                     f"CLI process {'was still running' if alive else 'had ended'}); its "
                     f"output after 'listening on':\n{out}")
    assert stuck is None, stuck
    assert proc.returncode == 0, out


def test_close_terminates_a_simulation_whose_client_stays(caplog):
    """A client that never disconnects keeps the simulation from its accept loop, where it
    looks for the stop file: close() then terminates the simulator process itself."""
    sim = rtl.RtlSimulation(AcceleratorConfig.parse("8x8"), "verilator",
                            connections=1 << 30, accept_timeout=None)
    with socket.create_connection(("127.0.0.1", sim.port)):
        time.sleep(0.5)
        sim.close(timeout=2)
        assert not sim.alive
    assert "did not stop within 2 s; terminating it" in caplog.text


def test_faulty_line_to_the_rtl_gives_right_answers(verilator):
    """The RTL behind a proxy that flips and drops bytes both ways: the host resends
    (the design NAKs bad CRCs and times out truncated frames) and every result it
    returns is right. One config is enough: the link does not depend on it."""
    if verilator.config.label != "8x8":
        pytest.skip("line faults are checked on the 8x8 design")
    spec = importlib.util.spec_from_file_location(
        "host_test_virtual_board", Path(__file__).parents[1] / "host" / "test_virtual_board.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    proxy = module.FaultyProxy(verilator.port, seed=3, flip=0.0003, drop=0.0003)
    cm = _digits(verilator.config)
    x = cm.quantize_input(zoo.example_input("digits-cnn", 3).numpy())
    board = BoardBackend(cm, f"socket://127.0.0.1:{proxy.port}", response_timeout=2.0,
                         attempts=12)
    try:
        out = board.run_ints(x)
        resends = board.link.resends
    finally:
        board.close()
    assert np.array_equal(out, cm.reference(x))
    assert proxy.faults > 0 and resends > 0, (proxy.faults, resends)
