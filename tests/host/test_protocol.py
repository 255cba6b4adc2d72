"""host/protocol.py: wire format, decoder resync and error reporting, response checks."""

import random
import struct
import zlib

import pytest

from host import protocol as P
from host.errors import (BadCrcError, FrameLengthError, HostError, NakError, RequestError,
                         ResponseError, TruncatedFrameError)


def random_frame(rng):
    cmd = rng.choice([*P.Command, *P.Reply, 0x00, 0x7F, 0xFF])
    payload = rng.randbytes(rng.choice([0, 1, 4, rng.randint(2, 60), P.MAX_PAYLOAD]))
    return P.Frame(cmd, rng.randrange(256), rng.randrange(1 << 32), payload)


# --- wire format ---------------------------------------------------------------------

def test_wire_layout_is_little_endian_with_crc_over_everything_but_sync():
    frame = P.write_request(0x42, P.Space.WEIGHTS, 0x123456, b"\x01\x02\x03")
    wire = frame.encode()
    header = bytes([0xA5, 0x01, 0x42, 0x56, 0x34, 0x12, 0x10, 0x03, 0x00, 0x00, 0x00])
    assert wire[:P.HEADER_SIZE] == header
    assert wire[P.HEADER_SIZE:-4] == b"\x01\x02\x03"
    assert wire[-4:] == struct.pack("<I", zlib.crc32(header[1:] + b"\x01\x02\x03"))
    assert len(wire) == P.HEADER_SIZE + 3 + P.CRC_SIZE
    assert P.encode_frame(P.Command.WRITE, 0x42, frame.addr, b"\x01\x02\x03") == wire


def test_crc32_is_zlib_crc32():
    assert P.crc32(b"123456789") == 0xCBF43926 == zlib.crc32(b"123456789")
    assert P.crc32(b"") == 0


def test_address_encoding_puts_the_space_in_the_top_four_bits():
    assert P.make_address(P.Space.ACTIVATIONS, 5) == 0x0000_0005
    assert P.make_address(P.Space.PROGRAM, P.OFFSET_MASK) == 0x3FFF_FFFF
    assert P.make_address(2, 0x10) == 0x2000_0010
    assert P.split_address(0x1000_0100) == (P.Space.WEIGHTS, 0x100)


def test_requests_carry_their_arguments_in_the_payload():
    assert P.read_request(1, P.Space.PARAMS, 8, 300).payload == struct.pack("<I", 300)
    run = P.run_request(2, 64, 1_000_000)
    assert run.addr == P.make_address(P.Space.PROGRAM, 64)
    assert run.payload == struct.pack("<I", 1_000_000)
    assert P.status_request(3) == P.Frame(P.Command.STATUS, 3, 0, b"")
    assert P.reset_request(4) == P.Frame(P.Command.RESET, 4, 0, b"")
    assert P.nak(5, P.NakCode.BUSY) == P.Frame(P.Reply.NAK, 5, 0, b"\x08")
    groups = P.write_groups_request(6, P.Space.ACTIVATIONS, 16, b"abcdef", 3, 8)
    assert groups == P.Frame(P.Command.WRITE_GROUPS, 6, 16, b"\x03\x08abcdef")


def test_device_status_round_trip():
    status = P.DeviceStatus(P.StatusFlag.DONE | P.StatusFlag.WATCHDOG, 1, 64, 12345,
                            dict(zip(P.COUNTER_NAMES, [1, 2, 3, 0xFFFFFFFF, 5])), 8, 4,
                            dict(zip(P.SPACE_NAMES, [32768, 131072, 16384, 2048])))
    payload = status.encode()
    assert len(payload) == P.STATUS_SIZE == 48
    assert payload[:8] == bytes([0x06, 0x01, 64, 0]) + struct.pack("<I", 12345)
    assert payload[28:32] == bytes([8, 4, 0, 0])
    with_groups = P.DeviceStatus(rows=2, cols=2, features=P.Feature.WRITE_GROUPS)
    assert with_groups.encode()[28:32] == bytes([2, 2, 1, 0])
    assert P.DeviceStatus.decode(with_groups.encode()) == with_groups
    assert payload[32:] == struct.pack("<4I", 32768, 131072, 16384, 2048)
    assert P.DeviceStatus.decode(payload) == status
    with pytest.raises(ResponseError) as exc:
        P.DeviceStatus.decode(payload[:-1])
    assert str(exc.value) == ("a STATUS answer carries 48 bytes, not 47; the device speaks "
                              "another protocol version")


