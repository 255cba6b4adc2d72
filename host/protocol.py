"""Host link protocol: frame format, codes and an incremental decoder.

This module is the executable definition of ``docs/protocol.md``. It needs no
simulator or hardware: the host runtime, the tests of the gateware
(``hw/link.py``) and the virtual board all build and check frames with these
functions, so both ends of the link are proven against one definition. The
memory-space codes come from ``hw.isa.Space``, their one definition.

A frame on the wire::

    0xA5 | cmd u8 | seq u8 | addr u32 | len u32 | payload (len bytes) | crc32 u32

All multi-byte fields are little endian. ``crc32`` is ``zlib.crc32`` (IEEE
802.3, reflected, init and final XOR 0xFFFFFFFF) over ``cmd .. payload``: the
sync byte is excluded because it carries no information.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Protocol

from hw import isa as _isa

from .errors import (BadCrcError, FrameError, FrameLengthError, NakError, NoResponseError,
                     RequestError, ResponseError, TruncatedFrameError, WatchdogError)

__all__ = [
    "SYNC", "HEADER_SIZE", "CRC_SIZE", "MAX_PAYLOAD", "PROTOCOL_VERSION",
    "SPACE_SHIFT", "OFFSET_BITS", "OFFSET_MASK", "STATUS_SIZE", "COUNTER_NAMES", "SPACE_NAMES",
    "Command", "Reply", "NakCode", "Space", "StatusFlag", "Feature",
    "Frame", "DeviceStatus", "FrameDecoder",
    "crc32", "encode_frame", "make_address", "split_address",
    "write_request", "write_groups_request", "read_request", "run_request", "status_request", "reset_request",
    "ack", "nak", "check_response", "RETRYABLE", "Transport", "LinkClient",
]

logger = logging.getLogger(__name__)

SYNC = 0xA5
#: Sync, cmd, seq, addr, len.
HEADER_SIZE = 11
CRC_SIZE = 4
#: Largest payload of any frame. A device may accept less (it reports its own
#: limit in :class:`DeviceStatus`); nothing may send more.
MAX_PAYLOAD = 1024
PROTOCOL_VERSION = 3

#: The memory space is the top 4 bits of ``addr``; the offset is the low 28.
SPACE_SHIFT = 28
OFFSET_BITS = 28
OFFSET_MASK = (1 << OFFSET_BITS) - 1

_HEADER = struct.Struct("<BBBII")   # sync, cmd, seq, addr, len


class Command(enum.IntEnum):
    """Request codes (``cmd`` of a host → device frame)."""
    WRITE = 0x01    # payload: bytes to store at addr
    READ = 0x02     # payload: u32 byte count; answered with that many bytes
    RUN = 0x03      # addr: program address; payload: u32 watchdog limit in cycles
    STATUS = 0x04   # no payload; answered with a DeviceStatus
    RESET = 0x05    # no payload; aborts a run and clears the status flags
    WRITE_GROUPS = 0x06  # payload: width u8, group u8, data; groups zero-filled to `group`


class Reply(enum.IntEnum):
    """Response codes (``cmd`` of a device → host frame)."""
    ACK = 0x80
    NAK = 0x81


class NakCode(enum.IntEnum):
    """The single payload byte of a NAK frame."""
    # Framing errors: the frame was not verified, so a resend may succeed.
    BAD_CRC = 0x01          # the frame's CRC did not match; memory untouched
    TRUNCATED = 0x02        # the frame stopped for longer than the inter-byte timeout
    TOO_LONG = 0x03         # len exceeds the device's max payload; frame drained unverified
    # Refusals of a verified frame: resending the same frame gives the same answer.
    UNKNOWN_COMMAND = 0x04  # cmd is not a Command
    BAD_LENGTH = 0x05       # len (or a READ count) is not allowed for this command
    BAD_ADDRESS = 0x06      # unknown space, or the access runs past the end of the space
    BAD_ARGUMENT = 0x07     # a payload argument is out of range (RUN watchdog 0, group width)
    BUSY = 0x08             # WRITE/READ/RUN while a run is in progress


_NAK_HELP = {
    NakCode.BAD_CRC: "the request was corrupted on the line; resend it with the same seq",
    NakCode.TRUNCATED: "the request stopped mid-frame; resend it with the same seq",
    NakCode.TOO_LONG: "the frame's length exceeds the device's max payload (see STATUS) or "
                      "was corrupted on the line; resend, or split the transfer",
    NakCode.UNKNOWN_COMMAND: "the device does not know this command; check the protocol version",
    NakCode.BAD_LENGTH: "the length is not allowed for this command or a READ count exceeds "
                        "the device's max payload; split the transfer",
    NakCode.BAD_ADDRESS: "the address is outside the memory space; check the space size",
    NakCode.BAD_ARGUMENT: "a payload argument is out of range",
    NakCode.BUSY: "a run is in progress; poll STATUS until it finishes or send RESET",
}

#: NAKs worth resending unchanged: the request was not verified, it may have
#: been damaged on the line.
RETRYABLE = frozenset({NakCode.BAD_CRC, NakCode.TRUNCATED, NakCode.TOO_LONG})


#: Memory spaces, selected by the top 4 bits of ``addr``: hw.isa.Space as integers.
Space = enum.IntEnum("Space", {space.name: space.value for space in _isa.Space})
Space.__doc__ = "Memory spaces, selected by the top 4 bits of ``addr``."


class StatusFlag(enum.IntFlag):
    """Bits of :attr:`DeviceStatus.flags`."""
    RUNNING = 0x01   # a run was started and has neither finished nor been aborted
    DONE = 0x02      # the last run finished by itself
    WATCHDOG = 0x04  # the last run was aborted because it exceeded its watchdog limit


class Feature(enum.IntFlag):
    """Bits of :attr:`DeviceStatus.features`: optional commands the device serves."""
    WRITE_GROUPS = 0x0001


#: The accelerator's performance counters, in the order STATUS sends them.
COUNTER_NAMES = ("cycles", "busy_cycles", "macs", "stall_cycles", "descriptor")
SPACE_NAMES = ("activations", "weights", "params", "program")
_STATUS = struct.Struct("<BBHI" + "I" * len(COUNTER_NAMES) + "BBH" + "I" * len(SPACE_NAMES))
STATUS_SIZE = _STATUS.size


def crc32(data: bytes) -> int:
    """CRC-32 of ``data`` as the link computes it (IEEE, same as ``zlib.crc32``)."""
    return zlib.crc32(data) & 0xFFFFFFFF


def _check_field(name, value, bits):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise RequestError(f"{name} must be an integer in 0..{(1 << bits) - 1}, not {value!r}")


def make_address(space: Space | int, offset: int) -> int:
    """The 32-bit ``addr`` of byte ``offset`` in memory ``space``."""
    try:
        space = Space(space)
    except ValueError:
        raise RequestError(f"unknown memory space {space!r}; use one of "
                           f"{', '.join(s.name for s in Space)}") from None
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= OFFSET_MASK:
        raise RequestError(f"offset {offset!r} does not fit in the {OFFSET_BITS}-bit offset of "
                           f"a memory address; use 0..{OFFSET_MASK:#x}")
    return (space << SPACE_SHIFT) | offset


def split_address(addr: int) -> tuple[Space, int]:
    """``(space, offset)`` of a 32-bit ``addr``; raises for a space the protocol lacks."""
    _check_field("addr", addr, 32)
    space = addr >> SPACE_SHIFT
    if space not in Space._value2member_map_:
        raise RequestError(f"address {addr:#010x} names memory space {space}, which does not "
                           f"exist; use one of {', '.join(f'{s.name}={s.value}' for s in Space)}")
    return Space(space), addr & OFFSET_MASK


@dataclass(frozen=True)
class Frame:
    """One verified frame: a request (cmd is a :class:`Command`) or a response (a :class:`Reply`).

    ``cmd`` stays a plain int when it is not a known code, so a decoder can
    hand over frames whose command only the receiver can judge.
    """
    cmd: int
    seq: int
    addr: int = 0
    payload: bytes = b""

    def __post_init__(self):
        _check_field("cmd", self.cmd, 8)
        _check_field("seq", self.seq, 8)
        _check_field("addr", self.addr, 32)
        if not isinstance(self.payload, (bytes, bytearray)):
            raise RequestError(f"payload must be bytes, not {type(self.payload).__name__}")
        if len(self.payload) > MAX_PAYLOAD:
            raise RequestError(f"payload of {len(self.payload)} bytes exceeds the protocol "
                               f"maximum of {MAX_PAYLOAD}; split it into several frames")
        object.__setattr__(self, "payload", bytes(self.payload))
        object.__setattr__(self, "cmd", _known_code(self.cmd))

    def encode(self) -> bytes:
        """The bytes of this frame on the wire, sync byte and CRC included."""
        body = _HEADER.pack(SYNC, self.cmd, self.seq, self.addr, len(self.payload))[1:]
        body += self.payload
        return bytes([SYNC]) + body + struct.pack("<I", crc32(body))

    def __str__(self):
        name = self.cmd.name if isinstance(self.cmd, enum.IntEnum) else f"{self.cmd:#04x}"
        return f"{name} seq {self.seq} addr {self.addr:#010x} len {len(self.payload)}"


def _known_code(cmd):
    for cls in (Command, Reply):
        if cmd in cls._value2member_map_:
            return cls(cmd)
    return int(cmd)


def encode_frame(cmd: int, seq: int, addr: int = 0, payload: bytes = b"") -> bytes:
    """The wire bytes of a frame (see :meth:`Frame.encode`)."""
    return Frame(cmd, seq, addr, payload).encode()


# --- requests ---------------------------------------------------------------------------

def write_request(seq: int, space: Space, offset: int, data: bytes) -> Frame:
    """Store ``data`` (1..MAX_PAYLOAD bytes) at ``offset`` in ``space``."""
    if not 1 <= len(data) <= MAX_PAYLOAD:
        raise RequestError(f"a WRITE carries 1..{MAX_PAYLOAD} bytes, not {len(data)}; "
                           f"split larger transfers")
    return Frame(Command.WRITE, seq, make_address(space, offset), bytes(data))


def write_groups_request(seq: int, space: Space, offset: int, data: bytes, width: int,
                         group: int) -> Frame:
    """Store ``data`` at ``offset`` in groups: each ``width`` bytes of it, then zeros to
    ``group`` bytes (a tensor whose channels fill part of each bank word, sent without the
    padding). ``len(data)`` is a multiple of ``width``, at most ``MAX_PAYLOAD - 2``.
    """
    for name, value in (("width", width), ("group", group)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 255:
            raise RequestError(f"a WRITE_GROUPS {name} is 1..255 bytes, not {value!r}")
    if width > group:
        raise RequestError(f"a WRITE_GROUPS width ({width}) exceeds its group ({group})")
    if not 1 <= len(data) <= MAX_PAYLOAD - 2 or len(data) % width:
        raise RequestError(f"a WRITE_GROUPS carries a multiple of its width ({width}) of "
                           f"1..{MAX_PAYLOAD - 2} bytes, not {len(data)}; split larger "
                           f"transfers")
    return Frame(Command.WRITE_GROUPS, seq, make_address(space, offset),
                 bytes([width, group]) + bytes(data))


def read_request(seq: int, space: Space, offset: int, count: int) -> Frame:
    """Read ``count`` (1..MAX_PAYLOAD) bytes from ``offset`` in ``space``."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PAYLOAD:
        raise RequestError(f"a READ returns 1..{MAX_PAYLOAD} bytes, not {count!r}; "
                           f"split larger transfers")
    return Frame(Command.READ, seq, make_address(space, offset), struct.pack("<I", count))


