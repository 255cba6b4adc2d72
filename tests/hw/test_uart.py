"""UART: loopback of random bytes with back-pressure, glitches, framing errors, overruns."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.uart import UART, divisor

CLK, BAUD = 1_000_000, 100_000   # 10 cycles per bit keeps the simulation short


def simulate(testbench, dut, loopback=False):
    m = Module()
    m.submodules.dut = dut
    if loopback:
        m.d.comb += dut.rx_pin.eq(dut.tx_pin)
    sim = Simulator(m)
    sim.add_clock(1 / CLK)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_loopback_with_back_pressure(stall):
    dut = UART(CLK, BAUD)
    rng = random.Random(int(stall * 10))
    data = [rng.randrange(256) for _ in range(12)]
    received = []

    async def bench(ctx):
        sent = 0
        for _ in range(12 * 10 * 10 + 300):
            want = sent < len(data)
            ctx.set(dut.tx.valid, want)
            if want:
                ctx.set(dut.tx.payload, data[sent])
            ready = rng.random() >= stall
            ctx.set(dut.rx.ready, ready)
            tx_ok = want and ctx.get(dut.tx.ready)
            rx_ok = ready and ctx.get(dut.rx.valid)
            rx_byte = ctx.get(dut.rx.payload)
            await ctx.tick()
            if tx_ok:
                sent += 1
            if rx_ok:
                received.append(rx_byte)
        assert received == data
        assert ctx.get(dut.overruns) == 0

    simulate(bench, dut, loopback=True)


def drive_byte(value, stop=1):
    """The pin levels of one 8N1 frame, one entry per clock cycle."""
    levels = [0] + [(value >> i) & 1 for i in range(8)] + [stop]
    return [level for level in levels for _ in range(CLK // BAUD)]


def test_glitch_and_framing_error_are_dropped():
    dut = UART(CLK, BAUD)
    received = []
    wave = [1] * 20 + [0] * 3 + [1] * 30          # a 3-cycle glitch: no start bit
    wave += drive_byte(0x5A, stop=0) + [1] * 30   # stop bit low: dropped
    wave += drive_byte(0xC3) + [1] * 30           # a good byte

    async def bench(ctx):
        ctx.set(dut.rx.ready, 1)
        for level in wave:
            ctx.set(dut.rx_pin, level)
            if ctx.get(dut.rx.valid):
                received.append(ctx.get(dut.rx.payload))
            await ctx.tick()
        assert received == [0xC3]

    simulate(bench, dut)


def test_overrun_is_counted():
    dut = UART(CLK, BAUD)
    wave = drive_byte(1) + [1] * 5 + drive_byte(2) + [1] * 30

    async def bench(ctx):
        ctx.set(dut.rx.ready, 0)
        for level in wave:
            ctx.set(dut.rx_pin, level)
            await ctx.tick()
        assert ctx.get(dut.overruns) == 1
        assert ctx.get(dut.rx.valid) and ctx.get(dut.rx.payload) == 2

    simulate(bench, dut)


@pytest.mark.parametrize("clk, baud, message", [
    (25e6, 3_000_000, r"off by 4.2 %; pick a rate within 2 % \(e.g. 3125000\)"),
    (1e6, 500_000, "too slow for 500000 baud: it gives 2 cycles per bit"),
    (0, 9600, "must be positive"),
])
def test_bad_rates_are_refused(clk, baud, message):
    with pytest.raises(ValueError, match=message):
        divisor(clk, baud)


def test_exact_rates():
    assert divisor(48e6, 1_000_000) == 48
    assert divisor(125e6, 3_000_000) == 42   # 2.976 Mbaud: 0.8 % off
