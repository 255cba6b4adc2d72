"""hw.fanout.copies: each copy is the value of the cycle before; on an ECP5 each is its own
TRELLIS_FF marked keep (yosys would merge plain identical registers into one)."""

import re

import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.sim import Simulator

from hw.fanout import copies


class _ECP5:
    family = "ecp5"


class _Top(Elaboratable):
    def __init__(self, platform_kind):
        self.platform_kind = platform_kind
        self.i = Signal()
        self.o = Signal(3)

    def elaborate(self, platform):
        m = Module()
        regs = copies(m, platform, self.i, 3, "sel")
        for k, q in enumerate(regs):
            m.d.comb += self.o[k].eq(q)
        return m


def test_copies_are_the_value_a_cycle_late():
    top = _Top(None)
    seen = []

    async def bench(ctx):
        for v in [1, 0, 1, 1, 0, 0, 1]:
            ctx.set(top.i, v)
            await ctx.tick()
            seen.append((v, ctx.get(top.o)))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert [o for _, o in seen] == [0b111 if v else 0 for v, _ in seen]


def test_ecp5_copies_are_kept_flip_flops():
    top = _Top("ecp5")
    text = verilog.convert(top, platform=_ECP5(), ports=[top.i, top.o])
    assert len(re.findall(r"\bTRELLIS_FF\b", text)) == 3
    assert text.count("keep") >= 3
    with pytest.raises(ValueError, match="one-bit"):
        copies(None, None, Signal(2), 2, "wide")