def run_request(seq: int, program_offset: int, watchdog_cycles: int) -> Frame:
    """Start the program at ``program_offset``; the device aborts it after ``watchdog_cycles``."""
    if (isinstance(watchdog_cycles, bool) or not isinstance(watchdog_cycles, int)
            or not 1 <= watchdog_cycles < (1 << 32)):
        raise RequestError(f"watchdog_cycles must be in 1..{(1 << 32) - 1}, not "
                           f"{watchdog_cycles!r}; every run needs a bound")
    return Frame(Command.RUN, seq, make_address(Space.PROGRAM, program_offset),
                 struct.pack("<I", watchdog_cycles))


def status_request(seq: int) -> Frame:
    """Ask for a :class:`DeviceStatus`."""
    return Frame(Command.STATUS, seq)


def reset_request(seq: int) -> Frame:
    """Abort a run and clear the status flags (memories keep their contents)."""
    return Frame(Command.RESET, seq)


# --- responses --------------------------------------------------------------------------

def ack(seq: int, addr: int = 0, payload: bytes = b"") -> Frame:
    """An ACK answering request ``seq``; ``addr`` echoes the request's."""
    return Frame(Reply.ACK, seq, addr, payload)


def nak(seq: int, code: NakCode) -> Frame:
    """A NAK answering request ``seq`` (0 if its seq never arrived)."""
    return Frame(Reply.NAK, seq, 0, bytes([NakCode(code)]))


