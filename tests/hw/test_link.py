"""HostLink gateware against host/protocol.py, with behavioural memory and accelerator models.

Every frame the tests send is built by host.protocol and every answer is decoded
and verified by its FrameDecoder, so both ends are checked against one definition.
Each test runs at full speed and with random idle/backpressure on both byte
streams and on the memory bus.
"""

import queue
import random
import struct
import subprocess
import threading
import types
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Value
from amaranth.lib import wiring
from amaranth.sim import Simulator

from host import protocol as P
from hw import link as L

TIMEOUT = 40            # inter-byte timeout of the DUT, in cycles
MAX_PAYLOAD = 64        # staging RAM of the DUT, small to keep the simulation quick
SIZES = {L.Space.ACTIVATIONS: 256, L.Space.WEIGHTS: 128, L.Space.PARAMS: 64,
         L.Space.PROGRAM: 32}
COUNTERS = [0x01020304, 0xA0B0C0D0, 7, 0xFFFFFFFF, 3]


@dataclass(frozen=True)
class Pattern:
    send_gap: float         # probability of an idle cycle before each byte to the DUT
    recv_stall: float       # probability that o_stream.ready is low in a cycle
    mem_stall: float        # probability that write/read_addr ready is low in a cycle
    max_read_latency: int   # read data comes 1..max cycles after its request


PATTERNS = {
    "full_speed": Pattern(0.0, 0.0, 0.0, 1),
    "random": Pattern(0.35, 0.5, 0.5, 4),
}


@pytest.fixture(params=sorted(PATTERNS))
def pattern(request):
    return PATTERNS[request.param]


class LinkBench:
    """Owns the DUT, the byte-stream drivers and the memory/accelerator models."""

    def __init__(self, pattern, *, seed=0, run_latency=None, max_payload=MAX_PAYLOAD,
                 compact_status=False, group_writes=True):
        self.dut = L.HostLink(TIMEOUT, max_payload=max_payload, space_sizes=SIZES,
                              compact_status=compact_status, group_writes=group_writes)
        self.pattern = pattern
        self.seed = seed
        self.run_latency = run_latency      # None: the accelerator never signals done
        self.memory = {P.Space(s.value): bytearray(size) for s, size in SIZES.items()}
        self.write_beats = 0
        self.pending_reads = deque()
        self.decoder = P.FrameDecoder()
        self.events = []                    # frames and FrameErrors, in arrival order
        self.consumed = 0
        self.rx_cycles = []                 # cycle of every received byte
        self.starts = []                    # (cycle, program offset) of each start pulse
        self.resets = []                    # cycle of each reset pulse
        self.cycle = 0
        self.last_sent_cycle = None

    # --- script helpers ------------------------------------------------------------

    async def send(self, ctx, data):
        """Drive ``data`` into the DUT with the pattern's idle gaps."""
        rng = self._send_rng
        stream = self.dut.i_stream
        for byte in data:
            while rng.random() < self.pattern.send_gap:
                await ctx.tick()
            ctx.set(stream.valid, 1)
            ctx.set(stream.payload, byte)
            await ctx.tick().until(stream.ready)
            ctx.set(stream.valid, 0)
            self.last_sent_cycle = self.cycle

    async def response(self, ctx, max_cycles=20_000):
        """The next answer from the DUT; it must be a frame whose CRC verified."""
        for _ in range(max_cycles):
            if self.consumed < len(self.events):
                event = self.events[self.consumed]
                self.consumed += 1
                assert isinstance(event, P.Frame), f"DUT sent an invalid frame: {event}"
                return event
            await ctx.tick()
        raise AssertionError(f"no response within {max_cycles} cycles")

    async def transact(self, ctx, frame):
        """Send ``frame`` and return the answer."""
        await self.send(ctx, frame.encode())
        return await self.response(ctx)

    async def expect_ack(self, ctx, frame):
        """Send ``frame``; the answer must be a valid ACK to it. Returns its payload."""
        return P.check_response(frame, await self.transact(ctx, frame))

    async def status(self, ctx, seq):
        return P.DeviceStatus.decode(await self.expect_ack(ctx, P.status_request(seq)))

    def first_rx_cycle_after(self, cycle):
        return next(c for c in self.rx_cycles if c > cycle)

    # --- running ---------------------------------------------------------------------

    def run(self, script, *, host_side=True):
        """Run ``script(bench, ctx)`` with the models in the background, then check quiet.

        ``host_side=False`` leaves ``o_stream`` to the script.
        """
        self._send_rng = random.Random(self.seed)
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)

        async def main(ctx):
            await script(self, ctx)
            await ctx.tick().repeat(4)

        sim.add_testbench(main)
        sim.add_testbench(self._counter, background=True)
        if host_side:
            sim.add_testbench(self._receiver, background=True)
        sim.add_testbench(self._memory_model, background=True)
        sim.add_testbench(self._accelerator_model, background=True)
        sim.run()
        # Scoreboard: every answer consumed, nothing half-received, no garbage.
        assert self.consumed == len(self.events), self.events[self.consumed:]
        assert self.decoder.pending == 0 and self.decoder.skipped == 0
        assert not self.pending_reads

    async def _counter(self, ctx):
        async for _ in ctx.tick():
            self.cycle += 1

    async def _receiver(self, ctx):
        rng = random.Random(self.seed + 1)
        stream = self.dut.o_stream
        ctx.set(stream.ready, 1)
        async for _, _, valid, ready, byte in ctx.tick().sample(
                stream.valid, stream.ready, stream.payload):
            if valid and ready:
                self.rx_cycles.append(self.cycle)
                self.events += self.decoder.feed(bytes([byte]))
            ctx.set(stream.ready, rng.random() >= self.pattern.recv_stall)

    async def _memory_model(self, ctx):
        rng = random.Random(self.seed + 2)
        bus = self.dut.bus
        w, ra, rd = bus.write, bus.read_addr, bus.read_data
        cycle = 0
        async for (_, _, w_valid, w_ready, w_addr, w_data, ra_valid, ra_ready, ra_addr,
                   rd_valid, rd_ready) in ctx.tick().sample(
                w.valid, w.ready, w.payload.addr.as_value(), w.payload.data,
                ra.valid, ra.ready, ra.payload.as_value(), rd.valid, rd.ready):
            cycle += 1
            if w_valid and w_ready:
                space, offset = self._locate(w_addr)
                self.memory[space][offset] = w_data
                self.write_beats += 1
            if rd_valid and rd_ready:
                self.pending_reads.popleft()
            if ra_valid and ra_ready:
                space, offset = self._locate(ra_addr)
                latency = rng.randint(1, self.pattern.max_read_latency)
                self.pending_reads.append((cycle + latency - 1, self.memory[space][offset]))
            ready = lambda: rng.random() >= self.pattern.mem_stall
            ctx.set(w.ready, ready())
            ctx.set(ra.ready, ready())
            head = self.pending_reads[0] if self.pending_reads else None
            ctx.set(rd.valid, head is not None and head[0] <= cycle)
            ctx.set(rd.payload, head[1] if head is not None else 0)

    def _locate(self, addr):
        space, offset = P.split_address(addr)
        assert offset < len(self.memory[space]), f"DUT accessed {space.name} at {offset}"
        return space, offset

    async def _accelerator_model(self, ctx):
        bus = self.dut.bus
        ctx.set(bus.counters, COUNTERS)
        cycle = -1
        remaining = None
        async for _, _, start, program, reset in ctx.tick().sample(
                bus.start, bus.program, bus.reset):
            cycle += 1
            if reset:
                self.resets.append(cycle)
                remaining = None
            if start:
                self.starts.append((cycle, program))
                remaining = self.run_latency
            done = remaining == 0
            ctx.set(bus.done, done)
            remaining = None if remaining is None or done else remaining - 1


