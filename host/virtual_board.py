"""A virtual board: the accelerator's host-link protocol served over TCP.

`MachineDevice` answers frames exactly as the gateware's `HostLink` does (docs/protocol.md)
over memories sized by `hw.derive(config)`, and executes RUN with the program simulator
(`sim/machine.py`), reporting the cycle model's counts in STATUS. `serve` puts it behind
a TCP port, so `board:socket://127.0.0.1:PORT` exercises the whole host path — framing,
CRC, retries, the board backend — with no board.
"""

from __future__ import annotations

import logging
import socket
import struct

import numpy as np

from hw import AcceleratorConfig, derive, isa, layout
from sim import cycles, machine

from . import protocol as P
from .errors import BadCrcError, FrameLengthError, TruncatedFrameError

log = logging.getLogger(__name__)

INTER_BYTE_TIMEOUT = 0.05   # seconds of silence that end a half-received frame


class MachineDevice:
    """The device side of the link protocol, running programs on the program simulator."""

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        self.sizes = {P.Space(space.value): size for space, size in
                      derive(config).space_sizes.items()}
        self.memory = {space: bytearray(size) for space, size in self.sizes.items()}
        self.status = self._identity(P.DeviceStatus())
        self.decoder = P.FrameDecoder()
        self._last_run_seq = None

    def _identity(self, status):
        """`status` with this device's array and memory sizes."""
        import dataclasses
        return dataclasses.replace(
            status, rows=self.config.rows, cols=self.config.cols,
            features=P.Feature.WRITE_GROUPS if self.config.group_writes else P.Feature(0),
            space_bytes={name: self.sizes[P.Space(i)] for i, name in enumerate(P.SPACE_NAMES)})

    # -- bytes in, bytes out -----------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Answer every frame (or framing error) completed by `data`."""
        return self._answer(self.decoder.feed(data))

    def expire(self) -> bytes:
        """The line went quiet: a half-received frame is truncated."""
        return self._answer(self.decoder.expire())

    def _answer(self, events) -> bytes:
        out = bytearray()
        for event in events:
            if isinstance(event, BadCrcError):
                out += P.nak(0, P.NakCode.BAD_CRC).encode()
            elif isinstance(event, FrameLengthError):
                out += P.nak(0, P.NakCode.TOO_LONG).encode()
            elif isinstance(event, TruncatedFrameError):
                out += P.nak(0, P.NakCode.TRUNCATED).encode()
            elif isinstance(event, P.Frame):
                out += self.handle(event).encode()
        return bytes(out)

    # -- commands ---------------------------------------------------------------------

    def handle(self, frame: P.Frame) -> P.Frame:
        """The answer to one verified request frame."""
        handlers = {P.Command.WRITE: self._write, P.Command.READ: self._read,
                    P.Command.RUN: self._run, P.Command.STATUS: self._status,
                    P.Command.RESET: self._reset}
        if self.config.group_writes:
            handlers[P.Command.WRITE_GROUPS] = self._write_groups
        handler = handlers.get(frame.cmd)
        if handler is None:
            return P.nak(frame.seq, P.NakCode.UNKNOWN_COMMAND)
        if frame.cmd != P.Command.RUN:
            self._last_run_seq = None
        return handler(frame)

    def _span(self, frame: P.Frame, count: int):
        try:
            space, offset = P.split_address(frame.addr)
        except Exception:  # noqa: BLE001 - any bad address is one NAK
            return None
        if not 0 < count or offset + count > self.sizes[space]:
            return None
        return space, offset

    def _write(self, frame):
        span = self._span(frame, len(frame.payload))
        if span is None:
            return P.nak(frame.seq, P.NakCode.BAD_ADDRESS)
        space, offset = span
        self.memory[space][offset:offset + len(frame.payload)] = frame.payload
        return P.ack(frame.seq, frame.addr)

    def _write_groups(self, frame):
        # The gateware's order: length, argument, whole groups, address, busy.
        if len(frame.payload) < 3:
            return P.nak(frame.seq, P.NakCode.BAD_LENGTH)
        width, group, data = frame.payload[0], frame.payload[1], frame.payload[2:]
        if not 1 <= width <= group:
            return P.nak(frame.seq, P.NakCode.BAD_ARGUMENT)
        if len(data) % width:
            return P.nak(frame.seq, P.NakCode.BAD_LENGTH)
        count = len(data) // width * group
        span = self._span(frame, count)
        if span is None:
            return P.nak(frame.seq, P.NakCode.BAD_ADDRESS)
        space, offset = span
        padded = bytearray(count)
        for k in range(len(data) // width):
            padded[k * group:k * group + width] = data[k * width:(k + 1) * width]
        self.memory[space][offset:offset + count] = padded
        return P.ack(frame.seq, frame.addr)

    def _read(self, frame):
        if len(frame.payload) != 4:
            return P.nak(frame.seq, P.NakCode.BAD_LENGTH)
        (count,) = struct.unpack("<I", frame.payload)
        if count > P.MAX_PAYLOAD:
            return P.nak(frame.seq, P.NakCode.BAD_ARGUMENT)
        span = self._span(frame, count)
        if span is None:
            return P.nak(frame.seq, P.NakCode.BAD_ADDRESS)
        space, offset = span
        return P.ack(frame.seq, frame.addr, bytes(self.memory[space][offset:offset + count]))

    def _run(self, frame):
        if len(frame.payload) != 4:
            return P.nak(frame.seq, P.NakCode.BAD_LENGTH)
        space, offset = P.split_address(frame.addr)
        if space != P.Space.PROGRAM or offset % isa.DESCRIPTOR_BYTES or \
                offset >= self.sizes[space]:
            return P.nak(frame.seq, P.NakCode.BAD_ADDRESS)
        if frame.seq == self._last_run_seq:
            return P.ack(frame.seq, frame.addr)  # a resent RUN is not run twice
        self._last_run_seq = frame.seq
        (watchdog,) = struct.unpack("<I", frame.payload)
        R, C = self.config.rows, self.config.cols
        image = layout.MemoryImage(
            R, C, self.config.act_depth,
            np.frombuffer(bytes(self.memory[P.Space.WEIGHTS]), np.uint8),
            np.frombuffer(bytes(self.memory[P.Space.PARAMS]), np.uint8),
            np.frombuffer(bytes(self.memory[P.Space.PROGRAM][offset:]), np.uint8))
        image.act[:] = np.frombuffer(bytes(self.memory[P.Space.ACTIVATIONS]),
                                     np.uint8).reshape(-1, R)
        flags = P.StatusFlag.DONE
        try:
            program = isa.unpack_program(image.prg)
            est = cycles.estimate_on(program, self.config)
            descriptor = len(est.layers) - 1
            if est.cycles > watchdog:
                # The hardware would be stopped by its watchdog part-way; nothing is written.
                flags, run_cycles, macs = P.StatusFlag.WATCHDOG, watchdog, 0
                elapsed = 0
                for descriptor, layer in enumerate(est.layers):
                    elapsed += layer.cycles
                    if elapsed > watchdog:
                        break
            else:
                machine.run(image)
                self.memory[P.Space.ACTIVATIONS][:] = image.act.tobytes()
                run_cycles, macs = est.cycles, est.macs
        except (isa.IsaError, machine.MachineError) as error:
            log.warning("run at %#x failed: %s", offset, error)
            flags, run_cycles, macs, descriptor = P.StatusFlag.WATCHDOG, watchdog, 0, 0
        counters = dict(self.status.counters)
        counters["cycles"] = (counters["cycles"] + run_cycles) & 0xFFFFFFFF
        counters["busy_cycles"] = (counters["busy_cycles"] + run_cycles) & 0xFFFFFFFF
        counters["macs"] = (counters["macs"] + macs) & 0xFFFFFFFF
        counters["descriptor"] = descriptor
        self.status = self._identity(P.DeviceStatus(flags, run_cycles=run_cycles,
                                                    counters=counters))
        return P.ack(frame.seq, frame.addr)

    def _status(self, frame):
        return P.ack(frame.seq, frame.addr, self.status.encode())

    def _reset(self, frame):
        self.status = self._identity(P.DeviceStatus(counters=self.status.counters))
        return P.ack(frame.seq, frame.addr)


def serve(device: MachineDevice, port: int, host: str = "127.0.0.1", *,
          ready=None, stop=None) -> None:
    """Serve `device` on TCP `host:port`, one connection at a time, until `stop` is set.

    `ready` (a threading.Event) is set once the port is listening.
    """
    with socket.create_server((host, port), reuse_port=False) as server:
        server.settimeout(0.2)
        log.info("virtual board listening on %s:%d (%s)", host, server.getsockname()[1],
                 device.config.label)
        if ready is not None:
            ready.port = server.getsockname()[1]
            ready.set()
        while stop is None or not stop.is_set():
            try:
                conn, peer = server.accept()
            except socket.timeout:
                continue
            log.info("connection from %s:%d", *peer)
            with conn:
                conn.settimeout(INTER_BYTE_TIMEOUT)
                device.decoder.reset()
                while stop is None or not stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except socket.timeout:
                        reply = device.expire()
                    except OSError:
                        break
                    else:
                        if not data:
                            break
                        reply = device.feed(data)
                    if reply:
                        try:
                            conn.sendall(reply)
                        except OSError:
                            break