# --- request errors --------------------------------------------------------------------

@pytest.mark.parametrize("build, message", [
    (lambda: P.make_address(7, 0),
     "unknown memory space 7; use one of ACTIVATIONS, WEIGHTS, PARAMS, PROGRAM"),
    (lambda: P.make_address(P.Space.WEIGHTS, 1 << 28),
     "offset 268435456 does not fit in the 28-bit offset of a memory address; "
     "use 0..0xfffffff"),
    (lambda: P.make_address(P.Space.WEIGHTS, -1),
     "offset -1 does not fit in the 28-bit offset of a memory address; use 0..0xfffffff"),
    (lambda: P.split_address(0x5000_0000),
     "address 0x50000000 names memory space 5, which does not exist; use one of "
     "ACTIVATIONS=0, WEIGHTS=1, PARAMS=2, PROGRAM=3"),
    (lambda: P.write_request(0, P.Space.WEIGHTS, 0, b""),
     "a WRITE carries 1..1024 bytes, not 0; split larger transfers"),
    (lambda: P.write_request(0, P.Space.WEIGHTS, 0, bytes(1025)),
     "a WRITE carries 1..1024 bytes, not 1025; split larger transfers"),
    (lambda: P.write_groups_request(0, P.Space.ACTIVATIONS, 0, b"ab", 0, 4),
     "a WRITE_GROUPS width is 1..255 bytes, not 0"),
    (lambda: P.write_groups_request(0, P.Space.ACTIVATIONS, 0, b"ab", 2, 256),
     "a WRITE_GROUPS group is 1..255 bytes, not 256"),
    (lambda: P.write_groups_request(0, P.Space.ACTIVATIONS, 0, b"ab", 2, 1),
     "a WRITE_GROUPS width (2) exceeds its group (1)"),
    (lambda: P.write_groups_request(0, P.Space.ACTIVATIONS, 0, b"abc", 2, 8),
     "a WRITE_GROUPS carries a multiple of its width (2) of 1..1022 bytes, not 3; split "
     "larger transfers"),
    (lambda: P.read_request(0, P.Space.WEIGHTS, 0, 0),
     "a READ returns 1..1024 bytes, not 0; split larger transfers"),
    (lambda: P.run_request(0, 0, 0),
     "watchdog_cycles must be in 1..4294967295, not 0; every run needs a bound"),
    (lambda: P.Frame(P.Command.READ, 256),
     "seq must be an integer in 0..255, not 256"),
    (lambda: P.Frame(P.Command.READ, True),
     "seq must be an integer in 0..255, not True"),
    (lambda: P.Frame(P.Command.READ, 0, 1 << 32),
     "addr must be an integer in 0..4294967295, not 4294967296"),
    (lambda: P.Frame(0x100, 0), "cmd must be an integer in 0..255, not 256"),
    (lambda: P.Frame(P.Command.WRITE, 0, 0, "text"), "payload must be bytes, not str"),
    (lambda: P.Frame(P.Command.WRITE, 0, 0, bytes(1025)),
     "payload of 1025 bytes exceeds the protocol maximum of 1024; split it into several frames"),
])
def test_bad_requests_raise_with_the_value_and_the_fix(build, message):
    with pytest.raises(RequestError) as exc:
        build()
    assert str(exc.value) == message
    assert isinstance(exc.value, HostError)