def blank_memory():
    return {P.Space(s.value): bytearray(size) for s, size in SIZES.items()}


# --- definitions shared with host/protocol.py ---------------------------------------

def test_codes_and_layouts_match_host_protocol():
    for hw_enum, host_enum in [(L.Command, P.Command), (L.Reply, P.Reply),
                               (L.NakCode, P.NakCode), (L.Space, P.Space),
                               (L.StatusFlag, P.StatusFlag), (L.Feature, P.Feature)]:
        assert {m.name: m.value for m in hw_enum} == {m.name: m.value for m in host_enum}
    assert (L.SYNC, L.MAX_PAYLOAD, L.PROTOCOL_VERSION) == (P.SYNC, P.MAX_PAYLOAD,
                                                          P.PROTOCOL_VERSION)
    assert L.N_COUNTERS == len(P.COUNTER_NAMES)
    assert L.status_layout.size == 8 * P.STATUS_SIZE
    assert L.header_layout.size == 8 * (P.HEADER_SIZE - 1)
    assert L.address_layout.size == 32
    assert L.address_layout["space"].offset == P.SPACE_SHIFT


@pytest.mark.parametrize("kwargs, message", [
    (dict(timeout=1), "inter-byte timeout must be an integer in 2..4294967295, not 1"),
    (dict(timeout=100, max_payload=2048), "max payload must be an integer in 1..1024, not 2048"),
    (dict(timeout=100, space_sizes={L.Space.PARAMS: 0}),
     "size of space PARAMS must be an integer in 1..268435456, not 0"),
    (dict(timeout=100, space_sizes={"params": 4}),
     "space_sizes keys must be Space members, not 'params'"),
])
def test_constructor_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError) as exc:
        L.HostLink(**kwargs)
    assert str(exc.value) == message


def test_converts_to_verilog():
    text = verilog.convert(L.HostLink(1000, max_payload=16), name="host_link")
    assert "module host_link" in text
    for port in ("i_stream__payload", "o_stream__ready", "bus__write__valid",
                 "bus__read_data__ready", "bus__start", "bus__counters"):
        assert port in text


# --- memory access ---------------------------------------------------------------------

def test_write_then_read_back(pattern):
    rng = random.Random(5)
    writes = [
        (P.Space.ACTIVATIONS, 0, rng.randbytes(MAX_PAYLOAD)),
        (P.Space.WEIGHTS, 100, rng.randbytes(28)),        # ends exactly at the space's end
        (P.Space.PARAMS, 3, rng.randbytes(1)),
        (P.Space.PROGRAM, 8, rng.randbytes(9)),
        (P.Space.ACTIVATIONS, 200, rng.randbytes(56)),
    ]
    expected = blank_memory()
    for space, offset, data in writes:
        expected[space][offset:offset + len(data)] = data

    async def script(bench, ctx):
        seq = 0
        for space, offset, data in writes:
            assert await bench.expect_ack(ctx, P.write_request(seq, space, offset, data)) == b""
            seq += 1
        for space, offset, data in writes:
            got = await bench.expect_ack(ctx, P.read_request(seq, space, offset, len(data)))
            assert got == bytes(expected[space][offset:offset + len(data)])
            seq += 1

    bench = LinkBench(pattern)
    bench.run(script)
    assert bench.memory == expected
    assert bench.write_beats == sum(len(d) for _, _, d in writes)


def spread(data, width, group):
    """What a WRITE_GROUPS of `data` puts in memory: each `width` bytes zero-filled to `group`."""
    out = bytearray()
    for k in range(0, len(data), width):
        out += data[k:k + width] + bytes(group - width)
    return bytes(out)


