"""CRC32 register against zlib.crc32, including the residue check the link relies on."""

import random
import struct
import zlib

import pytest
from amaranth.sim import Simulator

from hw.crc import CRC32, CRC32_RESIDUE


# serial (AcceleratorConfig.compact_link): a bit a cycle, the same values once not busy
SERIAL = pytest.mark.parametrize("serial", [False, True], ids=["byte", "serial"])


def run(testbench, serial=False):
    dut = CRC32(serial=serial)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        await testbench(ctx, dut)

    sim.add_testbench(bench)
    sim.run()


async def feed(ctx, dut, data, *, rng, start=True):
    """Feed ``data``, with idle cycles in between; ``start`` rides on the first byte."""
    for i, byte in enumerate(data):
        while rng.random() < 0.3 or (dut.serial and ctx.get(dut.busy)):
            await ctx.tick()
        ctx.set(dut.start, start and i == 0)
        ctx.set(dut.en, 1)
        ctx.set(dut.data, byte)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.en, 0)
    while dut.serial and ctx.get(dut.busy):
        await ctx.tick()


def test_residue_constant_matches_zlib():
    message = b"samoyed host link"
    framed = message + struct.pack("<I", zlib.crc32(message))
    assert zlib.crc32(framed) ^ 0xFFFFFFFF == CRC32_RESIDUE


@SERIAL
def test_crc_matches_zlib_on_random_messages(serial):
    rng = random.Random(1)
    messages = [bytes([0]), bytes([0xFF]), b"123456789"] + [
        rng.randbytes(rng.randint(1, 40)) for _ in range(12)]

    async def testbench(ctx, dut):
        for message in messages:
            await feed(ctx, dut, message, rng=rng)
            assert ctx.get(dut.crc) == zlib.crc32(message), message.hex()
            assert ctx.get(dut.residue_ok) == 0
            # Idle cycles must not change the register.
            await ctx.tick().repeat(3)
            assert ctx.get(dut.crc) == zlib.crc32(message)

    run(testbench, serial)


@SERIAL
def test_check_value_of_the_standard_test_string(serial):
    async def testbench(ctx, dut):
        await feed(ctx, dut, b"123456789", rng=random.Random(0))
        assert ctx.get(dut.crc) == 0xCBF43926

    run(testbench, serial)


@SERIAL
def test_start_alone_restarts_and_empty_message_gives_zero(serial):
    async def testbench(ctx, dut):
        await feed(ctx, dut, b"junk", rng=random.Random(0))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        assert ctx.get(dut.crc) == zlib.crc32(b"") == 0
        await feed(ctx, dut, b"abc", rng=random.Random(0), start=False)
        assert ctx.get(dut.crc) == zlib.crc32(b"abc")

    run(testbench, serial)


@SERIAL
def test_residue_flags_intact_frames_only(serial):
    rng = random.Random(2)

    async def testbench(ctx, dut):
        for _ in range(8):
            message = rng.randbytes(rng.randint(1, 24))
            framed = bytearray(message + struct.pack("<I", zlib.crc32(message)))
            await feed(ctx, dut, framed, rng=rng)
            assert ctx.get(dut.residue_ok) == 1
            framed[rng.randrange(len(framed))] ^= 1 << rng.randrange(8)
            await feed(ctx, dut, framed, rng=rng)
            assert ctx.get(dut.residue_ok) == 0

    run(testbench, serial)