# --- decoder -----------------------------------------------------------------------------

def test_round_trip_in_random_chunks():
    rng = random.Random(3)
    frames = [random_frame(rng) for _ in range(40)]
    wire = b"".join(f.encode() for f in frames)
    decoder = P.FrameDecoder()
    got = []
    pos = 0
    while pos < len(wire):
        step = rng.choice([1, 2, 7, 100, 3000])
        got += decoder.feed(wire[pos:pos + step])
        pos += step
    assert got == frames
    assert decoder.pending == 0 and decoder.skipped == 0


def test_decoded_codes_become_enums_and_unknown_ones_stay_ints():
    decoder = P.FrameDecoder()
    known, unknown = decoder.feed(P.encode_frame(0x02, 1) + P.encode_frame(0x42, 2))
    assert known.cmd is P.Command.READ
    assert unknown.cmd == 0x42 and type(unknown.cmd) is int
    assert str(unknown) == "0x42 seq 2 addr 0x00000000 len 0"


def test_garbage_before_sync_is_skipped_and_counted():
    frame = P.write_request(7, P.Space.PARAMS, 0, b"abc")
    decoder = P.FrameDecoder()
    assert decoder.feed(b"\x00\x13\xff") == []
    assert decoder.pending == 0
    assert decoder.feed(b"\x5a" + frame.encode() + b"\x01\x02") == [frame]
    assert decoder.skipped == 6
    assert decoder.pending == 0


def test_false_sync_in_garbage_is_reported_and_the_real_frame_still_found():
    frame = P.write_request(1, P.Space.ACTIVATIONS, 0x10, b"abcde")
    decoder = P.FrameDecoder()
    # The false header reads the real frame shifted by one byte: len 0x500.
    events = decoder.feed(b"\xA5" + frame.encode())
    assert [type(e) for e in events] == [FrameLengthError, P.Frame]
    assert str(events[0]) == ("frame header claims a 1280-byte payload, more than the protocol "
                              "maximum of 1024; the header is corrupt or the sender does not "
                              "speak this protocol")
    assert events[1] == frame


def test_bad_crc_is_reported_then_decoding_goes_on():
    first = P.write_request(3, P.Space.WEIGHTS, 0, b"\x00\x01")
    second = P.status_request(4)
    wire = bytearray(first.encode())
    wire[-1] ^= 0x80
    events = P.FrameDecoder().feed(bytes(wire) + second.encode())
    assert len(events) == 2 and events[1] == second
    error = events[0]
    assert isinstance(error, BadCrcError)
    good = zlib.crc32(bytes(wire[1:-4]))
    assert str(error) == (f"frame cmd 0x01 seq 3 len 2 carries CRC {good ^ 0x80000000:#010x} "
                          f"but its bytes give {good:#010x}; it was corrupted on the line, "
                          f"resend with the same seq")


