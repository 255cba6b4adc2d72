"""Base class for cocotb testbenches of Amaranth designs (``clk``/``rst`` ports).

Subclasses add drivers and monitors for their DUT's interfaces; the base owns the
clock, the reset and the cycle bookkeeping, so every testbench starts the same way::

    tb = ArrayTB(dut)
    await tb.start()                  # clock running, reset done, at a rising edge
"""

import logging

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer

__all__ = ["TB"]


class TB:
    """Clock and synchronous reset of ``dut``; nothing runs until :meth:`start`.

    ``period_ns`` is the clock period. Amaranth designs reset synchronously and
    active high, which is what :meth:`reset` drives. ``clock_running=True`` is for a
    design whose wrapper already toggles ``clock`` every ``period_ns / 2``.
    """

    def __init__(self, dut, *, clock="clk", reset="rst", period_ns=10, clock_running=False):
        if not isinstance(period_ns, int) or period_ns <= 0:
            raise ValueError(f"clock period must be a positive whole number of ns, "
                             f"not {period_ns!r}")
        self.dut = dut
        self.clk = getattr(dut, clock)
        self.rst = getattr(dut, reset)
        self.period_ns = period_ns
        self.log = logging.getLogger(f"cocotb.tb.{type(self).__name__}")
        # A design with its own clock generator (a Verilog `always #` wrapper) runs
        # without a GPI callback per clock edge: much faster on Verilator.
        self._clock = "internal" if clock_running else None

    async def start(self, reset_cycles=2):
        """Start the clock and reset for ``reset_cycles`` edges.

        Returns right after the first rising edge that samples reset low, so the
        design has run one cycle; inputs set now are sampled at the next edge.
        """
        if self._clock is None:
            # impl="gpi" toggles the clock inside the simulator, without waking
            # Python every half period.
            self._clock = Clock(self.clk, self.period_ns, unit="ns", impl="gpi")
            self._clock.start(start_high=False)
        await self.reset(reset_cycles)

    async def reset(self, cycles=2):
        """Hold reset high for ``cycles`` rising edges, release it, return after the next edge."""
        self.rst.value = 1
        await ClockCycles(self.clk, cycles)
        self.rst.value = 0
        await RisingEdge(self.clk)

    async def cycles(self, n):
        """Let the design run ``n`` clock cycles without waking Python on every edge.

        Called right after an edge, this returns in the time step of the ``n``-th
        edge after it; await :meth:`settled` before sampling outputs.
        """
        if n > 0:
            await Timer(n * self.period_ns, unit="ns")

    async def edge(self):
        """Wait for the next rising edge."""
        await RisingEdge(self.clk)

    async def settled(self):
        """Wait until this time step's values are final (safe to sample outputs)."""
        await ReadOnly()
