"""`board:URL`: a board (or the virtual board) over the framed host-link protocol.

URL is any pyserial URL: `/dev/ttyUSB0`, `socket://127.0.0.1:5555`, `loop://`. The
backend loads the weights, parameters and program once, then per frame writes the
(K-packed) input into the activation banks, runs the program, polls STATUS until done and
reads the output back; every byte it returns came in a CRC-verified frame.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import protocol as P
from ..errors import BackendError, LinkError, WatchdogError
from .base import Backend

log = logging.getLogger(__name__)

DEFAULT_BAUD = 1_000_000


class SerialTransport:
    """`host.protocol.Transport` over a pyserial port or URL."""

    def __init__(self, url: str, baudrate: int = DEFAULT_BAUD):
        import serial
        try:
            self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=0)
        except (serial.SerialException, ValueError, OSError) as error:
            raise BackendError(f"cannot open board port {url!r}: {error}; check the device "
                               "path or start `samoyed virtual-board --port PORT` and use "
                               "board:socket://127.0.0.1:PORT") from None
        self.url = url

    def send(self, data: bytes) -> None:
        self.port.write(data)

    def receive(self, timeout: float) -> bytes:
        self.port.timeout = max(timeout, 0)
        first = self.port.read(1)
        if not first:
            return b""
        self.port.timeout = 0
        return first + self.port.read(65536)

    def close(self) -> None:
        self.port.close()


def check_device(status: P.DeviceStatus, cm, url: str) -> None:
    """Refuse, before anything is sent, a model compiled for another accelerator than
    the one at `url` reports (array shape, or memories too small for its image)."""
    config, image = cm.config, cm.program.image
    if status.rows and (status.rows, status.cols) != (config.rows, config.cols):
        raise BackendError(
            f"the board at {url} is a {status.rows}x{status.cols} accelerator; the model is "
            f"compiled for {config.label}: recompile with --config "
            f"{status.rows}x{status.cols}")
    R = config.rows
    inp, out = cm.program.input, cm.program.output
    act_bytes = max(inp.base + inp.words(R), out.base + out.words(R),
                    cm.program.usage.get("act_words", 0)) * R
    needs = {"activations": act_bytes, "weights": image.wgt.nbytes,
             "params": image.prm.nbytes, "program": image.prg.nbytes}
    for name, size in needs.items():
        have = status.space_bytes.get(name, 0)
        if have and size > have:
            raise BackendError(
                f"the board at {url} has {have:,} bytes of {name} memory; the model needs "
                f"{size:,} (compiled for a config with bigger memories): recompile for the "
                "board's config (`samoyed boards` lists them)")


class BoardBackend(Backend):
    """Runs a compiled program on whatever answers the link protocol at `url`."""

    def __init__(self, cm, url: str, *, response_timeout: float = 0.5, attempts: int = 5):
        self.name = f"board:{url}"
        self.program = cm.program
        self.config = cm.config
        self.transport = SerialTransport(url)
        self.link = P.LinkClient(self.transport, response_timeout=response_timeout,
                                 attempts=attempts)
        self.estimate = cm.estimate()
        self.last_status = None
        try:
            status = self.link.status()
            if status.version != P.PROTOCOL_VERSION:
                raise BackendError(f"board at {url} speaks protocol version {status.version}, "
                                   f"this host {P.PROTOCOL_VERSION}; update one of them")
            self.link.max_payload = min(self.link.max_payload, status.max_payload)
            check_device(status, cm, url)
            self._load_static()
        except LinkError as error:
            self.transport.close()
            raise BackendError(f"board at {url} did not answer: {error}") from None

    def _load_static(self) -> None:
        image = self.program.image
        self.link.write(P.Space.WEIGHTS, 0, image.wgt.tobytes())
        self.link.write(P.Space.PARAMS, 0, image.prm.tobytes())
        self.link.write(P.Space.PROGRAM, 0, image.prg.tobytes())

    def run_ints(self, x_int: np.ndarray) -> np.ndarray:
        R = self.config.rows
        inp, out = self.program.input, self.program.output
        out_words = out.words(R)
        watchdog = 2 * self.estimate.cycles + 10_000
        results = []
        for frame in x_int:
            words = self.program.pack_input(frame)
            self.link.write(P.Space.ACTIVATIONS, inp.base * R, words.tobytes())
            try:
                self.last_status = self.link.run(0, watchdog)
            except WatchdogError as error:
                index = self.link.status().counters["descriptor"]
                names = self.program.layer_names
                where = f"layer {names[index]}" if index < len(names) else "the END descriptor"
                raise BackendError(f"{self.name}: {error} ({where}); the run took more than "
                                   f"twice the modelled {self.estimate.cycles} cycles") from None
            raw = self.link.read(P.Space.ACTIVATIONS, out.base * R, out_words * R)
            act = np.zeros((out.base + out_words, R), dtype=np.uint8)
            act[out.base:] = np.frombuffer(raw, np.uint8).reshape(out_words, R)
            results.append(self.program.read_output(act))
        return np.stack(results)

    def close(self) -> None:
        self.transport.close()


def probe(url: str, timeout: float = 0.2) -> str | None:
    """None if a samoyed board answers STATUS at `url`, else why not (one line)."""
    try:
        transport = SerialTransport(url)
    except BackendError as error:
        return str(error).split(";")[0]
    try:
        status = P.LinkClient(transport, attempts=1, response_timeout=timeout).status()
        if status.version != P.PROTOCOL_VERSION:
            return f"speaks protocol version {status.version}, not {P.PROTOCOL_VERSION}"
        return None
    except LinkError as error:
        return f"no answer ({error.__class__.__name__})"
    finally:
        transport.close()


def create(cm, arg: str) -> BoardBackend:
    if not arg:
        raise BackendError("backend board needs a port: board:/dev/ttyUSB0 or "
                           "board:socket://HOST:PORT")
    return BoardBackend(cm, arg)

