"""The board backend against the virtual board over TCP, clean and behind a faulty line."""

import dataclasses
import random
import socket
import threading
import time

import numpy as np
import pytest

import compiler
import host
from host import protocol as P
from host.errors import BackendError
from host.virtual_board import MachineDevice, serve
from hw import AcceleratorConfig
from models import zoo


@pytest.fixture(scope="module")
def cm():
    return compiler.compile(zoo.calibrate(zoo.build("digits-cnn"), "digits-cnn"))


@pytest.fixture
def board():
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=serve, args=(MachineDevice(AcceleratorConfig()), 0),
                              kwargs=dict(ready=ready, stop=stop), daemon=True)
    thread.start()
    assert ready.wait(5)
    yield ready.port
    stop.set()
    thread.join(5)


class FaultyProxy:
    """Forwards bytes between a client and the board, in order, with faults: bits
    flipped, bytes dropped, chunks held back (`delay` of them, for up to `max_delay` s)
    and the connection closed after a random few thousand bytes (at most `closes` times);
    each new client connection gets a new one to the board."""

    def __init__(self, target_port, seed, flip=0.002, drop=0.002, delay=0.0, max_delay=0.0,
                 closes=0):
        self.rng = random.Random(seed)
        self.flip, self.drop, self.delay, self.max_delay = flip, drop, delay, max_delay
        self.closes_left = closes
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.target_port = target_port
        self.faults = self.delays = self.closed = 0
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _mangle(self, data):
        out = bytearray()
        for byte in data:
            r = self.rng.random()
            if r < self.drop:
                self.faults += 1
                continue
            if r < self.drop + self.flip:
                self.faults += 1
                byte ^= 1 << self.rng.randrange(8)
            out.append(byte)
        return bytes(out)

    def _pump(self, src, dst, budget):
        try:
            while data := src.recv(65536):
                if self.rng.random() < self.delay:
                    self.delays += 1
                    time.sleep(self.rng.uniform(0, self.max_delay))
                dst.sendall(self._mangle(data))
                budget[0] -= len(data)
                if budget[0] <= 0 and self.closes_left > 0:
                    self.closes_left -= 1
                    self.closed += 1
                    break
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            budget = [self.rng.randrange(500, 5000)]   # bytes before a close, both ways
            threading.Thread(target=self._pump, args=(client, upstream, budget),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, budget),
                             daemon=True).start()


def test_board_backend_matches_reference(cm, board):
    x = cm.quantize_input(zoo.example_input("digits-cnn", 4).numpy())
    with host.Session(cm, f"board:socket://127.0.0.1:{board}") as sess:
        assert np.array_equal(sess.run(x).ints, cm.reference(x))
        status = sess.backend.link.status()
        assert status.flags & P.StatusFlag.DONE
        assert status.run_cycles == cm.estimate().cycles
        assert status.counters["macs"] == 4 * cm.estimate().macs


def test_plain_input_sends_a_byte_a_pixel_and_matches_reference(cm, board):
    """k_pack=False: the first convolution as it is, its one-channel input one byte a pixel
    in WRITE_GROUPS frames (the K-packed input is 9 bytes a pixel)."""
    plain = dataclasses.replace(cm, k_pack=False)
    x = plain.quantize_input(zoo.example_input("digits-cnn", 2).numpy())
    sizes = {}
    for model in (cm, plain):
        with host.Session(model, f"board:socket://127.0.0.1:{board}") as sess:
            sent = []
            send = sess.backend.transport.send
            sess.backend.transport.send = lambda data: (sent.append(data), send(data))[1]
            assert np.array_equal(sess.run(x[:1]).ints, model.reference(x[:1]))
            groups = [f for f in map(lambda d: P.FrameDecoder().feed(d)[0], sent)
                      if f.cmd == P.Command.WRITE_GROUPS]
            sizes[model.k_pack] = sum(len(f.payload) - 2 for f in groups)
            assert np.array_equal(sess.run(x).ints, model.reference(x))
    pixels = 8 * 8                         # digits-cnn: 1x8x8 images, 3x3 'same' first conv
    assert sizes == {True: 9 * pixels, False: pixels}
    assert plain.estimate().cycles > cm.estimate().cycles


