"""cocotb tests for ``sim/tb.py`` and ``sim/runners.py`` on a tiny counter design."""

import cocotb
from cocotb.triggers import ReadOnly

from sim.tb import TB


@cocotb.test()
async def tb_clock_reset_and_free_run(dut):
    """Reset clears the counter; ``cycles(n)`` advances exactly ``n`` clock edges."""
    tb = TB(dut)
    dut.en.value = 1
    await tb.start(reset_cycles=3)
    await ReadOnly()
    # start() returns right after the first edge that samples reset low: one count.
    assert dut.count.value.to_unsigned() == 1
    await tb.edge()
    await ReadOnly()
    first = dut.count.value.to_unsigned()
    await tb.cycles(25)
    await ReadOnly()
    assert dut.count.value.to_unsigned() == first + 25
    await tb.edge()
    dut.en.value = 0
    await tb.reset(2)
    await ReadOnly()
    assert dut.count.value.to_unsigned() == 0


@cocotb.test()
async def deliberately_failing(dut):
    """Run only by the runner's failure-path test (selected with ``testcase=``)."""
    tb = TB(dut)
    await tb.start()
    assert dut.count.value.to_unsigned() == 12345, "deliberate failure"
