"""Accumulator: totals over K-steps of pixel tiles == NumPy sums, including one-pixel tiles
stepping every cycle (the read-after-write case) and idle gaps."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.accumulator import ACC_LATENCY, RUNNING_LATENCY, Accumulator
from sim.runners import verilog_source


def schedule(rng, tiles, cols, gap):
    """Beats of several pixel tiles (n pixels × k steps each, pixel-major within a step,
    as the sequencer issues them) and the expected totals in output order."""
    beats, expected = [], []
    for n, k in tiles:
        sums = rng.integers(-(1 << 28), 1 << 28, (k, n, cols))
        for step in range(k):
            for p in range(n):
                beats.append((sums[step, p].tolist(), p, step == 0, step == k - 1))
                if rng.random() < gap:
                    beats.append(None)
        expected += sums.sum(axis=0).tolist()
    return beats, expected


def _run(dut, beats, *, max_mode=False):
    """Drive `beats` one a cycle (None: an idle cycle; otherwise (sums, addr, first,
    last[, skip])), then idle cycles; the totals the accumulator sends and the cycles
    they come in (counted from the first beat)."""
    got, times = [], []
    seq = beats + [None] * (ACC_LATENCY + 2)
    ahead = getattr(dut, "read_ahead", 0)

    def addr_ahead(ctx, cycle):
        """read_ahead: the next cycle's address (before an idle cycle, another one: the
        accumulator must not use it)."""
        nxt = seq[cycle + 1] if cycle + 1 < len(seq) else None
        ctx.set(dut.addr_ahead, (cycle * 5 + 3) % dut.depth if nxt is None else nxt[1])

    async def bench(ctx):
        if max_mode or ahead:
            ctx.set(dut.max, max_mode)
            if ahead:
                addr_ahead(ctx, -1)
            await ctx.tick()
        for cycle, beat in enumerate(seq):
            if ahead:
                addr_ahead(ctx, cycle)
            if beat is None:
                ctx.set(dut.beat.valid, 0)
            else:
                sums, addr, first, last, *skip = beat
                ctx.set(dut.beat.valid, 1)
                ctx.set(dut.beat.payload, {"sums": sums, "addr": addr, "first": first,
                                           "last": last, "skip": skip[0] if skip else 0})
            if ctx.get(dut.out.valid):
                got.append([int(v) for v in ctx.get(dut.out.payload)])
                times.append(cycle)
            nexts.append(ctx.get(dut.out_next))
            await ctx.tick()

    nexts = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # out_next foretells out.valid by a cycle
    assert [c + 1 for c, v in enumerate(nexts) if v] == times
    return got, times


@pytest.mark.parametrize("cols, tiles, gap", [
    (4, [(5, 3), (7, 1), (2, 4), (4, 3), (3, 3)], 0.0),
    (3, [(1, 9), (1, 1), (1, 4)], 0.0),      # linear layers: one pixel, a step per cycle
    (8, [(6, 5), (1, 6), (3, 2)], 0.3),
])
@pytest.mark.parametrize("depth, read_ahead", [(16, 0), (16, 2), (1, 0)])
def test_totals(cols, tiles, gap, depth, read_ahead):
    """(read_ahead: the read address a cycle early, into registers beside the blocks.)"""
    rng = np.random.default_rng(cols)
    if depth == 1:        # one-pixel tiles only (the register accumulator)
        tiles = [(1, k) for _, k in tiles] + [(1, 1), (1, 2)]
    beats, expected = schedule(rng, tiles, cols, gap)
    dut = Accumulator(cols, depth=depth, read_ahead=read_ahead)
    got, times = _run(dut, beats)
    assert got == expected
    last_beats = [i for i, b in enumerate(beats) if b is not None and b[3]]
    assert dut.latency == (ACC_LATENCY if depth > 1 else RUNNING_LATENCY)
    assert times == [i + dut.latency for i in last_beats]


def test_wraps_like_the_array():
    dut = Accumulator(1, depth=2)
    beats = [([(1 << 31) - 1], 0, True, False), ([1], 0, False, True)]
    out = []

    async def bench(ctx):
        for beat in beats + [None] * (ACC_LATENCY + 1):
            ctx.set(dut.beat.valid, beat is not None)
            if beat:
                ctx.set(dut.beat.payload, dict(zip(("sums", "addr", "first", "last"), beat)))
            if ctx.get(dut.out.valid):
                out.append(int(ctx.get(dut.out.payload)[0]))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert out == [-(1 << 31)]


def test_bad_parameters_and_verilog():
    with pytest.raises(ValueError, match="accumulator depth must be a positive integer, not 0"):
        Accumulator(4, 0)
    with pytest.raises(ValueError, match="read_ahead must be 0 or a number of blocks, not -1"):
        Accumulator(4, 8, read_ahead=-1)
    assert "module" in verilog_source(Accumulator(4, 8))


@pytest.mark.parametrize("depth", [4, 1])
def test_max_mode_keeps_the_running_maximum_and_skips_padding(depth):
    """Max pools: first beat starts the window (a skipped first beat starts it at the
    lowest value), later beats keep the maximum, skipped beats leave it."""
    from amaranth.sim import Simulator
    dut = Accumulator(2, depth)
    beats = [  # (sums, addr, first, last, skip)
        ((5, -3), 0, 1, 0, 0), ((2, -1), 0, 0, 0, 0), ((9, -7), 0, 0, 0, 1),
        ((7, -2), 0, 0, 1, 0),
        ((1, 1), 1 % depth, 1, 0, 1), ((-4, -6), 1 % depth, 0, 1, 0),
    ]
    want = [[7, -1], [-4, -6]]
    got = []

    async def bench(ctx):
        ctx.set(dut.max, 1)
        for beat in beats + [None] * (ACC_LATENCY + 1):
            if beat is None:
                ctx.set(dut.beat.valid, 0)
            else:
                sums, addr, first, last, skip = beat
                ctx.set(dut.beat.valid, 1)
                ctx.set(dut.beat.payload, {"sums": list(sums), "addr": addr, "first": first,
                                           "last": last, "skip": skip})
            await ctx.tick()
            if ctx.get(dut.out.valid):
                got.append([ctx.get(dut.out.payload[c]) for c in range(2)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == want


@pytest.mark.parametrize("max_bits", [None, 9])
@pytest.mark.parametrize("cols, tiles, gap", [
    (4, [(5, 3), (1, 6), (2, 4), (3, 5)], 0.0),
    (3, [(1, 9), (2, 7), (4, 3)], 0.4),
])
@pytest.mark.parametrize("depth, read_ahead", [(8, 0), (8, 1), (1, 0)])
def test_max_mode_over_pixel_tiles_with_forwarding(cols, tiles, gap, max_bits, depth,
                                                   read_ahead):
    """Max mode with pixel tiles of 1 to 5 pixels stepping back to back (every distance
    between a pixel's beats that the forwarding covers) and random padding beats: each
    pixel's total is the maximum of its unskipped beats (the lowest value if its first
    beat is skipped and no later one counts). With `max_bits` 9 the values are the
    feeder's 9-bit activations, compared on those bits and the sign."""
    if depth == 1:        # one-pixel tiles only (the register accumulator)
        tiles = [(1, k) for _, k in tiles]
    rng = np.random.default_rng(cols + 10)
    lowest = -(1 << 31)
    beats, expected = [], []
    for n, k in tiles:
        top = 1 << (30 if max_bits is None else max_bits - 1)
        sums = rng.integers(-top, top, (k, n, cols))
        skips = rng.random((k, n)) < 0.3
        for step in range(k):
            for p in range(n):
                beats.append((sums[step, p].tolist(), p, step == 0, step == k - 1,
                              bool(skips[step, p])))
                if rng.random() < gap:
                    beats.append(None)
        for p in range(n):
            best = [lowest] * cols
            for step in range(k):
                if not skips[step, p]:
                    best = [max(b, int(v)) for b, v in zip(best, sums[step, p])]
            expected.append(best)
    got, _ = _run(Accumulator(cols, depth=depth, max_bits=max_bits, read_ahead=read_ahead),
                  beats, max_mode=True)
    assert got == expected