@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
def test_write_groups_zero_fills_each_group(pattern, compact):
    rng = random.Random(8)
    writes = [  # (space, offset, width, group, data): 1 of 8 (a one-channel image on
        # eight rows), 9 of 16 (a K-packed 3x3 tap group), whole words, a full frame
        (P.Space.ACTIVATIONS, 0, 1, 8, rng.randbytes(7)),
        (P.Space.ACTIVATIONS, 64, 9, 16, rng.randbytes(27)),
        (P.Space.WEIGHTS, 8, 4, 4, rng.randbytes(12)),
        (P.Space.ACTIVATIONS, 120, 2, 3, rng.randbytes(MAX_PAYLOAD - 2)),
        (P.Space.PARAMS, 61, 1, 3, b"\xff"),               # ends exactly at the space's end
    ]
    expected = blank_memory()
    for space in expected.values():
        space[:] = b"\x5a" * len(space)         # the fill must overwrite, not skip
    for space, offset, width, group, data in writes:
        block = spread(data, width, group)
        expected[space][offset:offset + len(block)] = block

    async def script(bench, ctx):
        for seq, (space, offset, width, group, data) in enumerate(writes):
            frame = P.write_groups_request(seq, space, offset, data, width, group)
            assert await bench.expect_ack(ctx, frame) == b""
        seq = len(writes)
        for space, offset, width, group, data in writes:
            block = spread(data, width, group)
            for start in range(0, len(block), MAX_PAYLOAD):
                n = min(MAX_PAYLOAD, len(block) - start)
                got = await bench.expect_ack(ctx, P.read_request(seq, space, offset + start, n))
                assert got == block[start:start + n]
                seq += 1

    bench = LinkBench(pattern, compact_status=compact)
    for space in bench.memory.values():
        space[:] = b"\x5a" * len(space)
    bench.run(script)
    assert bench.memory == expected
    assert bench.write_beats == sum(len(d) // w * g for _, _, w, g, d in writes)


def test_without_group_writes_write_groups_is_an_unknown_command(pattern):
    frame = P.write_groups_request(1, P.Space.ACTIVATIONS, 0, b"abc", 1, 8)

    async def script(bench, ctx):
        assert (await bench.status(ctx, 0)).features == P.Feature(0)
        assert await bench.transact(ctx, frame) == P.nak(1, P.NakCode.UNKNOWN_COMMAND)
        assert await bench.expect_ack(ctx, P.write_request(2, P.Space.PARAMS, 0, b"ok")) == b""
        assert bench.write_beats == 2

    LinkBench(pattern, compact_status=True, group_writes=False).run(script)


def test_acks_echo_seq_and_addr_exactly(pattern):
    frame = P.write_request(0xFE, P.Space.PARAMS, 7, b"\x00\xA5\xFF")

    async def script(bench, ctx):
        response = await bench.transact(ctx, frame)
        assert response == P.ack(0xFE, frame.addr)
        assert (await bench.transact(ctx, P.read_request(0xFF, P.Space.PARAMS, 7, 3))
                == P.ack(0xFF, frame.addr, b"\x00\xA5\xFF"))

    LinkBench(pattern).run(script)


# --- refused frames leave memory untouched -----------------------------------------

def corrupt(frame, index):
    data = bytearray(frame.encode())
    data[index] ^= 0x10
    return bytes(data)


@pytest.mark.parametrize("where", ["payload", "crc", "addr"])
def test_bad_crc_naks_and_leaves_memory_untouched(pattern, where):
    frame = P.write_request(9, P.Space.WEIGHTS, 4, bytes(range(1, 21)))
    index = {"payload": P.HEADER_SIZE + 5, "crc": len(frame.encode()) - 1, "addr": 4}[where]

    async def script(bench, ctx):
        await bench.send(ctx, corrupt(frame, index))
        assert await bench.response(ctx) == P.nak(9, P.NakCode.BAD_CRC)
        assert bench.write_beats == 0
        assert bench.memory == blank_memory()
        # The host resends with the same seq.
        assert await bench.transact(ctx, frame) == P.ack(9, frame.addr)

    bench = LinkBench(pattern)
    bench.run(script)
    assert bench.memory[P.Space.WEIGHTS][4:24] == bytes(range(1, 21))


def test_unknown_command_naks(pattern):
    async def script(bench, ctx):
        for seq, cmd in enumerate([0x00, 0x07, 0x42, P.Reply.ACK, 0xFF]):
            frame = P.Frame(cmd, seq, P.make_address(P.Space.ACTIVATIONS, 0), b"xyz")
            assert await bench.transact(ctx, frame) == P.nak(seq, P.NakCode.UNKNOWN_COMMAND)
        assert bench.write_beats == 0

    LinkBench(pattern).run(script)


@pytest.mark.parametrize("stop_after", [1, 3, 11, 14, 30])
def test_truncated_frame_naks_after_timeout(pattern, stop_after):
    frame = P.write_request(0x33, P.Space.ACTIVATIONS, 16, bytes(range(20)))
    wire = frame.encode()
    # The NAK echoes the seq once the seq byte (index 2) arrived.
    seq = 0x33 if stop_after > 2 else 0

    async def script(bench, ctx):
        await bench.send(ctx, wire[:stop_after])
        stopped = bench.last_sent_cycle
        assert await bench.response(ctx) == P.nak(seq, P.NakCode.TRUNCATED)
        assert bench.first_rx_cycle_after(stopped) - stopped >= TIMEOUT
        assert bench.write_beats == 0
        assert await bench.transact(ctx, frame) == P.ack(0x33, frame.addr)

    LinkBench(pattern).run(script)


@pytest.mark.parametrize("gap", [TIMEOUT - 1, TIMEOUT])
def test_timeout_is_exactly_that_many_idle_cycles(gap):
    frame = P.write_request(1, P.Space.PARAMS, 0, b"slow")
    wire = frame.encode()

    async def script(bench, ctx):
        if gap < TIMEOUT:
            for byte in wire:
                await bench.send(ctx, bytes([byte]))
                await ctx.tick().repeat(gap)          # cycles with valid low
            assert await bench.response(ctx) == P.ack(1, frame.addr)
        else:
            await bench.send(ctx, wire[:5])
            await ctx.tick().repeat(gap - 1)
            assert bench.rx_cycles == []              # one cycle short: still waiting
            assert await bench.response(ctx) == P.nak(1, P.NakCode.TRUNCATED)

    bench = LinkBench(PATTERNS["full_speed"])
    bench.run(script)
    assert bench.memory[P.Space.PARAMS][:4] == (b"slow" if gap < TIMEOUT else bytes(4))


def test_garbage_before_sync_is_skipped(pattern):
    frame = P.write_request(4, P.Space.PROGRAM, 0, b"\x11\x22")

    async def script(bench, ctx):
        await bench.send(ctx, bytes([0x00, 0xFF, 0x5A, 0xA4, 0x01]) + frame.encode())
        assert await bench.response(ctx) == P.ack(4, frame.addr)

    bench = LinkBench(pattern)
    bench.run(script)
    assert bench.memory[P.Space.PROGRAM][:2] == b"\x11\x22"


def test_false_sync_in_garbage_costs_one_nak_then_resync(pattern):
    frame = P.write_request(1, P.Space.ACTIVATIONS, 0x10, b"abcde")

    async def script(bench, ctx):
        # The stray 0xA5 starts a frame whose header is the real frame's bytes
        # shifted by one: its len field (0x500) exceeds the staging RAM.
        await bench.send(ctx, b"\xA5" + frame.encode())
        assert await bench.response(ctx) == P.nak(P.Command.WRITE, P.NakCode.TOO_LONG)
        assert bench.write_beats == 0
        assert await bench.transact(ctx, frame) == P.ack(1, frame.addr)

    LinkBench(pattern).run(script)


def test_length_beyond_staging_ram_is_drained_and_refused(pattern):
    big = P.write_request(2, P.Space.ACTIVATIONS, 0, bytes(MAX_PAYLOAD + 1))

    async def script(bench, ctx):
        await bench.send(ctx, big.encode())
        stopped = bench.last_sent_cycle
        assert await bench.response(ctx) == P.nak(2, P.NakCode.TOO_LONG)
        # The NAK waits for the line to go quiet, so the frame's tail is not
        # mistaken for a new frame.
        assert bench.first_rx_cycle_after(stopped) - stopped >= TIMEOUT
        assert bench.write_beats == 0
        status = await bench.status(ctx, 3)
        assert status.max_payload == MAX_PAYLOAD

    LinkBench(pattern).run(script)


# compact_status (the iCE40 variant) must put the same bytes on the line
@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
def test_bad_lengths_addresses_and_arguments_are_refused(pattern, compact):
    act = P.make_address(P.Space.ACTIVATIONS, 0)
    cases = [
        (P.Frame(P.Command.WRITE, 0, act), P.NakCode.BAD_LENGTH),              # empty write
        (P.write_request(1, P.Space.PARAMS, 60, bytes(5)), P.NakCode.BAD_ADDRESS),  # past end
        (P.Frame(P.Command.WRITE, 2, 0x7000_0000, b"x"), P.NakCode.BAD_ADDRESS),  # no space 7
        (P.Frame(P.Command.READ, 3, act, struct.pack("<I", 0)), P.NakCode.BAD_LENGTH),
        (P.Frame(P.Command.READ, 4, act, struct.pack("<I", MAX_PAYLOAD + 1)),
         P.NakCode.BAD_LENGTH),
        (P.Frame(P.Command.READ, 5, act, b"\x01\x00"), P.NakCode.BAD_LENGTH),  # short count
        (P.read_request(6, P.Space.PROGRAM, 30, 3), P.NakCode.BAD_ADDRESS),
        (P.Frame(P.Command.RUN, 7, P.make_address(P.Space.WEIGHTS, 0), struct.pack("<I", 9)),
         P.NakCode.BAD_ADDRESS),                                              # not PROGRAM
        (P.run_request(8, 32, 100), P.NakCode.BAD_ADDRESS),                   # past PROGRAM
        (P.Frame(P.Command.RUN, 9, P.make_address(P.Space.PROGRAM, 0), bytes(4)),
         P.NakCode.BAD_ARGUMENT),                                             # watchdog 0
        (P.Frame(P.Command.STATUS, 10, 0, b"\x00"), P.NakCode.BAD_LENGTH),
        (P.Frame(P.Command.RESET, 11, 0, b"\x00"), P.NakCode.BAD_LENGTH),
        (P.Frame(P.Command.WRITE_GROUPS, 12, act, b"\x01\x01"), P.NakCode.BAD_LENGTH),
        (P.Frame(P.Command.WRITE_GROUPS, 13, act, b"\x00\x04ab"), P.NakCode.BAD_ARGUMENT),
        (P.Frame(P.Command.WRITE_GROUPS, 14, act, b"\x05\x04abcde"), P.NakCode.BAD_ARGUMENT),
        (P.Frame(P.Command.WRITE_GROUPS, 15, act, b"\x02\x04abc"), P.NakCode.BAD_LENGTH),
        # 3 data bytes, groups of 1 of 2: 6 bytes from 60 run past PARAMS' 64
        (P.write_groups_request(16, P.Space.PARAMS, 59, b"abc", 1, 2), P.NakCode.BAD_ADDRESS),
    ]

    async def script(bench, ctx):
        for frame, code in cases:
            assert await bench.transact(ctx, frame) == P.nak(frame.seq, code), str(frame)
        assert bench.write_beats == 0
        assert bench.starts == [] and bench.resets == []

    LinkBench(pattern, compact_status=compact).run(script)


# --- run, status, watchdog, reset ---------------------------------------------------

@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
def test_run_status_busy_and_duplicate_run(pattern, compact):
    latency = 3000

    async def script(bench, ctx):
        status = await bench.status(ctx, 0)
        # The link reports its space sizes (and the 0x0 shape it was built with).
        assert status == P.DeviceStatus(max_payload=MAX_PAYLOAD,
                                        counters=dict(zip(P.COUNTER_NAMES, COUNTERS)),
                                        space_bytes={"activations": 256, "weights": 128,
                                                     "params": 64, "program": 32},
                                        features=P.Feature.WRITE_GROUPS)
        run = P.run_request(1, 12, 10_000)
        assert await bench.expect_ack(ctx, run) == b""
        assert bench.starts[0][1] == 12
        # The ACK of a RUN may be lost; the resend (same seq, nothing in between)
        # is acknowledged again without starting a second run.
        assert await bench.expect_ack(ctx, run) == b""
        assert len(bench.starts) == 1
        assert (await bench.status(ctx, 2)).flags == P.StatusFlag.RUNNING
        # Memory belongs to the accelerator while it runs.
        busy = P.write_request(3, P.Space.ACTIVATIONS, 0, b"x")
        assert await bench.transact(ctx, busy) == P.nak(3, P.NakCode.BUSY)
        assert (await bench.transact(ctx, P.read_request(4, P.Space.ACTIVATIONS, 0, 1))
                == P.nak(4, P.NakCode.BUSY))
        assert await bench.transact(ctx, P.run_request(5, 0, 10)) == P.nak(5, P.NakCode.BUSY)
        # Once another frame came in between, the same seq is a new request.
        assert await bench.transact(ctx, run) == P.nak(1, P.NakCode.BUSY)
        assert len(bench.starts) == 1
        while (status := await bench.status(ctx, 7)).flags & P.StatusFlag.RUNNING:
            await ctx.tick().repeat(500)
        assert status.flags == P.StatusFlag.DONE
        assert status.run_cycles == latency
        assert status.counters == dict(zip(P.COUNTER_NAMES, COUNTERS))
        assert bench.resets == []
        # A new seq starts a new run.
        assert await bench.expect_ack(ctx, P.run_request(8, 4, 10_000)) == b""
        assert [program for _, program in bench.starts] == [12, 4]
        assert await bench.expect_ack(ctx, P.reset_request(9)) == b""

    LinkBench(pattern, run_latency=latency, compact_status=compact).run(script)


@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
def test_naks_between_statuses_leave_the_status_bytes(pattern, compact):
    """A NAK's code has a byte of its own: a NAK right after a STATUS carries its code,
    and the STATUS after the NAK is the STATUS before it."""
    naks = [  # refused in EXECUTE, and after the drain (a CRC error, a length too long)
        (P.Frame(P.Command.STATUS, 1, 0, b"\x00").encode(), P.NakCode.BAD_LENGTH),
        (P.Frame(0x42, 2, 0).encode(), P.NakCode.UNKNOWN_COMMAND),
        (corrupt(P.status_request(3), 4), P.NakCode.BAD_CRC),
        (P.write_request(4, P.Space.PARAMS, 0, bytes(MAX_PAYLOAD + 1)).encode(),
         P.NakCode.TOO_LONG),
    ]

    async def script(bench, ctx):
        before = await bench.expect_ack(ctx, P.status_request(0))
        assert P.DeviceStatus.decode(before).max_payload == MAX_PAYLOAD
        for seq, (wire, code) in enumerate(naks, start=1):
            await bench.send(ctx, wire)
            assert await bench.response(ctx) == P.nak(seq, code)
            assert await bench.expect_ack(ctx, P.status_request(10 + seq)) == before

    LinkBench(pattern, compact_status=compact).run(script)


def test_status_during_a_run_is_the_cycle_it_executes(pattern):
    """Without compact_status, STATUS sends a snapshot of the cycle the request executes:
    two after its last byte (CHECK, then EXECUTE). run_cycles is 0 the cycle after the
    start pulse (as the watchdog test pins), so it reads last byte - start + 1."""
    async def script(bench, ctx):
        assert await bench.expect_ack(ctx, P.run_request(1, 0, 100_000)) == b""
        start = bench.starts[0][0]
        for seq in range(2, 5):
            await ctx.tick().repeat(97 * seq)      # the count's low byte differs each time
            frame = P.status_request(seq)
            await bench.send(ctx, frame.encode())
            last_byte = bench.last_sent_cycle
            status = P.DeviceStatus.decode(P.check_response(frame, await bench.response(ctx)))
            assert status.flags == P.StatusFlag.RUNNING
            assert status.run_cycles == last_byte + 2 - (start + 1)

    LinkBench(pattern, run_latency=None).run(script)


def test_watchdog_aborts_a_run_that_never_finishes(pattern):
    limit = 150

    async def script(bench, ctx):
        assert await bench.expect_ack(ctx, P.run_request(1, 0, limit)) == b""
        await ctx.tick().repeat(limit + 20)
        status = await bench.status(ctx, 2)
        assert status.flags == P.StatusFlag.WATCHDOG
        assert status.run_cycles == limit
        start_cycle = bench.starts[0][0]
        assert bench.resets == [start_cycle + 1 + limit]
        # The link is usable again.
        assert await bench.expect_ack(ctx, P.write_request(3, P.Space.PARAMS, 0, b"ok")) == b""

    LinkBench(pattern, run_latency=None).run(script)


def test_reset_aborts_a_run_and_clears_flags(pattern):
    async def script(bench, ctx):
        assert await bench.expect_ack(ctx, P.run_request(1, 0, 100_000)) == b""
        assert await bench.expect_ack(ctx, P.reset_request(2)) == b""
        assert len(bench.resets) == 1
        status = await bench.status(ctx, 3)
        assert status.flags == P.StatusFlag(0) and status.run_cycles == 0
        await ctx.tick().repeat(30)
        assert (await bench.status(ctx, 4)).flags == P.StatusFlag(0)
        assert await bench.expect_ack(ctx, P.write_request(5, P.Space.PARAMS, 0, b"ok")) == b""

    LinkBench(pattern, run_latency=None).run(script)


def test_a_run_ending_as_a_frame_is_checked_does_not_make_it_busy():
    """The BUSY check sees `running` as it is in EXECUTE: a watchdog that fires up to the
    cycle after the frame's last byte (CHECK) leaves the accelerator idle for the frame, one
    that fires a cycle later does not. The limits put the watchdog on every cycle around
    the frame's end."""
    seen = set()

    async def send_watching_reset(bench, ctx, data):
        """Send `data` at full speed; the watchdog's reset pulse, in cycles after the cycle
        that took the last byte (None: not by 3 cycles after it)."""
        stream, bus = bench.dut.i_stream, bench.dut.bus
        pending, cycle, last, reset_at = list(data), 0, None, None
        while last is None or cycle <= last + 3:
            ctx.set(stream.valid, bool(pending))
            ctx.set(stream.payload, pending[0] if pending else 0)
            _, _, ready, reset = await ctx.tick().sample(stream.ready, bus.reset)
            if pending and ready:
                pending.pop(0)
                last = cycle if not pending else None
            if reset and reset_at is None:
                reset_at = cycle
            cycle += 1
        ctx.set(stream.valid, 0)
        return None if reset_at is None else reset_at - last

    async def script(bench, ctx):
        for n, limit in enumerate(range(40, 110)):
            seq = 3 * n
            assert await bench.expect_ack(ctx, P.run_request(seq, 0, limit)) == b""
            request = P.write_request(seq + 1, P.Space.PARAMS, 0, b"ok")
            after_last = await send_watching_reset(bench, ctx, request.encode())
            seen.add(after_last)
            answer = await bench.response(ctx)
            if after_last is not None and after_last <= 1:
                assert P.check_response(request, answer) == b"", limit
            else:
                assert answer == P.nak(seq + 1, P.NakCode.BUSY), limit
            assert await bench.expect_ack(ctx, P.reset_request(seq + 2)) == b""

    LinkBench(PATTERNS["full_speed"], run_latency=None).run(script)
    assert {0, 1, 2, None} <= seen


# --- the same behaviour as the reference (hw/link.py at REFERENCE_REV) -----------------

REFERENCE_REV = "34792c9"     # hw/link.py's last behaviour change


def reference_link_module():
    """hw/link.py as of REFERENCE_REV, read from git: the behaviour a timing change to
    hw/link.py must keep, cycle by cycle (move REFERENCE_REV on with a change that means
    to change the behaviour)."""
    root = Path(__file__).resolve().parents[2]
    try:
        source = subprocess.run(["git", "show", f"{REFERENCE_REV}:hw/link.py"], cwd=root,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"the reference hw/link.py ({REFERENCE_REV}) needs the git history "
                    f"(a full clone): {e}")
    module = types.ModuleType("link_reference")
    exec(compile(source.replace("from .", "from hw."), f"{REFERENCE_REV}:hw/link.py",
                 "exec"), module.__dict__)
    return module


def random_frames(rng, max_payload):
    """Wire bytes of frames of every command, well formed or not: bad fields, lengths
    and CRCs, truncations, garbage and unknown commands."""
    def frame(cmd, seq, addr, payload):
        body = bytes([cmd, seq]) + struct.pack("<II", addr, len(payload)) + payload
        return bytes([P.SYNC]) + body + struct.pack("<I", P.crc32(body))

    def address():
        space = rng.choice([0, 1, 2, 3, 3, rng.randrange(16)])
        size = SIZES[L.Space(space)] if space < 4 else 64
        return space << 28 | rng.choice([0, 0, 0, rng.randrange(size), size - 1, size,
                                         rng.randrange(1 << 28)])

    while True:
        # (a few numbers often: a RUN's resend)
        seq = rng.randrange(3) if rng.random() < 0.5 else rng.randrange(256)
        kind = rng.choice(["write", "write", "groups", "read", "read", "run", "run",
                           "status", "reset", "unknown"])
        n = rng.choice([0, 1, 2, 3, 4, 5, 6, rng.randrange(max_payload + 1), max_payload])
        if kind == "write":
            data = frame(P.Command.WRITE, seq, address(), rng.randbytes(n))
        elif kind == "groups":
            width, group = rng.choice([0, 1, 2, 3]), rng.choice([0, 1, 2, 4, 255])
            data = frame(P.Command.WRITE_GROUPS, seq, address(),
                         bytes([width, group]) + rng.randbytes(min(n, max_payload - 2)))
        elif kind == "read":
            count = rng.choice([0, 1, 2, rng.randrange(max_payload + 1), max_payload,
                                max_payload + 1, rng.randrange(1 << 32)])
            data = frame(P.Command.READ, seq, address(),
                         struct.pack("<I", count)[:rng.choice([4, 4, 4, 3])])
        elif kind == "run":
            limit = rng.choice([0, 1, 2, rng.randrange(1, 40), rng.randrange(1, 400),
                                rng.randrange(1, 3000), 1 << 31])
            addr = 3 << 28 | rng.randrange(40) if rng.random() < 0.8 else address()
            data = frame(P.Command.RUN, seq, addr,
                         struct.pack("<I", limit)[:rng.choice([4, 4, 4, 4, 2])])
        else:
            cmd = {"status": P.Command.STATUS, "reset": P.Command.RESET,
                   "unknown": rng.choice([0, 7, 0x80, 0xA5, 0xFF])}[kind]
            data = frame(cmd, seq, 0, b"" if rng.random() < 0.8 else b"x")
        if rng.random() < 0.5:        # well formed
            yield data
            continue
        if rng.random() < 0.05:       # a length beyond the staging RAM
            data = data[:7] + struct.pack("<I", rng.choice(
                [max_payload + 1, rng.randrange(max_payload + 1, 1 << 32),
                 rng.randrange(1, 256) << rng.choice([8, 16, 24]) | rng.randrange(4)])
            ) + data[11:]
        if rng.random() < 0.2:        # a corrupted byte
            k = rng.randrange(1, len(data))
            data = data[:k] + bytes([data[k] ^ (1 << rng.randrange(8))]) + data[k + 1:]
        if rng.random() < 0.1:        # truncated
            data = data[:rng.randrange(1, len(data))]
        if rng.random() < 0.2:        # line noise before it
            data = rng.randbytes(rng.randrange(1, 4)) + data
        yield data


@pytest.mark.parametrize("compact, groups, max_payload, seed", [
    (False, True, MAX_PAYLOAD, 1),
    (False, True, 16, 2),
    (False, False, MAX_PAYLOAD, 3),
    (True, True, MAX_PAYLOAD, 4),
])
def test_same_ports_cycle_by_cycle_as_the_reference(compact, groups, max_payload, seed,
                                                     cycles=40_000):
    """hw/link.py against its reference (hw/link.py at REFERENCE_REV, from git): the
    same inputs on every input port of both, every cycle, and the same value on every
    output port of both, every cycle. The inputs are random (bytes offered with gaps and
    pauses, ready, read data, done pulses, counters), but while a run goes on, frames that
    need the accelerator idle whose check (the cycle after their last byte) meets the run's
    end: a done pulse, or the watchdog. The answers seen show that the frames reached
    every answer."""
    rng = random.Random(seed)
    kwargs = dict(max_payload=max_payload, space_sizes=SIZES, shape=(3, 5),
                  compact_status=compact, group_writes=groups)
    new = L.HostLink(TIMEOUT, **kwargs)
    ref = reference_link_module().HostLink(TIMEOUT, **kwargs)
    m = Module()
    m.submodules.new = new
    m.submodules.ref = ref
    inputs, outputs = [], []          # (name, new's port, the reference's)
    for (path, member, mine), (_, _, theirs) in zip(new.signature.flatten(new),
                                                     ref.signature.flatten(ref)):
        (inputs if member.flow == wiring.In else outputs).append(
            (".".join(map(str, path)), Value.cast(mine), Value.cast(theirs)))
    data = new.bus.write.payload.shape()["data"]
    data_mask = (1 << data.width) - 1 << data.offset
    frames = random_frames(rng, max_payload)
    decoder = P.FrameDecoder()
    answers = set()
    starts = resets = 0

    def needing_idle():
        """A frame that the accelerator's being busy refuses."""
        seq, offset = rng.randrange(256), rng.randrange(8)
        return rng.choice([
            P.write_request(seq, P.Space.PARAMS, offset, rng.randbytes(3)),
            P.read_request(seq, P.Space.PARAMS, offset, 2),
            P.run_request(seq, offset, rng.choice([1, 2, rng.randrange(1, 300)]))]).encode()

    async def bench(ctx):
        nonlocal starts, resets
        pending, frame, last_frame = deque(), b"", b""
        gap = 0                       # idle cycles before the next byte
        steady = False                # the frame's bytes back to back
        done_at = set()               # cycles with a done pulse
        calm_until = -1               # no random done pulses till then
        run_on, watchdog_at = False, None
        unanswered, wait_until = False, 0     # the last frame's answer is not out yet
        odds = {}                     # chance of each input's being high, for a while
        for cycle in range(cycles):
            if cycle % 1500 == 0:
                fast = rng.random() < 0.3
                odds = {name: 1.0 if fast else rng.choice([0.2, 0.5, 0.9, 1.0])
                        for name in ("o_stream.ready", "bus.write.ready",
                                     "bus.read_addr.ready", "bus.read_data.valid")}
                odds["gap"] = 0.0 if fast else rng.choice([0.0, 0.1, 0.5])
                odds["bus.done"] = rng.choice([0.0, 0.0, 0.0, 0.001, 0.01, 0.2])
            if not pending and run_on and unanswered and cycle < wait_until:
                pass    # the link is still busy with the last frame: the next one is timed
            elif not pending:
                frame, steady = next(frames), False
                if run_on and rng.random() < 0.8:
                    frame, steady = needing_idle(), True
                    # its check (the cycle after its last byte) on the watchdog's cycle or
                    # a done pulse's, or one either side, or neither
                    # (at full speed: a byte a cycle, and LENGTH's cycle after the header)
                    check = watchdog_at + rng.choice([-1, 0, 0, 1])
                    way = rng.random()
                    if way < 0.4 and cycle < check - len(frame) - 1 < cycle + 500:
                        gap = check - len(frame) - 1 - cycle
                    else:
                        check = cycle + gap + len(frame) + 1
                        if way < 0.7:
                            done_at.add(check + rng.choice([-1, 0, 0, 1]))
                    calm_until = check + 1          # no other done pulses till then
                pending.extend(frame)
            values = {}
            for name, port, _ in inputs:
                if name == "bus.done" and cycle <= calm_until:
                    values[name] = int(cycle in done_at)
                elif name in odds:
                    values[name] = int(rng.random() < odds[name])
                elif name == "i_stream.valid":
                    values[name] = int(gap == 0 and bool(pending))
                elif name == "i_stream.payload" and gap == 0 and pending:
                    values[name] = pending[0]
                elif name != "bus.counters" or rng.random() < 0.05:
                    values[name] = rng.getrandbits(len(port))
            for name, port, port_ in inputs:
                if name in values:
                    ctx.set(port, values[name])
                    ctx.set(port_, values[name])
            got = {name: ctx.get(port_) for name, _, port_ in outputs}
            for name, port, _ in outputs:
                mine = ctx.get(port)
                if name == "bus.write.payload" and not got["bus.write.valid"]:
                    # the write's data only with its valid: since 34792c9 the staging
                    # RAM's output register holds the byte read, not a byte a cycle
                    mine, got[name] = mine & ~data_mask, got[name] & ~data_mask
                assert mine == got[name], (
                    f"cycle {cycle}: {name} is {mine:#x}, the reference's {got[name]:#x}")
            if values["i_stream.valid"] and got["i_stream.ready"]:
                pending.popleft()
                if not pending:
                    last_frame, unanswered, wait_until = frame, True, cycle + 2000
                # within a frame rarely, between frames often, a pause the timeout ends
                pause = 0.3 if not pending else 0 if steady else 0.003
                gap = (rng.randrange(TIMEOUT - 2, TIMEOUT + 2) if rng.random() < pause else
                       rng.randrange(3) if not steady and rng.random() < odds["gap"] else 0)
            elif gap:
                gap -= 1
            if got["o_stream.valid"] and values["o_stream.ready"]:
                for event in decoder.feed(bytes([got["o_stream.payload"]])):
                    assert isinstance(event, P.Frame), event
                    unanswered = False
                    answers.add(event.cmd if event.cmd == P.Reply.ACK
                                else P.NakCode(event.payload[0]))
            starts += got["bus.start"]
            resets += got["bus.reset"]
            if got["bus.start"]:
                # the RUN just received: the watchdog resets `limit` cycles after the next
                limit, = struct.unpack("<I", last_frame[-8:-4])
                run_on, watchdog_at = True, cycle + 1 + limit
            elif got["bus.reset"] or values["bus.done"]:
                run_on = False
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert answers == {P.Reply.ACK, *P.NakCode}, answers
    assert starts > 3 and resets > 3, (starts, resets)


# --- the host client against the gateware -------------------------------------------

class SimLine:
    """Transport from a LinkClient thread to the simulated link, with injected faults.

    ``down_faults``/``up_faults`` map byte indices (counted over the whole run)
    on the host → device / device → host direction to ``"flip"`` or ``"drop"``.
    """

    def __init__(self, down_faults, up_faults):
        self.to_device = queue.Queue()
        self.to_host = queue.Queue()
        self.down_faults, self.up_faults = dict(down_faults), dict(up_faults)
        self.down_count = self.up_count = 0

    def _apply(self, faults, index, byte):
        fault = faults.pop(index, None)
        return None if fault == "drop" else byte ^ 0x08 if fault == "flip" else byte

    def send(self, data):
        out = []
        for byte in data:
            byte = self._apply(self.down_faults, self.down_count, byte)
            self.down_count += 1
            if byte is not None:
                out.append(byte)
        self.to_device.put(bytes(out))   # one item, so a frame is not split by scheduling

    def receive(self, timeout):
        try:
            data = bytearray(self.to_host.get(timeout=timeout))
        except queue.Empty:
            return b""
        while True:
            try:
                data += self.to_host.get_nowait()
            except queue.Empty:
                return bytes(data)

    def from_device(self, byte):
        byte = self._apply(self.up_faults, self.up_count, byte)
        self.up_count += 1
        if byte is not None:
            self.to_host.put(bytes([byte]))


def test_client_against_the_gateware_over_a_faulty_line():
    """LinkClient resends through a flipped request byte, a dropped request byte and
    a flipped answer byte, and still returns exactly what the memory holds."""
    rng = random.Random(11)
    weights = rng.randbytes(150)
    assert weights[0] != 0
    # The first WRITE is bytes 0..78: byte 20 is in its payload (BAD_CRC). Its
    # resend is 79..157: dropping 83, an addr byte, shifts the first payload
    # byte into the top of len (TOO_LONG). Answers: two 16-byte NAKs, two
    # 15-byte ACKs, then the first READ's answer, whose data starts at 73.
    line = SimLine(down_faults={20: "flip", 83: "drop"}, up_faults={80: "flip"})
    # The timeout is wall-clock against a simulation: generous, so that a loaded machine
    # does not add a resend (the corrupted answer costs one full timeout).
    client = P.LinkClient(line, response_timeout=3.0, max_payload=MAX_PAYLOAD)
    outcome = {}

    def host():
        try:
            client.write(P.Space.WEIGHTS, 0, weights[:120])
            outcome["read"] = client.read(P.Space.WEIGHTS, 0, 120)
            outcome["status"] = client.run(4, 10_000, poll_interval=0)
        except BaseException as error:      # re-raised in the test's thread
            outcome["error"] = error

    async def bridge(bench, ctx):
        i, o = bench.dut.i_stream, bench.dut.o_stream
        thread = threading.Thread(target=host, daemon=True)
        thread.start()
        pending = deque()
        ctx.set(o.ready, 1)
        while thread.is_alive():
            if not pending:
                try:
                    pending.extend(line.to_device.get_nowait())
                except queue.Empty:
                    pass
            ctx.set(i.valid, bool(pending))
            ctx.set(i.payload, pending[0] if pending else 0)
            _, _, taken, o_valid, o_byte = await ctx.tick().sample(i.ready, o.valid, o.payload)
            if pending and taken:
                pending.popleft()
            if o_valid:
                line.from_device(o_byte)
        thread.join()

    bench = LinkBench(PATTERNS["random"], run_latency=200)
    bench.run(bridge, host_side=False)
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["read"] == weights[:120]
    assert bench.memory[P.Space.WEIGHTS][:120] == weights[:120]
    assert outcome["status"].flags == P.StatusFlag.DONE
    assert outcome["status"].run_cycles == 200
    assert [program for _, program in bench.starts] == [4]
    assert client.resends == 3
    assert [p.split(":")[0] for p in client.problems][:2] == ["NAK BAD_CRC", "NAK TOO_LONG"]
    assert client.problems[2].startswith("frame ")     # a FrameError from the decoder
    assert not line.down_faults and not line.up_faults    # every fault was injected
