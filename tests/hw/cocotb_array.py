"""cocotb test of the generated ``systolic_array`` Verilog against the NumPy contract model.

Run through ``tests/hw/test_array.py::test_array_cocotb`` (which builds the design
with ``sim/runners.py``); the shape and stimulus come from ``ARRAY_*`` variables.
"""

import os
import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from hw.array import ArrayTiming, weight_beat_layout
from sim.tb import TB

from array_model import expected_sums, tile_stream


def _pack(values, width):
    """Little-endian concatenation of two's-complement ``width``-bit fields."""
    mask = (1 << width) - 1
    return sum((int(v) & mask) << (i * width) for i, v in enumerate(values))


def _unpack_signed(raw, width, count):
    mask, half = (1 << width) - 1, 1 << (width - 1)
    return [(((raw >> (i * width)) & mask) ^ half) - half for i in range(count)]


class ArrayTB(TB):
    """Drives ``act``/``swap``/``load`` from a schedule; a monitor records every ``sums`` beat.

    Cycle 0 is the cycle that starts at the edge :meth:`TB.start` returns on; both
    the driver and the monitor count edges from there, so recorded cycles line up
    with the model's.
    """

    def __init__(self, dut, rows, cols, load_rows=None):
        super().__init__(dut)
        self.rows, self.cols = rows, cols
        self.timing = ArrayTiming(rows, cols, load_rows)
        self.act_width = len(dut.act__payload) // rows
        self.acc_width = len(dut.sums__payload) // cols
        self.group_bits = weight_beat_layout(rows, cols, 8, load_rows)["weights"].offset
        self.weight_width = ((len(dut.load__payload) - self.group_bits)
                             // (self.timing.load_rows * cols))
        self.got = {}

    def idle(self):
        self.dut.act__valid.value = 0
        self.dut.swap.value = 0
        self.dut.load__valid.value = 0

    async def monitor(self):
        """Record ``sums`` by cycle; call right after :meth:`TB.start` (at edge 0)."""
        # Sampling at the falling edge costs one wake-up per cycle and is
        # race-free: no input changes mid-cycle. The cycle number comes from
        # simulation time, so idle stretches are skipped without counting edges.
        t0 = get_sim_time(unit="ns")
        valid, payload = self.dut.sums__valid, self.dut.sums__payload
        while True:
            await FallingEdge(self.clk)
            if not valid.value:
                await RisingEdge(valid)
                await FallingEdge(self.clk)
            cycle = int((get_sim_time(unit="ns") - t0) // self.period_ns)
            self.got[cycle] = _unpack_signed(payload.value.to_unsigned(), self.acc_width,
                                             self.cols)

    async def play(self, schedule):
        """Apply one beat per cycle, starting in cycle 0 (call right after :meth:`start`)."""
        dut = self.dut
        # Each signal write is a GPI call; writing only changes keeps the
        # driver's cost per cycle near one payload write.
        last = {"act": 0, "swap": 0, "load": 0}

        def put(name, handle, value):
            if last[name] != value:
                handle.value = value
                last[name] = value

        for cycle in range(schedule.length):
            beat = schedule.beats.get(cycle)
            if beat is None:
                put("act", dut.act__valid, 0)
                put("swap", dut.swap, 0)
                put("load", dut.load__valid, 0)
            else:
                put("act", dut.act__valid, int(beat.act is not None))
                if beat.act is not None:
                    dut.act__payload.value = _pack(beat.act, self.act_width)
                put("swap", dut.swap, int(beat.swap))
                put("load", dut.load__valid, int(beat.load is not None))
                if beat.load is not None:
                    group, rows = beat.load
                    flat = [w for row in rows for w in row]    # weights[i][c] at i*C + c
                    dut.load__payload.value = \
                        group | (_pack(flat, self.weight_width) << self.group_bits)
            await RisingEdge(self.clk)
        self.idle()


def _shape():
    rows, cols = int(os.environ["ARRAY_ROWS"]), int(os.environ["ARRAY_COLS"])
    load_rows = os.environ.get("ARRAY_LOAD_ROWS")
    return rows, cols, (int(load_rows) if load_rows else None)


async def _run_and_check(dut, sched):
    """Play ``sched``, record every ``sums`` beat, and require exactly the model's
    outputs at exactly the model's cycles; return the recorded ``{cycle: sums}``."""
    want = expected_sums(sched)
    tb = ArrayTB(dut, sched.rows, sched.cols, sched.load_rows)
    assert (tb.act_width, tb.weight_width, tb.acc_width) == (8, 8, 32)
    tb.idle()
    await tb.start()
    monitor = cocotb.start_soon(tb.monitor())
    wall, sim_ns = time.perf_counter(), get_sim_time(unit="ns")
    await tb.play(sched)
    await tb.cycles(tb.timing.latency + 2)
    await RisingEdge(tb.clk)
    await ReadOnly()
    monitor.cancel()
    cycles = (get_sim_time(unit="ns") - sim_ns) / tb.period_ns
    tb.log.info("%d cycles in %.2f s: %.0f cycles/s", cycles, time.perf_counter() - wall,
                cycles / (time.perf_counter() - wall))

    first_in = min(c for c, b in sched.beats.items() if b.act is not None)
    assert min(tb.got) == first_in + tb.timing.latency
    missing = sorted(set(want) - set(tb.got))
    extra = sorted(set(tb.got) - set(want))
    assert not missing and not extra, f"missing outputs at {missing[:5]}, extra at {extra[:5]}"
    for cycle in sorted(want):
        assert tb.got[cycle] == want[cycle], f"cycle {cycle}: {tb.got[cycle]} != {want[cycle]}"
    return tb.got


@cocotb.test()
async def long_tiles_with_gaps(dut):
    """Back-to-back double-buffered tiles with idle gaps and edge values, checked exactly."""
    rows, cols, load_rows = _shape()
    n_tiles = int(os.environ.get("ARRAY_TILES", "6"))
    pixels = int(os.environ.get("ARRAY_PIXELS", "24"))
    rng = np.random.default_rng(int(os.environ.get("ARRAY_SEED", "1")))

    weights = [rng.integers(-128, 128, size=(rows, cols)) for _ in range(n_tiles)]
    acts = [rng.integers(-128, 128, size=(pixels, rows)) for _ in range(n_tiles)]
    weights[0][:] = -128
    acts[0][:2] = -128                      # largest product, largest column sum
    weights[1][:] = 127
    acts[1][:2] = [[127] * rows, [-128] * rows]
    sched = tile_stream(rows, cols, weights, acts, load_rows=load_rows, rng=rng,
                        gap_prob=float(os.environ.get("ARRAY_GAP_PROB", "0.1")))
    await _run_and_check(dut, sched)


@cocotb.test()
async def one_pixel_tiles_every_cycle(dut):
    """The linear-layer case: runs of one-pixel tiles, a new tile every cycle (every
    ``load_cycles`` with a narrow port), around a longer tile; no idle input."""
    rows, cols, load_rows = _shape()
    rng = np.random.default_rng(int(os.environ.get("ARRAY_SEED", "1")) + 1)
    lengths = [1] * 24 + [10] + [1] * 24
    weights = [rng.integers(-128, 128, size=(rows, cols)) for _ in lengths]
    acts = [rng.integers(-128, 128, size=(p, rows)) for p in lengths]
    weights[0][:] = -128
    acts[0][:] = -128
    weights[1][:] = 127
    acts[1][:] = -128
    sched = tile_stream(rows, cols, weights, acts, load_rows=load_rows)
    timing = ArrayTiming(rows, cols, load_rows)
    swaps = sorted(c for c, b in sched.beats.items() if b.swap)
    assert swaps == timing.swap_cycles(lengths)
    got = await _run_and_check(dut, sched)
    if timing.load_cycles == 1:
        assert swaps[:25] == list(range(1, 26))
        assert sorted(got) == list(range(1 + timing.latency, 1 + sum(lengths) + timing.latency))
