"""hw.fanout.copies: each copy is the value of the cycle before; yosys keeps them apart
with boards.build's script line (it would merge identical registers into one)."""

import re

import pytest
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


def test_yosys_keeps_every_copy(tmp_path):
    """With boards.build's script line, yosys keeps the three copies as three flip-flops
    (without it, opt_merge makes them one)."""
    import subprocess
    from amaranth.back import rtlil
    from hw.fanout import KEEP_SCRIPT
    top = _Top(None)
    (tmp_path / "top.il").write_text(rtlil.convert(top, ports=[top.i, top.o]))
    from boards.toolchain import environment
    yosys = environment("ecp5")["YOSYS"]

    def flip_flops(script):
        out = subprocess.run([yosys, "-p", f"read_rtlil top.il; {script} synth_ecp5 -top top; stat"],
                             cwd=tmp_path, capture_output=True, text=True, check=True).stdout
        return int(re.findall(r"(\d+) +TRELLIS_FF", out)[-1])

    assert flip_flops(KEEP_SCRIPT + ";") == 3
    assert flip_flops("") == 1
    with pytest.raises(ValueError, match="one-bit"):
        copies(None, None, Signal(2), 2, "wide")