@dataclass(frozen=True)
class DeviceStatus:
    """Payload of the ACK to STATUS (``STATUS_SIZE`` bytes, little endian)::

        flags u8 | version u8 | max_payload u16 | run_cycles u32 | counters u32 × 5
        | rows u8 | cols u8 | features u16 | space bytes u32 × 4

    `rows`, `cols` and `space_bytes` say what the device is (0: not reported), `features`
    which optional commands it serves.
    """
    flags: StatusFlag = StatusFlag(0)
    version: int = PROTOCOL_VERSION
    max_payload: int = MAX_PAYLOAD
    run_cycles: int = 0
    counters: dict = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    rows: int = 0
    cols: int = 0
    space_bytes: dict = field(default_factory=lambda: dict.fromkeys(SPACE_NAMES, 0))
    features: Feature = Feature(0)

    def encode(self) -> bytes:
        """The STATUS payload bytes."""
        return _STATUS.pack(int(self.flags), self.version, self.max_payload, self.run_cycles,
                            *(self.counters[name] for name in COUNTER_NAMES),
                            self.rows, self.cols, int(self.features),
                            *(self.space_bytes[name] for name in SPACE_NAMES))

    @classmethod
    def decode(cls, payload: bytes) -> DeviceStatus:
        """Parse a STATUS payload."""
        if len(payload) != STATUS_SIZE:
            raise ResponseError(f"a STATUS answer carries {STATUS_SIZE} bytes, not "
                                f"{len(payload)}; the device speaks another protocol version")
        flags, version, max_payload, run_cycles, *rest = _STATUS.unpack(payload)
        n = len(COUNTER_NAMES)
        counters, (rows, cols, features), sizes = rest[:n], rest[n:n + 3], rest[n + 3:]
        return cls(StatusFlag(flags), version, max_payload, run_cycles,
                   dict(zip(COUNTER_NAMES, counters)), rows, cols,
                   dict(zip(SPACE_NAMES, sizes)), Feature(features))


