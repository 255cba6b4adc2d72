"""LinkClient (host/protocol.py): resends with the same seq, returns only verified answers."""

import struct
from collections import deque

import pytest

from host import protocol as P
from host.errors import NakError, NoResponseError, RequestError, ResponseError, WatchdogError


class FakeLine:
    """A transport whose far end is ``device(frame, n)`` -> byte chunks to answer with.

    ``n`` counts the frames sent so far (1 for the first). ``receive`` returns
    ``b""`` at once when nothing is queued, as a real line would after its timeout.
    """

    def __init__(self, device):
        self.device = device
        self.sent = []
        self.inbox = deque()

    def send(self, data):
        frame, = P.FrameDecoder().feed(data)
        self.sent.append(frame)
        self.inbox.extend(self.device(frame, len(self.sent)))

    def receive(self, timeout):
        assert timeout > 0
        return self.inbox.popleft() if self.inbox else b""


def memory_device(memory):
    """Answers WRITE/READ against ``memory`` (one bytearray, space ignored)."""
    def device(frame, n):
        space, offset = P.split_address(frame.addr)
        if frame.cmd == P.Command.WRITE:
            memory[offset:offset + len(frame.payload)] = frame.payload
            return [P.ack(frame.seq, frame.addr).encode()]
        if frame.cmd == P.Command.WRITE_GROUPS:
            width, group, data = frame.payload[0], frame.payload[1], frame.payload[2:]
            for k in range(len(data) // width):
                at = offset + k * group
                memory[at:at + group] = data[k * width:(k + 1) * width] + bytes(group - width)
            return [P.ack(frame.seq, frame.addr).encode()]
        count, = struct.unpack("<I", frame.payload)
        return [P.ack(frame.seq, frame.addr, bytes(memory[offset:offset + count])).encode()]
    return device


def corrupted(frame):
    wire = bytearray(frame.encode())
    wire[P.HEADER_SIZE] ^= 0x01 if len(wire) > P.HEADER_SIZE + 4 else 0
    wire[-1] ^= 0x40
    return bytes(wire)


def test_write_and_read_are_split_into_max_payload_frames():
    memory = bytearray(64)
    line = FakeLine(memory_device(memory))
    client = P.LinkClient(line, max_payload=4)
    client.write(P.Space.WEIGHTS, 3, bytes(range(1, 11)))
    assert [(f.cmd, f.seq, f.addr & P.OFFSET_MASK, f.payload) for f in line.sent] == [
        (P.Command.WRITE, 0, 3, b"\x01\x02\x03\x04"),
        (P.Command.WRITE, 1, 7, b"\x05\x06\x07\x08"),
        (P.Command.WRITE, 2, 11, b"\x09\x0a"),
    ]
    assert memory[3:13] == bytes(range(1, 11))
    assert client.read(P.Space.WEIGHTS, 2, 9) == b"\x00" + bytes(range(1, 9))
    assert [f.seq for f in line.sent[3:]] == [3, 4, 5]
    assert client.resends == 0


def test_write_groups_sends_whole_groups_per_frame():
    memory = bytearray(b"\xee" * 64)
    line = FakeLine(memory_device(memory))
    client = P.LinkClient(line, max_payload=9)      # 7 data bytes a frame: two groups of 3
    client.write_groups(P.Space.ACTIVATIONS, 4, bytes(range(1, 16)), 3, 8)
    assert [(f.addr & P.OFFSET_MASK, f.payload) for f in line.sent] == [
        (4, b"\x03\x08" + bytes(range(1, 7))),
        (20, b"\x03\x08" + bytes(range(7, 13))),
        (36, b"\x03\x08" + bytes(range(13, 16))),
    ]
    expected = b"".join(bytes(range(k, k + 3)) + bytes(5) for k in range(1, 16, 3))
    assert memory[4:44] == expected and memory[:4] == b"\xee" * 4 and memory[44] == 0xEE
    with pytest.raises(RequestError) as exc:
        client.write_groups(P.Space.ACTIVATIONS, 0, bytes(8), 8, 8)
    assert str(exc.value) == ("a group of 8 bytes does not fit a WRITE_GROUPS frame of 9 "
                              "bytes; use write()")
    with pytest.raises(RequestError) as exc:
        client.write_groups(P.Space.ACTIVATIONS, 0, bytes(5), 3, 8)
    assert str(exc.value) == "5 bytes are not whole groups of 3"


def test_corrupted_answer_is_never_returned_and_the_request_is_resent_unchanged():
    def device(frame, n):
        answer = P.ack(frame.seq, frame.addr, b"good")
        return [corrupted(answer)] if n == 1 else [b"\x00\x13", answer.encode()[:5],
                                                   answer.encode()[5:]]
    line = FakeLine(device)
    client = P.LinkClient(line)
    assert client.read(P.Space.PARAMS, 0, 4) == b"good"
    assert line.sent[0] == line.sent[1]          # same seq, same bytes
    assert client.resends == 1


def test_retryable_nak_is_resent_even_when_its_seq_was_lost():
    def device(frame, n):
        if n == 2:
            return [P.nak(0x00, P.NakCode.TRUNCATED).encode()]
        if n == 3:
            return [P.nak(frame.seq, P.NakCode.BAD_CRC).encode()]
        return [P.ack(frame.seq, frame.addr).encode()]
    line = FakeLine(device)
    client = P.LinkClient(line)
    client.request(lambda seq: P.reset_request(seq))      # seq 0
    client.write(P.Space.PARAMS, 0, b"x")                  # seq 1: NAK, NAK, ACK
    assert [f.seq for f in line.sent] == [0, 1, 1, 1]
    assert client.resends == 2


def test_stale_answer_to_an_earlier_request_is_skipped():
    def device(frame, n):
        stale = P.ack((frame.seq - 1) & 0xFF, frame.addr, b"old!")
        return [stale.encode() + P.ack(frame.seq, frame.addr, b"new!").encode()]
    client = P.LinkClient(FakeLine(device))
    assert client.read(P.Space.PARAMS, 0, 4) == b"new!"
    assert client.resends == 0


def test_silent_device_gives_up_after_the_allowed_attempts():
    line = FakeLine(lambda frame, n: [])
    client = P.LinkClient(line, attempts=3)
    with pytest.raises(NoResponseError) as exc:
        client.status()
    assert str(exc.value) == ("no verified answer to STATUS seq 0 addr 0x00000000 len 0 after 3 "
                              "attempts (last problem: no bytes came back); check the link's "
                              "wiring and baud rate, or raise response_timeout")
    assert len(line.sent) == 3


def test_truncated_answer_is_reported_as_the_last_problem():
    line = FakeLine(lambda frame, n: [P.ack(frame.seq).encode()[:9]])
    with pytest.raises(NoResponseError) as exc:
        P.LinkClient(line, attempts=2).reset()
    assert "last problem: frame stopped after 9 bytes" in str(exc.value)


def test_refusals_that_a_resend_cannot_fix_are_raised_at_once():
    line = FakeLine(lambda frame, n: [P.nak(frame.seq, P.NakCode.BUSY).encode()])
    with pytest.raises(NakError) as exc:
        P.LinkClient(line).write(P.Space.ACTIVATIONS, 0, b"x")
    assert exc.value.code is P.NakCode.BUSY
    assert len(line.sent) == 1


def test_malformed_but_verified_answer_is_an_error_not_a_result():
    line = FakeLine(lambda frame, n: [P.ack(frame.seq, frame.addr, b"short").encode()])
    with pytest.raises(ResponseError) as exc:
        P.LinkClient(line).read(P.Space.PARAMS, 0, 8)
    assert "carries 5 bytes, expected 8" in str(exc.value)


def status_device(flags_after_run):
    """RUN is acknowledged; STATUS reports RUNNING once, then ``flags_after_run``."""
    polls = []

    def device(frame, n):
        if frame.cmd == P.Command.RUN:
            return [P.ack(frame.seq, frame.addr).encode()]
        polls.append(frame.seq)
        flags = P.StatusFlag.RUNNING if len(polls) == 1 else flags_after_run
        status = P.DeviceStatus(flags, run_cycles=500)
        return [P.ack(frame.seq, frame.addr, status.encode()).encode()]
    return device


def test_run_polls_status_until_the_run_finishes():
    line = FakeLine(status_device(P.StatusFlag.DONE))
    status = P.LinkClient(line).run(0x40, 1000, poll_interval=0)
    assert status.flags == P.StatusFlag.DONE and status.run_cycles == 500
    assert [f.cmd for f in line.sent] == [P.Command.RUN, P.Command.STATUS, P.Command.STATUS]
    assert line.sent[0].payload == struct.pack("<I", 1000)


def test_run_aborted_by_the_watchdog_raises():
    line = FakeLine(status_device(P.StatusFlag.WATCHDOG))
    with pytest.raises(WatchdogError) as exc:
        P.LinkClient(line).run(0x40, 500, poll_interval=0)
    assert str(exc.value) == ("the device aborted the program at 0x40 after 500 cycles, its "
                              "watchdog limit, while executing descriptor 0; raise "
                              "watchdog_cycles if the cycle model "
                              "underestimates the run")


@pytest.mark.parametrize("kwargs, message", [
    (dict(attempts=0), "attempts must be a positive integer, not 0"),
    (dict(max_payload=2000),
     "max_payload must be in 1..1024, not 2000; use the device's DeviceStatus.max_payload"),
])
def test_client_rejects_bad_settings(kwargs, message):
    with pytest.raises(RequestError) as exc:
        P.LinkClient(FakeLine(lambda frame, n: []), **kwargs)
    assert str(exc.value) == message