def test_faulty_line_gives_right_answers_or_a_clear_error(cm, board):
    proxy = FaultyProxy(board, seed=1)
    x = cm.quantize_input(zoo.example_input("digits-cnn", 3).numpy())
    try:
        with host.Session(cm, f"board:socket://127.0.0.1:{proxy.port}") as sess:
            sess.backend.link.attempts = 10
            out = sess.run(x).ints
    except (BackendError, host.errors.LinkError) as error:
        assert "did not answer" in str(error) or "no verified answer" in str(error)
    else:
        assert np.array_equal(out, cm.reference(x))
    assert proxy.faults > 0


def test_slow_line_that_drops_the_connection_gives_right_answers(cm, board):
    """Held-back chunks (some past the response timeout, so answers come late and
    requests are resent) and the connection closed mid-stream three times: the transport
    reopens the port, the link client resends with the same seq (a resent RUN is not run
    twice), and every result is right."""
    proxy = FaultyProxy(board, seed=3, flip=0, drop=0, delay=0.15, max_delay=0.8, closes=3)
    x = cm.quantize_input(zoo.example_input("digits-cnn", 3).numpy())
    with host.Session(cm, f"board:socket://127.0.0.1:{proxy.port}") as sess:
        sess.backend.link.attempts = 10
        assert np.array_equal(sess.run(x).ints, cm.reference(x))
        reconnects = sess.backend.transport.reconnects
        assert 1 <= reconnects == proxy.connections - 1 <= proxy.closed
        assert sess.backend.link.resends > 0
    assert proxy.delays > 0


def test_a_board_that_goes_away_is_one_clear_error(cm):
    """The board closes the connection and nothing listens any more: the transport
    cannot reopen the port and the run ends with one line naming it."""
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=serve, args=(MachineDevice(AcceleratorConfig()), 0),
                              kwargs=dict(ready=ready, stop=stop), daemon=True)
    thread.start()
    assert ready.wait(5)
    x = cm.quantize_input(zoo.example_input("digits-cnn", 1).numpy())
    sess = host.Session(cm, f"board:socket://127.0.0.1:{ready.port}")
    stop.set()
    thread.join(5)
    with pytest.raises(BackendError, match=rf"board:socket://127.0.0.1:{ready.port}: cannot "
                                           r"reopen board port 'socket://127.0.0.1:\d+'"):
        sess.run(x)


def test_no_board_is_one_clear_error(cm):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match=f"cannot open board port 'socket://127.0.0.1:{port}'"):
        host.Session(cm, f"board:socket://127.0.0.1:{port}")
    with pytest.raises(BackendError, match="backend board needs a port"):
        host.Session(cm, "board")


def test_device_refuses_bad_frames_without_touching_memory():
    dev = MachineDevice(AcceleratorConfig())
    good = P.write_request(1, P.Space.WEIGHTS, 0, b"\x01\x02\x03")
    wire = bytearray(good.encode())
    wire[12] ^= 0xFF  # corrupt the payload
    answer = P.FrameDecoder().feed(dev.feed(bytes(wire)))
    assert answer[0].cmd == P.Reply.NAK and answer[0].payload == bytes([P.NakCode.BAD_CRC])
    assert dev.memory[P.Space.WEIGHTS][:3] == b"\x00\x00\x00"
    unknown = P.Frame(0x42, 7)
    answer = P.FrameDecoder().feed(dev.feed(unknown.encode()))
    assert answer[0].payload == bytes([P.NakCode.UNKNOWN_COMMAND]) and answer[0].seq == 7
    half = good.encode()[:8]
    assert dev.feed(half) == b""
    answer = P.FrameDecoder().feed(dev.expire())
    assert answer[0].payload == bytes([P.NakCode.TRUNCATED])
    answer = P.FrameDecoder().feed(dev.feed(good.encode()))
    assert answer[0].cmd == P.Reply.ACK and dev.memory[P.Space.WEIGHTS][:3] == b"\x01\x02\x03"