def check_response(request: Frame, response: Frame) -> bytes:
    """The payload of ``response`` if it is a valid ACK to ``request``; raise otherwise.

    Raises :class:`NakError` for a NAK and :class:`ResponseError` for an answer
    to some other request or one whose shape does not fit the command.
    """
    if response.cmd == Reply.NAK:
        code = response.payload[0] if len(response.payload) == 1 else None
        if code not in NakCode._value2member_map_:
            raise ResponseError(f"NAK to {request} carries {response.payload.hex() or 'nothing'}"
                                f" instead of one NakCode byte")
        code = NakCode(code)
        # A frame refused for corruption or truncation may have lost its seq on
        # the line, so such a NAK applies to whatever request is outstanding.
        if response.seq == request.seq or code in RETRYABLE:
            raise NakError(f"device refused {request} with NAK {code.name} ({code:#04x}): "
                           f"{_NAK_HELP[code]}", code)
    if response.seq != request.seq:
        raise ResponseError(f"response seq {response.seq} does not answer request seq "
                            f"{request.seq}; it is stale, drop it and keep waiting")
    if response.cmd != Reply.ACK:
        raise ResponseError(f"response to {request} has cmd {response.cmd:#04x}, "
                            f"expected ACK {Reply.ACK:#04x} or NAK {Reply.NAK:#04x}")
    if response.addr != request.addr:
        raise ResponseError(f"ACK to {request} echoes addr {response.addr:#010x} "
                            f"instead of {request.addr:#010x}")
    expected = _expected_ack_length(request)
    if expected is not None and len(response.payload) != expected:
        raise ResponseError(f"ACK to {request} carries {len(response.payload)} bytes, "
                            f"expected {expected}")
    return response.payload


def _expected_ack_length(request):
    if request.cmd == Command.READ:
        return struct.unpack("<I", request.payload)[0]
    if request.cmd == Command.STATUS:
        return STATUS_SIZE
    if request.cmd in (Command.WRITE, Command.WRITE_GROUPS, Command.RUN, Command.RESET):
        return 0
    return None


# --- decoding ---------------------------------------------------------------------------

