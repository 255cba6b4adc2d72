"""A delay line in a block RAM: ``o`` is ``i`` from ``cycles`` cycles ago.

On an iCE40 every flip-flop takes a logic cell of its own unless a LUT feeds it, so a
chain of pipeline registers that only carries a tag along costs one cell per bit and
stage. A RAM written every cycle at a running pointer and read ``cycles - 1`` entries
behind it gives the same values from one SB_RAM40_4K per 16 bits (``AcceleratorConfig.
ram_delays``). The contents are not reset: a consumer must qualify ``o`` with a valid
bit it keeps in flip-flops.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["DelayLine", "ram_depth"]


def ram_depth(max_cycles: int) -> int:
    """Words of a DelayLine's RAM: at least 256 (a RAM that small is one block either
    way, and yosys maps a shallow one to flip-flops)."""
    return 1 << max(8, ceil_log2(max_cycles))


class DelayLine(wiring.Component):
    """``o`` = ``i`` delayed by ``cycles`` (2..``max_cycles``) clock cycles.

    Parameters
    ----------
    width : int
        Bits delayed.
    max_cycles : int
        The longest delay. With ``variable=False`` the delay is always this.
    variable : bool
        Take the delay from the ``cycles`` port; it must hold still while values that
        matter are in flight.
    """

    def __init__(self, width: int, max_cycles: int, *, variable: bool = False):
        if not isinstance(max_cycles, int) or max_cycles < 2:
            raise ValueError(f"DelayLine needs max_cycles >= 2 (a RAM read takes one), "
                             f"not {max_cycles!r}")
        self.width = width
        self.max_cycles = max_cycles
        self.variable = variable
        self.depth = ram_depth(max_cycles)
        ports = {"i": In(width), "o": Out(width)}
        if variable:
            ports["cycles"] = In(range(2, max_cycles + 1))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=unsigned(self.width), depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()
        ptr = Signal(ceil_log2(self.depth))
        cycles = self.cycles if self.variable else self.max_cycles
        m.d.sync += ptr.eq(ptr + 1)
        # written at ptr in cycle t; read issued in cycle t for entry t + 1 - cycles,
        # whose data is on the port in cycle t + 1
        m.d.comb += [wr.addr.eq(ptr), wr.data.eq(self.i), wr.en.eq(1),
                     rd.addr.eq(ptr + 1 - cycles), self.o.eq(rd.data)]
        return m