def test_device_write_groups_fills_and_refuses_like_the_gateware():
    dev = MachineDevice(AcceleratorConfig())
    act = dev.memory[P.Space.ACTIVATIONS]
    act[:64] = b"\x5a" * 64

    def answer(frame):
        (reply,) = P.FrameDecoder().feed(dev.feed(frame.encode()))
        return reply

    ok = P.write_groups_request(1, P.Space.ACTIVATIONS, 8, bytes(range(1, 19)), 9, 16)
    assert answer(ok) == P.ack(1, ok.addr)
    assert act[:8] == b"\x5a" * 8 and act[40:48] == b"\x5a" * 8
    assert act[8:40] == bytes(range(1, 10)) + bytes(7) + bytes(range(10, 19)) + bytes(7)
    size = dev.sizes[P.Space.PARAMS]
    base = P.make_address(P.Space.ACTIVATIONS, 0)
    for frame, code in [  # the cases and order of tests/hw/test_link.py
        (P.Frame(P.Command.WRITE_GROUPS, 2, base, b"\x01\x01"), P.NakCode.BAD_LENGTH),
        (P.Frame(P.Command.WRITE_GROUPS, 3, base, b"\x00\x04ab"), P.NakCode.BAD_ARGUMENT),
        (P.Frame(P.Command.WRITE_GROUPS, 4, base, b"\x05\x04abcde"), P.NakCode.BAD_ARGUMENT),
        (P.Frame(P.Command.WRITE_GROUPS, 5, base, b"\x02\x04abc"), P.NakCode.BAD_LENGTH),
        (P.write_groups_request(6, P.Space.PARAMS, size - 5, b"abc", 1, 2),
         P.NakCode.BAD_ADDRESS),
    ]:
        assert answer(frame) == P.nak(frame.seq, code), str(frame)
    assert act[:8] == b"\x5a" * 8 and not any(dev.memory[P.Space.PARAMS])
    # A compact link (the iCEBreaker's) serves no WRITE_GROUPS, and says so in STATUS.
    compact = MachineDevice(AcceleratorConfig(compact_link=True))
    assert compact.status.features == P.Feature(0) and dev.status.features == P.Feature.WRITE_GROUPS
    (reply,) = P.FrameDecoder().feed(compact.feed(ok.encode()))
    assert reply == P.nak(1, P.NakCode.UNKNOWN_COMMAND)


def test_auto_finds_a_board_named_by_the_environment(cm, board, monkeypatch, caplog):
    caplog.set_level("INFO")
    monkeypatch.setenv("SAMOYED_BOARD", f"socket://127.0.0.1:{board}")
    with host.Session(cm, "auto") as sess:
        assert sess.backend.name == f"board:socket://127.0.0.1:{board}"
    assert f"backend auto: chose board:socket://127.0.0.1:{board}" in caplog.text


def test_auto_says_why_it_skipped_a_board(cm, monkeypatch, caplog):
    caplog.set_level("INFO")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SAMOYED_BOARD", f"socket://127.0.0.1:{port}")
    sess = host.Session(cm, "auto")
    assert sess.backend.name.startswith("torch:")
    assert f"no board: socket://127.0.0.1:{port}: cannot open board port" in caplog.text


def test_model_for_another_config_is_refused_before_sending(board):
    """The board reports its array and memories in STATUS; a model compiled for another
    config is refused with one clear line before any byte of it is sent."""
    other = compiler.compile(zoo.calibrate(zoo.build("digits-cnn"), "digits-cnn"),
                             config=AcceleratorConfig.parse("4x4"))
    with pytest.raises(BackendError, match=rf"the board at socket://127.0.0.1:{board} is a "
                                           r"8x8 accelerator; the model is compiled for 4x4: "
                                           r"recompile with --config 8x8"):
        host.Session(other, f"board:socket://127.0.0.1:{board}")