class FrameDecoder:
    """Turns a byte stream into frames, incrementally.

    :meth:`feed` returns, in stream order, every complete frame whose CRC
    verified and a :class:`FrameError` (not raised) for every candidate that
    failed. Bytes before a sync byte are skipped and counted in
    :attr:`skipped`. After a failure the decoder rescans from the byte after
    the failed candidate's sync, so a real frame hidden behind a stray 0xA5 is
    still found. Only bytes that may start a frame stay buffered.
    """

    def __init__(self):
        self._buffer = bytearray()
        self.skipped = 0

    @property
    def pending(self) -> int:
        """Bytes buffered as the start of a frame that is not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Add received bytes; return the frames (and framing errors) they complete."""
        self._buffer += data
        return self._scan()

    def expire(self) -> list[Frame | FrameError]:
        """Call when the line has been idle for the inter-byte timeout.

        A partial frame can then never complete: it is reported as a
        :class:`TruncatedFrameError` and the rest of the buffer is rescanned.
        """
        if not self._buffer:
            return []
        error = TruncatedFrameError(
            f"frame stopped after {len(self._buffer)} bytes "
            f"(a header is {HEADER_SIZE} bytes{self._claimed_length_note()}); "
            f"the line went idle mid-frame, resend the request")
        del self._buffer[0]
        return [error, *self._scan()]

    def reset(self):
        """Forget buffered bytes, e.g. before resending a request."""
        self._buffer.clear()

    def _claimed_length_note(self):
        if len(self._buffer) < HEADER_SIZE:
            return ""
        length = _HEADER.unpack_from(self._buffer)[4]
        return f", this one claims {HEADER_SIZE + length + CRC_SIZE} in all"

    def _scan(self):
        events = []
        buf = self._buffer
        while True:
            start = buf.find(SYNC)
            if start < 0:
                self.skipped += len(buf)
                buf.clear()
                break
            self.skipped += start
            del buf[:start]
            if len(buf) < HEADER_SIZE:
                break
            _, cmd, seq, addr, length = _HEADER.unpack_from(buf)
            if length > MAX_PAYLOAD:
                events.append(FrameLengthError(
                    f"frame header claims a {length}-byte payload, more than the protocol "
                    f"maximum of {MAX_PAYLOAD}; the header is corrupt or the sender does not "
                    f"speak this protocol"))
                del buf[0]
                continue
            total = HEADER_SIZE + length + CRC_SIZE
            if len(buf) < total:
                break
            body = bytes(buf[1:HEADER_SIZE + length])
            sent = struct.unpack_from("<I", buf, HEADER_SIZE + length)[0]
            computed = crc32(body)
            if sent != computed:
                events.append(BadCrcError(
                    f"frame cmd {cmd:#04x} seq {seq} len {length} carries CRC {sent:#010x} but "
                    f"its bytes give {computed:#010x}; it was corrupted on the line, resend "
                    f"with the same seq"))
                del buf[0]
                continue
            events.append(Frame(cmd, seq, addr, body[HEADER_SIZE - 1:]))
            del buf[:total]
        return events


# --- stop-and-wait client -----------------------------------------------------------

