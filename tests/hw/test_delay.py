"""hw.delay.DelayLine against a Python deque: the value from exactly `cycles` ago."""

import random
from collections import deque

import pytest
from amaranth.sim import Simulator

from hw.delay import DelayLine


def _run(dut, cycles_of, n=600):
    """Drive random values for `n` cycles; check o against i of `cycles_of(t)` ago."""
    rng = random.Random(1)
    history = []

    async def bench(ctx):
        for t in range(n):
            value = rng.getrandbits(dut.width)
            ctx.set(dut.i, value)
            delay = cycles_of(t)
            if dut.variable:
                ctx.set(dut.cycles, delay)
            history.append(value)
            if t >= dut.max_cycles + 1:     # the RAM holds zeros before that
                assert ctx.get(dut.o) == history[t - delay], (t, delay)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("cycles", [2, 3, 8, 26])
def test_fixed_delay(cycles):
    _run(DelayLine(15, cycles), lambda t: cycles)


def test_variable_delay_holding_still_in_phases():
    # the delay changes only between phases, as a descriptor's does; right after a
    # change the line is not read (the accelerator drains first)
    phases = [13, 10, 26, 2]
    dut = DelayLine(32, 26, variable=True)
    rng = random.Random(2)
    history = []

    async def bench(ctx):
        t = 0
        for delay in phases:
            ctx.set(dut.cycles, delay)
            for k in range(100):
                value = rng.getrandbits(32)
                ctx.set(dut.i, value)
                history.append(value)
                if k >= delay:
                    assert ctx.get(dut.o) == history[t - delay], (t, delay)
                await ctx.tick()
                t += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_refuses_a_delay_below_two():
    with pytest.raises(ValueError, match="max_cycles >= 2"):
        DelayLine(8, 1)
