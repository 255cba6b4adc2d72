"""Copies of a register, so that a select read by many bits is many short routes.

A flip-flop that selects a 256-bit mux (the accumulator's forwarding) reaches all 256
LUTs through one net spread over the lanes: on the ECP5 8x8 that route was most of the
slowest path. ``copies`` gives `n` registers that each take the same value at every
edge, one per group of readers.

Yosys merges identical flip-flops (``opt_merge``) unless they are marked ``keep``, and
amaranth puts attributes on wires, not on the flip-flop cells. So every copy's name
starts with :data:`KEEP_PREFIX`, and the board build (``boards.build``) tells yosys,
right after reading the design, to mark the cells driving such wires ``keep``
(:data:`KEEP_SCRIPT`). Instantiating ``TRELLIS_FF`` cells instead breaks yosys 0.70's
abc9 (an assertion in its reintegration of the mapped netlist).
"""

from __future__ import annotations

from amaranth.hdl import Signal, Value

__all__ = ["copies", "KEEP_PREFIX", "KEEP_SCRIPT"]

KEEP_PREFIX = "keep_copy__"
# yosys: the cells driving the copies' wires (their flip-flops) are not to be merged
KEEP_SCRIPT = f"setattr -set keep 1 w:{KEEP_PREFIX}* %ci1 c:* %i"


def copies(m, platform, value, n: int, name: str, *, reset_less: bool = False
           ) -> list[Signal]:
    """`n` one-bit registers, each `value` of the cycle before; `reset_less` for copies
    of data, or of a write that must land even when accepted in a reset cycle."""
    value = Value.cast(value)
    if len(value) != 1:
        raise ValueError(f"copies of {name}: a one-bit value, not {len(value)} bits")
    regs = [Signal(name=f"{KEEP_PREFIX}{name}_{k}", reset_less=reset_less)
            for k in range(n)]
    for q in regs:
        m.d.sync += q.eq(value)
    return regs