def test_every_single_bit_flip_is_caught():
    frame = P.write_request(9, P.Space.ACTIVATIONS, 0x40, bytes(range(16)))
    wire = frame.encode()
    for bit in range(8, 8 * len(wire)):       # every bit after the sync byte
        damaged = bytearray(wire)
        damaged[bit // 8] ^= 1 << (bit % 8)
        decoder = P.FrameDecoder()
        events = decoder.feed(bytes(damaged)) + decoder.expire()
        assert frame not in events
        assert not any(isinstance(e, P.Frame) for e in events), bit
        assert events, bit


def test_truncated_frame_is_reported_on_expire_and_decoding_restarts():
    frame = P.write_request(5, P.Space.PROGRAM, 0, bytes(10))
    wire = frame.encode()
    decoder = P.FrameDecoder()
    assert decoder.feed(wire[:14]) == []
    assert decoder.pending == 14
    events = decoder.expire()
    assert len(events) == 1 and isinstance(events[0], TruncatedFrameError)
    assert str(events[0]) == ("frame stopped after 14 bytes (a header is 11 bytes, this one "
                              "claims 25 in all); the line went idle mid-frame, resend the "
                              "request")
    assert decoder.pending == 0
    assert decoder.expire() == []
    assert decoder.feed(wire) == [frame]


def test_expire_rescans_behind_a_false_sync():
    frame = P.status_request(6)
    # A stray 0xA5 and 10 bytes that claim a 4-byte payload hide a whole frame
    # that is shorter than the false one.
    false_header = bytes([0xA5, 0x01, 0x00, 0, 0, 0, 0, 30, 0, 0, 0])
    decoder = P.FrameDecoder()
    assert decoder.feed(false_header + frame.encode()) == []
    events = decoder.expire()
    assert isinstance(events[0], TruncatedFrameError)
    assert events[1:] == [frame]


def test_reset_forgets_a_partial_frame():
    decoder = P.FrameDecoder()
    decoder.feed(P.status_request(1).encode()[:5])
    decoder.reset()
    assert decoder.pending == 0
    assert decoder.feed(P.status_request(2).encode()) == [P.status_request(2)]


# --- response checks -----------------------------------------------------------------

def test_check_response_returns_the_payload_of_a_matching_ack():
    read = P.read_request(8, P.Space.WEIGHTS, 4, 3)
    assert P.check_response(read, P.ack(8, read.addr, b"xyz")) == b"xyz"
    write = P.write_request(9, P.Space.WEIGHTS, 4, b"q")
    assert P.check_response(write, P.ack(9, write.addr)) == b""


def test_nak_raises_with_code_and_advice():
    write = P.write_request(9, P.Space.WEIGHTS, 4, b"q")
    with pytest.raises(NakError) as exc:
        P.check_response(write, P.nak(9, P.NakCode.BAD_ADDRESS))
    assert exc.value.code is P.NakCode.BAD_ADDRESS
    assert str(exc.value) == ("device refused WRITE seq 9 addr 0x10000004 len 1 with NAK "
                              "BAD_ADDRESS (0x06): the address is outside the memory space; "
                              "check the space size")


def test_retryable_nak_applies_whatever_its_seq():
    status = P.status_request(10)
    with pytest.raises(NakError) as exc:
        P.check_response(status, P.nak(0, P.NakCode.TRUNCATED))
    assert exc.value.code is P.NakCode.TRUNCATED
    assert P.RETRYABLE == {P.NakCode.BAD_CRC, P.NakCode.TRUNCATED, P.NakCode.TOO_LONG}
    assert P.NakCode.BUSY not in P.RETRYABLE
    # A NAK for another reason with another seq is stale.
    with pytest.raises(ResponseError):
        P.check_response(status, P.nak(9, P.NakCode.BUSY))


@pytest.mark.parametrize("response, message", [
    (P.ack(11), "response seq 11 does not answer request seq 12; it is stale, drop it and "
                "keep waiting"),
    (P.ack(12, 0x1000_0004, b"ab"), "ACK to READ seq 12 addr 0x10000004 len 4 carries 2 "
                                    "bytes, expected 3"),
    (P.ack(12, 0x1000_0005, b"abc"), "ACK to READ seq 12 addr 0x10000004 len 4 echoes addr "
                                     "0x10000005 instead of 0x10000004"),
    (P.Frame(P.Command.WRITE, 12, 0x1000_0004), "response to READ seq 12 addr 0x10000004 "
                                                "len 4 has cmd 0x01, expected ACK 0x80 or "
                                                "NAK 0x81"),
    (P.Frame(P.Reply.NAK, 12, 0, b"\x99"), "NAK to READ seq 12 addr 0x10000004 len 4 "
                                           "carries 99 instead of one NakCode byte"),
])
def test_mismatched_responses_are_rejected(response, message):
    request = P.read_request(12, P.Space.WEIGHTS, 4, 3)
    with pytest.raises(ResponseError) as exc:
        P.check_response(request, response)
    assert str(exc.value) == message
