"""Copies of a register, so that a select read by many bits is many short routes.

A flip-flop that selects a 256-bit mux (the accumulator's forwarding) reaches all 256
LUTs through one net spread over the lanes: on the ECP5 8x8 that route was most of the
slowest path. ``copies`` gives `n` registers that each take the same value at every
edge, one per group of readers. Yosys merges identical flip-flops (opt_merge), so on an
ECP5 each copy is a ``TRELLIS_FF`` instance marked ``keep``; elsewhere (simulation,
Verilator, iCE40) they are plain registers, which a synthesis tool may merge.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Signal, Value

__all__ = ["copies"]


def copies(m, platform, value, n: int, name: str) -> list[Signal]:
    """`n` one-bit registers, each `value` of the cycle before (no reset)."""
    value = Value.cast(value)
    if len(value) != 1:
        raise ValueError(f"copies of {name}: a one-bit value, not {len(value)} bits")
    regs = [Signal(name=f"{name}_{k}") for k in range(n)]
    if getattr(platform, "family", None) == "ecp5":
        d = Signal(name=f"{name}_d")
        m.d.comb += d.eq(value)
        for k, q in enumerate(regs):
            m.submodules[f"{name}_ff{k}"] = Instance(
                "TRELLIS_FF", p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK",
                p_LSRMUX="LSR", p_REGSET="RESET", p_SRMODE="LSR_OVER_CE",
                i_CLK=ClockSignal(), i_DI=d, i_LSR=Const(0), o_Q=q, a_keep=1)
    else:
        for q in regs:
            m.d.sync += q.eq(value)
    return regs