class Transport(Protocol):
    """A byte pipe to the device: a serial port, a simulator, a test double."""

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the device."""

    def receive(self, timeout: float) -> bytes:
        """Bytes from the device, waiting up to ``timeout`` s; ``b""`` if none came."""


class LinkClient:
    """The host end of the link: one request at a time, resent until verified.

    A request is resent unchanged (same seq) after a NAK in :data:`RETRYABLE` or
    when no verified answer came within ``response_timeout`` seconds, at most
    ``attempts`` times in all. Only a response whose CRC verified and that
    :func:`check_response` matched to the request is ever returned.
    """

    def __init__(self, transport: Transport, *, attempts: int = 5,
                 response_timeout: float = 0.5, max_payload: int = MAX_PAYLOAD):
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise RequestError(f"attempts must be a positive integer, not {attempts!r}")
        if not 1 <= max_payload <= MAX_PAYLOAD:
            raise RequestError(f"max_payload must be in 1..{MAX_PAYLOAD}, not {max_payload!r};"
                               f" use the device's DeviceStatus.max_payload")
        self.transport = transport
        self.attempts = attempts
        self.response_timeout = response_timeout
        self.max_payload = max_payload
        self.resends = 0
        #: Why recent requests were resent, oldest first.
        self.problems = deque(maxlen=100)
        self._seq = 0
        self._decoder = FrameDecoder()

    def request(self, build) -> bytes:
        """Send ``build(seq)`` (a request :class:`Frame`); return its verified ACK payload."""
        frame = build(self._seq)
        self._seq = (self._seq + 1) & 0xFF
        problem = "no bytes came back"
        for attempt in range(self.attempts):
            if attempt:
                self.resends += 1
                self.problems.append(problem)
                logger.debug("resending %s (attempt %d): %s", frame, attempt + 1, problem)
            self._decoder.reset()
            self.transport.send(frame.encode())
            deadline = time.monotonic() + self.response_timeout
            while True:
                remaining = deadline - time.monotonic()
                data = self.transport.receive(remaining) if remaining > 0 else b""
                events = self._decoder.feed(data) if data else self._decoder.expire()
                verdict = self._judge(frame, events)
                if isinstance(verdict, bytes):
                    return verdict
                if verdict is not None:
                    problem = verdict
                    if verdict.startswith("NAK"):
                        break
                if not data:
                    break
        raise NoResponseError(f"no verified answer to {frame} after {self.attempts} attempts "
                              f"(last problem: {problem}); check the link's wiring and baud "
                              f"rate, or raise response_timeout")

    @staticmethod
    def _judge(frame, events):
        """A payload to return, a problem worth a resend (str), or None to keep waiting."""
        problem = None
        for event in events:
            if isinstance(event, FrameError):
                problem = str(event)
                continue
            is_nak = event.cmd == Reply.NAK and len(event.payload) == 1
            retryable = is_nak and event.payload[0] in {int(code) for code in RETRYABLE}
            if event.seq != frame.seq and not retryable:
                continue                  # a late answer to an earlier attempt
            try:
                return check_response(frame, event)
            except NakError as error:
                if error.code not in RETRYABLE:
                    raise
                return f"NAK {error.code.name}: {_NAK_HELP[error.code]}"
        return problem

    def write(self, space: Space, offset: int, data: bytes):
        """Store ``data`` at ``offset`` in ``space``, in frames of ``max_payload`` bytes."""
        for start in range(0, len(data), self.max_payload):
            chunk = data[start:start + self.max_payload]
            self.request(lambda seq: write_request(seq, space, offset + start, chunk))

    def write_groups(self, space: Space, offset: int, data: bytes, width: int, group: int):
        """Store ``data`` at ``offset`` as groups of ``width`` bytes each zero-filled to
        ``group`` bytes (``len(data) // width * group`` bytes of memory), in WRITE_GROUPS
        frames of at most ``max_payload`` bytes."""
        if width > self.max_payload - 2:
            raise RequestError(f"a group of {width} bytes does not fit a WRITE_GROUPS frame "
                               f"of {self.max_payload} bytes; use write()")
        if len(data) % width:
            raise RequestError(f"{len(data)} bytes are not whole groups of {width}")
        step = (self.max_payload - 2) // width * width
        for start in range(0, len(data), step):
            chunk = data[start:start + step]
            at = offset + start // width * group
            self.request(lambda seq: write_groups_request(seq, space, at, chunk, width, group))

    def read(self, space: Space, offset: int, count: int) -> bytes:
        """``count`` bytes from ``offset`` in ``space``."""
        out = bytearray()
        while len(out) < count:
            n = min(self.max_payload, count - len(out))
            at = offset + len(out)
            out += self.request(lambda seq: read_request(seq, space, at, n))
        return bytes(out)

    def status(self) -> DeviceStatus:
        """The device's flags and counters."""
        return DeviceStatus.decode(self.request(status_request))

    def reset(self):
        """Abort any run and clear the status flags."""
        self.request(reset_request)

    def run(self, program_offset: int, watchdog_cycles: int, *,
            poll_interval: float = 0.01) -> DeviceStatus:
        """Run the program at ``program_offset`` to completion; return the final status.

        Raises :class:`WatchdogError` if the device aborted the run.
        """
        self.request(lambda seq: run_request(seq, program_offset, watchdog_cycles))
        while (status := self.status()).flags & StatusFlag.RUNNING:
            time.sleep(poll_interval)
        if status.flags & StatusFlag.WATCHDOG:
            raise WatchdogError(f"the device aborted the program at {program_offset:#x} after "
                                f"{status.run_cycles} cycles, its watchdog limit, while "
                                f"executing descriptor {status.counters['descriptor']}; raise "
                                f"watchdog_cycles if the cycle model underestimates the run")
        return status
