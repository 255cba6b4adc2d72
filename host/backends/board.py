"""`board:URL`: a board (or the virtual board) over the framed host-link protocol.

URL is any pyserial URL: `/dev/ttyUSB0`, `socket://127.0.0.1:5555`, `loop://`. The
backend loads the weights, parameters and program once, then per frame writes the
(K-packed) input into the activation banks (in WRITE_GROUPS frames: without the banks'
padding), runs the program, polls STATUS until done and reads the output back; every
byte it returns came in a CRC-verified frame.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import protocol as P
from ..errors import BackendError, LinkError, LinkLostError, WatchdogError
from .base import Backend

log = logging.getLogger(__name__)

DEFAULT_BAUD = 1_000_000


class SerialTransport:
    """`host.protocol.Transport` over a pyserial port or URL.

    A port that fails under it (the board closed the socket, the adapter was unplugged
    and came back) is reopened once per failure; the bytes in flight are lost, and the
    link client's resend (same seq: a resent RUN is not run twice) recovers them. A port
    that cannot be reopened is a `LinkLostError` naming it.
    """

    def __init__(self, url: str, baudrate: int = DEFAULT_BAUD):
        self.url, self.baudrate = url, baudrate
        self.reconnects = 0
        try:
            self.port = self._open()
        except LinkLostError as error:
            raise BackendError(f"cannot open board port {url!r}: {error.__cause__}; check "
                               "the device path or start `samoyed virtual-board --port PORT` "
                               "and use board:socket://127.0.0.1:PORT") from None

    def _open(self):
        import serial
        try:
            return serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0)
        except (serial.SerialException, ValueError, OSError) as error:
            raise LinkLostError(f"cannot reopen board port {self.url!r}: {error}") from error

    def _reopen(self, error: Exception) -> None:
        log.info("board port %s failed (%s); reopening it", self.url, error)
        try:
            self.port.close()
        except Exception:  # noqa: BLE001 - the port is already broken; nothing to save
            pass
        self.reconnects += 1
        self.port = self._open()

    def send(self, data: bytes) -> None:
        import serial
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as error:
            self._reopen(error)
            try:
                self.port.write(data)
            except (serial.SerialException, OSError) as again:
                raise LinkLostError(f"board port {self.url!r} fails right after being "
                                    f"reopened: {again}") from None

    def receive(self, timeout: float) -> bytes:
        import serial
        try:
            self.port.timeout = max(timeout, 0)
            first = self.port.read(1)
            if not first:
                return b""
            self.port.timeout = 0
            return first + self.port.read(65536)
        except (serial.SerialException, OSError) as error:
            self._reopen(error)
            return b""

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
            self.group_writes = bool(status.features & P.Feature.WRITE_GROUPS)
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
        out = self.program.output
        out_words = out.words(R)
        watchdog = 2 * self.estimate.cycles + 10_000
        results = []
        for frame in x_int:
            try:
                raw = self._run_frame(frame, watchdog)
            except WatchdogError as error:
                index = self.link.status().counters["descriptor"]
                names = self.program.layer_names
                where = f"layer {names[index]}" if index < len(names) else "the END descriptor"
                raise BackendError(f"{self.name}: {error} ({where}); the run took more than "
                                   f"twice the modelled {self.estimate.cycles} cycles") from None
            except LinkError as error:
                raise BackendError(f"{self.name}: {error}") from None
            act = np.zeros((out.base + out_words, R), dtype=np.uint8)
            act[out.base:] = np.frombuffer(raw, np.uint8).reshape(out_words, R)
            results.append(self.program.read_output(act))
        return np.stack(results)

    def _run_frame(self, frame: np.ndarray, watchdog: int) -> bytes:
        raw, self.last_status = run_frame(self.link, self.program, frame, watchdog,
                                          self.group_writes)
        return raw

    def close(self) -> None:
        self.transport.close()


def run_frame(link: P.LinkClient, program, frame: np.ndarray, watchdog: int,
              group_writes: bool = True):
    """Write one input over `link`, run `program`, read its output bytes back: (bytes,
    final DeviceStatus). The input goes without its bank padding where the device serves
    WRITE_GROUPS (`group_writes`) and they can carry it (a pixel's channels in at most
    255 bytes of bank words), so a one-channel image costs a byte a pixel instead of a
    bank word."""
    R = program.config.rows
    inp, out = program.input, program.output
    data, width, group = program.input_groups(frame)
    if group_writes and group <= 255 and width <= link.max_payload - 2:
        link.write_groups(P.Space.ACTIVATIONS, inp.base * R, data, width, group)
    else:
        link.write(P.Space.ACTIVATIONS, inp.base * R, program.pack_input(frame).tobytes())
    status = link.run(0, watchdog)
    return link.read(P.Space.ACTIVATIONS, out.base * R, out.words(R) * R), status


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

