"""PoolWriter in the Amaranth simulator: the activation memory it leaves behind must be
the one `sim.machine.conv`'s pool-on-write and `hw.layout` give, word for word."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.sim import Simulator

from hw import layout
from hw.poolwrite import POOL_WRITE_LATENCY, PoolWriter, reciprocal
from sim import runners

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


class Bench(Elaboratable):
    """PoolWriter wired to an R-byte-wide memory with a non-transparent read port."""

    def __init__(self, rows, depth, init, pool=True, host_write=False):
        self.dut = PoolWriter(rows, addr_width=max(1, (depth - 1).bit_length()), pool=pool,
                              host_write=host_write)
        self.mem = memory.MemoryData(shape=data.ArrayLayout(unsigned(8), rows), depth=depth,
                                     init=[list(map(int, w)) for w in init])

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.submodules.mem = mem = memory.Memory(data=self.mem)
        wp = mem.write_port(granularity=1)
        rp = mem.read_port(transparent_for=())
        wiring.connect(m, self.dut.wr, wp)
        wiring.connect(m, self.dut.rd, rp)
        return m


def beats_for(y_hwc, rows, lanes, *, raw=False):
    """The writer's input for a (H, W, C) output: per tile of `lanes` channels (the
    post-processor's columns), raster order, one beat per word the tile touches, with
    only the tile's banks enabled (unused lanes of the last group enabled and 0)."""
    h, w, c = y_hwc.shape
    groups = layout.ceil_div(c, rows)
    padded = np.zeros((h, w, groups * rows), dtype=np.int64)
    padded[:, :, :c] = y_hwc
    beats = []
    for c0 in range(0, c, lanes):
        chans = range(c0, min(c0 + lanes, c))
        last = c0 + lanes >= c
        for oh in range(h):
            for ow in range(w):
                for g in sorted({ch // rows for ch in chans}):
                    en = 0
                    for b in range(rows):
                        ch = g * rows + b
                        if ch in chans or (last and ch >= c):
                            en |= 1 << b
                    vals = padded[oh, ow, g * rows:(g + 1) * rows]
                    for byte in (range(4) if raw else [0]):
                        word = [(int(v) >> (8 * byte)) & 0xFF for v in vals]
                        beats.append({"oh": oh, "ow": ow, "group": g, "byte": byte,
                                      "data": word, "en": en})
    return beats


def run_writer(rows, depth, init, cfg, beats, rng, gap, pool=True):
    bench = Bench(rows, depth, init, pool)
    dut = bench.dut
    writes = []

    async def testbench(ctx):
        ctx.set(dut.cfg, cfg)
        await ctx.tick()                     # cfg one cycle ahead of the first beat
        queue = list(beats)
        cycle = 0
        while queue or cycle < 1:
            send = rng.random() >= gap
            ctx.set(dut.pixels.valid, send)
            if send:
                ctx.set(dut.pixels.payload, queue.pop(0))
            if ctx.get(dut.wr.en):
                writes.append(cycle)
            await ctx.tick()
            cycle += 1
        ctx.set(dut.pixels.valid, 0)
        for _ in range(POOL_WRITE_LATENCY + 1):
            if ctx.get(dut.wr.en):
                writes.append(cycle)
            await ctx.tick()
            cycle += 1
        final[:] = memory_words(ctx, bench, depth)

    final = []
    simulate(bench, testbench)
    return np.array(final, dtype=np.uint8), writes


def simulate(bench, testbench):
    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def memory_words(ctx, bench, depth):
    return [[int(v) for v in ctx.get(bench.mem[i])] for i in range(depth)]


def pool_case(rng, rows, lanes, conv_hw, channels, k, *, signed, gap, depth=None, pool=True):
    conv_h, conv_w = conv_hw
    lo, hi = (-128, 127) if signed else (0, 255)
    y = rng.integers(lo, hi + 1, size=(conv_h, conv_w, channels))
    y[rng.random(y.shape) < 0.1] = lo              # ties with the memory's old bytes
    k_model = max(k, 1)                            # as sim/machine.py reads pool_k
    out_h, out_w = conv_h // k_model, conv_w // k_model
    groups = layout.ceil_div(channels, rows)
    words = out_h * out_w * groups
    depth = depth or words + 24
    dst = int(rng.integers(0, depth - words + 1))
    init = rng.integers(0, 256, size=(depth, rows)).astype(np.uint8)
    # The definition: sim/machine.py's pool on write, then hw/layout.py's banks.
    pooled = y[:out_h * k_model, :out_w * k_model].reshape(
        out_h, k_model, out_w, k_model, channels).max(axis=(1, 3))
    want = init.copy()
    want[dst:dst + words] = layout.to_banks(pooled, rows)
    cfg = {"dst": dst, "out_h": out_h, "out_w": out_w, "groups": groups, "pool_k": k,
           "signed": int(signed), "raw": 0}
    got, writes = run_writer(rows, depth, init, cfg, beats_for(y, rows, lanes), rng, gap,
                             pool)
    return got, want, writes, dst, words


@pytest.mark.parametrize("rows, lanes, conv_hw, channels, k, signed, gap", [
    (4, 4, (7, 9), 4, 2, True, 0.0),       # odd sizes: last row and column dropped
    (4, 4, (7, 8), 6, 3, False, 0.3),      # uint8, channels not a multiple of R
    (3, 3, (9, 7), 3, 3, True, 0.5),
    (4, 4, (5, 5), 5, 1, True, 0.2),       # no pool: every pixel writes
    (4, 4, (6, 6), 4, 0, False, 0.0),      # pool_k 0 means none too
    (8, 4, (5, 7), 8, 2, True, 0.0),       # C < R: two tiles share a word (byte enables)
    (2, 4, (4, 5), 7, 2, True, 0.1),       # C > R: one tile spans several groups
    (4, 4, (14, 15), 4, 7, True, 0.0),     # the largest window
    (1, 4, (6, 6), 4, 2, True, 0.0),       # 4 words a pixel: a word again 4 beats on
    (1, 3, (6, 7), 3, 3, False, 0.2),      # ... and 3 to 5 cycles on, gaps between
])
def test_pool_on_write_matches_machine(rows, lanes, conv_hw, channels, k, signed, gap):
    rng = np.random.default_rng(abs(hash((rows, lanes, conv_hw, channels, k))) % 2**32)
    got, want, _, dst, words = pool_case(rng, rows, lanes, conv_hw, channels, k,
                                         signed=signed, gap=gap)
    assert np.array_equal(got[dst:dst + words], want[dst:dst + words])
    assert np.array_equal(got, want), "a word outside the output tensor was written"


def test_no_pool_writes_once_per_word_and_on_time():
    """k = 1: one write per beat, POOL_WRITE_LATENCY cycles after it."""
    rng = np.random.default_rng(3)
    got, want, writes, _, _ = pool_case(rng, 4, 4, (3, 5), 4, 1, signed=True, gap=0.0)
    assert np.array_equal(got, want)
    assert writes == [POOL_WRITE_LATENCY + i for i in range(15)]


@pytest.mark.parametrize("rows, lanes, conv_hw, channels, gap", [
    (1, 1, (5, 7), 3, 0.0), (1, 1, (4, 4), 2, 0.4), (4, 4, (3, 5), 6, 0.2),
    (4, 2, (3, 4), 7, 0.3)])                # C < R: two tiles share a word
def test_without_pooling_every_beat_writes_its_word_on_time(rows, lanes, conv_hw, channels,
                                                            gap):
    """pool=False (AcceleratorConfig.standalone_pool): no divides, reads, merges or
    address products; the same words, each written two cycles after its beat."""
    rng = np.random.default_rng(rows * 100 + channels)
    got, want, writes, _, _ = pool_case(rng, rows, lanes, conv_hw, channels, 1, signed=True,
                                        gap=gap, pool=False)
    assert np.array_equal(got, want)
    if gap == 0.0:
        beats = conv_hw[0] * conv_hw[1] * layout.ceil_div(channels, lanes)
        assert writes == [2 + i for i in range(beats)]


def test_dropped_pixels_never_write():
    """A 3x3 conv output pooled by 2 keeps only the top-left 2x2: 4 of 9 beats write."""
    rng = np.random.default_rng(4)
    got, want, writes, _, _ = pool_case(rng, 4, 4, (3, 3), 4, 2, signed=True, gap=0.0)
    assert np.array_equal(got, want)
    assert len(writes) == 4


@pytest.mark.parametrize("pool", [True, False])
def test_raw_int32_words(pool):
    rows, channels, h, w = 4, 6, 2, 3
    rng = np.random.default_rng(6)
    y = rng.integers(-(1 << 31), 1 << 31, size=(h, w, channels))
    y[0, 0, 0], y[1, 2, 5] = -(1 << 31), (1 << 31) - 1
    groups = layout.ceil_div(channels, rows)
    words = h * w * groups * 4
    depth, dst = words + 10, 7
    init = rng.integers(0, 256, size=(depth, rows)).astype(np.uint8)
    want = init.copy()
    want[dst:dst + words] = layout.raw_to_banks(y, rows)
    cfg = {"dst": dst, "out_h": h, "out_w": w, "groups": groups, "pool_k": 1, "signed": 1,
           "raw": 1}
    got, _ = run_writer(rows, depth, init, cfg, beats_for(y, rows, 4, raw=True), rng, 0.2,
                        pool)
    assert np.array_equal(got, want)
    assert np.array_equal(layout.raw_from_banks(got[dst:dst + words], y.shape, rows), y)


@pytest.mark.parametrize("pool", [True, False])
def test_host_writes_land_through_the_writers_port(pool):
    """host_write: the host's bytes (one a cycle, or with gaps) go through the writer's
    write stage into the memory, each at the edge ending the cycle two after it is valid
    (one without a pool), and a pool descriptor after them writes its words over that
    memory as without them."""
    rows, depth = 4, 64
    rng = np.random.default_rng(8 + pool)
    bench = Bench(rows, depth, np.zeros((depth, rows), dtype=np.uint8), pool,
                  host_write=True)
    dut = bench.dut
    want = np.zeros((depth, rows), dtype=np.uint8)
    late = []
    y = rng.integers(-128, 128, size=(4, 6, 4))
    cfg = {"dst": 40, "out_h": 2, "out_w": 3, "groups": 1, "pool_k": 2, "signed": 1,
           "raw": 0}
    want_after = None

    async def testbench(ctx):
        nonlocal want_after
        ctx.set(dut.cfg, cfg)
        sent = []
        for cycle in range(120):
            send = rng.random() < 0.7
            ctx.set(dut.host.valid, send)
            if send:
                addr, lane, byte = (int(rng.integers(0, depth)), int(rng.integers(0, rows)),
                                    int(rng.integers(0, 256)))
                ctx.set(dut.host.addr, addr)
                ctx.set(dut.host.en, 1 << lane)
                ctx.set(dut.host.data, byte)
                want[addr, lane] = byte
                sent.append((cycle, addr, lane, byte))
            await ctx.tick()
            # the latest byte of each place sent two cycles ago or earlier (one without
            # a pool) is there, after this tick
            landed = {(addr, lane): (when, byte) for when, addr, lane, byte in sent
                      if when <= cycle - (2 if pool else 1)}
            for (addr, lane), (when, byte) in landed.items():
                if ctx.get(bench.mem[addr])[lane] != byte:
                    late.append((when, cycle, addr, lane))
        ctx.set(dut.host.valid, 0)
        await ctx.tick()
        want_after = want.copy()
        for beat in beats_for(y, rows, 4):
            ctx.set(dut.pixels.valid, 1)
            ctx.set(dut.pixels.payload, beat)
            await ctx.tick()
        ctx.set(dut.pixels.valid, 0)
        for _ in range(POOL_WRITE_LATENCY + 1):
            await ctx.tick()
        final[:] = memory_words(ctx, bench, depth)

    final = []
    simulate(bench, testbench)
    assert late == []
    expect = want_after.copy()
    if pool:                   # 2x2 windows: a 2x3 output
        expect[40:46] = layout.to_banks(y.reshape(2, 2, 3, 2, 4).max(axis=(1, 3)), rows)
    else:                      # (no pool: every pixel's word, the window ignored)
        expect[40:64] = layout.to_banks(y, rows)
    assert np.array_equal(np.array(final, dtype=np.uint8), expect)


def test_reciprocal_is_exact_division_and_remainder_test():
    # The pool's fixed shift (that of 7) for every window, and the feeder's ceil(in_c/R).
    for width, divisors, fixed in ((10, range(1, 8), 13), (13, range(1, 65), None)):
        for divisor in divisors:
            mult, shift = reciprocal(divisor, width, fixed)
            xs = range(1 << width)
            assert [(x * mult) >> shift for x in xs] == [x // divisor for x in xs]
            assert [(x * mult) % (1 << shift) < mult for x in xs] == \
                [x % divisor == 0 for x in xs]


@pytest.mark.parametrize("args, kwargs, message", [
    ((0,), {}, "PoolWriter rows must be an integer from 1 to 64, not 0; "
               "use the array's row count"),
    ((4,), {"addr_width": 21}, "PoolWriter addr_width must be an integer from 1 to 20, "
                               "not 21; the descriptor's dst field has 20 bits"),
])
def test_constructor_errors(args, kwargs, message):
    with pytest.raises(ValueError) as info:
        PoolWriter(*args, **kwargs)
    assert str(info.value) == message


def test_converts_to_verilog():
    text = runners.verilog_source(PoolWriter(4, addr_width=12), name="poolwrite")
    for port in ("cfg", "pixels__valid", "pixels__payload", "rd__addr", "rd__en",
                 "rd__data", "wr__addr", "wr__data", "wr__en"):
        assert f" {port}" in text
