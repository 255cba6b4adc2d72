"""Systolic array and PE: Amaranth-simulator tests against the NumPy contract model,
plus one cocotb test of the generated Verilog on Verilator and Icarus."""

import functools
import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from sim import runners

from hw.array import ArrayTiming, SystolicArray
from hw.pe import ProcessingElement

from array_model import Schedule, ScheduleError, check, expected_sums, tile_stream, wrap


# --- Amaranth-simulator harness -------------------------------------------------------

def run_array(dut, schedule, *, extra_cycles=None):
    """Play ``schedule`` into ``dut`` cycle by cycle; return ``{cycle: sums}`` of valid outputs."""
    if extra_cycles is None:
        extra_cycles = dut.timing.latency + 2
    assert schedule.timing == dut.timing, "schedule built for another array"
    seen = {}
    zero_act = [0] * dut.rows

    async def testbench(ctx):
        for cycle in range(schedule.length + extra_cycles):
            beat = schedule.beats.get(cycle)
            act = beat.act if beat is not None else None
            load = beat.load if beat is not None else None
            ctx.set(dut.act.valid, act is not None)
            ctx.set(dut.act.payload, act if act is not None else zero_act)
            ctx.set(dut.swap, beat is not None and beat.swap)
            ctx.set(dut.load.valid, load is not None)
            if load is not None:
                ctx.set(dut.load.payload.group, load[0])
                ctx.set(dut.load.payload.weights, load[1])
            if ctx.get(dut.sums.valid):
                seen[cycle] = list(ctx.get(dut.sums.payload))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return seen


def random_tiles(rng, rows, cols, n_tiles, pixels, *, weight_bits=8, act_bits=8):
    """``n_tiles`` weight tiles and pixel tiles of signed ``*_bits``-bit integers;
    ``pixels`` is a count for every tile or a list of counts."""
    if isinstance(pixels, int):
        pixels = [pixels] * n_tiles
    w_lo, w_hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1))
    a_lo, a_hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1))
    weights = [rng.integers(w_lo, w_hi, size=(rows, cols)) for _ in range(n_tiles)]
    acts = [rng.integers(a_lo, a_hi, size=(p, rows)) for p in pixels]
    return weights, acts


def products(weights, acts):
    """Per tile, the exact sums of each of its pixels: ``[[acts[k][p] @ weights[k]]]``."""
    return [[[int(v) for v in px @ w] for px in a] for w, a in zip(weights, acts)]


def swap_cycles(sched):
    return sorted(c for c, b in sched.beats.items() if b.swap)


def register_bits(component):
    """Flip-flop bits of ``component`` as Amaranth elaborates it (every module of the
    hierarchy is its own RTLIL module, so summing the ``$dff`` cells counts each once)."""
    ports = [component.act.valid, component.act.payload.as_value(), component.swap,
             component.load.valid, component.load.payload.as_value(),
             component.sums.valid, component.sums.payload.as_value()]
    text = rtlil.convert(component, ports=ports, emit_src=False)
    return sum(int(w) for w in
               re.findall(r"cell \$\w*dff\w* \S+\n\s+parameter \\WIDTH (\d+)", text))


# --- ArrayTiming and constructor errors ------------------------------------------------

def test_timing_formulas_whole_tile_port():
    t = ArrayTiming(3, 5)
    assert t.load_rows == 3
    assert t == ArrayTiming(3, 5, 3)
    assert t.latency == 3 + 5 + 2
    assert t.load_cycles == 1
    assert t.min_swap_interval == 1
    assert t.load_deadline(0, 100) == 99
    assert t.load_window(0, 97, 100) == range(97, 100)
    assert t.first_load_after_swap(100) == 100
    assert [t.row_delay(r) for r in range(3)] == [0, 1, 2]


def test_swap_cycles_recurrence():
    assert ArrayTiming(4, 4).swap_cycles([5, 1, 1, 3, 0, 1]) == [1, 6, 7, 8, 11, 12]
    assert ArrayTiming(4, 4).swap_cycles([2, 2], first_load=10) == [11, 13]
    # 3 beats per tile: the load of tile 2 starts with swap 1 (cycle 10), so tile 2 may
    # follow tile 1's single pixel at once; tile 3's load starts in 13, its swap in 14.
    narrow = ArrayTiming(6, 4, load_rows=2)
    assert narrow.swap_cycles([9, 1, 1, 1]) == [1, 10, 11, 14]
    assert narrow.swap_cycles([1, 1, 1]) == [1, 4, 7]
    assert narrow.swap_cycles([2, 3, 2]) == [1, 4, 7]            # all P_k <= N
    assert narrow.swap_cycles([5, 4, 3, 7]) == [1, 6, 10, 13]    # all P_k >= N


def test_timing_formulas_narrow_port():
    t = ArrayTiming(6, 4, load_rows=2)
    assert t.latency == 12
    assert t.load_cycles == 3
    assert t.min_swap_interval == 3
    assert [t.load_group(r) for r in range(6)] == [0, 0, 1, 1, 2, 2]
    assert t.load_deadline(2, 100) == 101
    assert t.load_window(2, 97, 100) == range(99, 102)
    assert t.first_load_after_swap(100) == 100
    assert [t.row_delay(r) for r in range(6)] == [0, 1, 1, 2, 2, 3]
    # One row per beat: the old port's deadline T + r - 1, without its blackout.
    assert ArrayTiming(8, 2, 1).min_swap_interval == 8
    assert ArrayTiming(8, 2, 1).load_deadline(5, 100) == 104


def test_weight_delay_flops_formula():
    # w * R * C * (R + C - 2) / 2 weight bits + R(R-1)/2 + R(C-1) enables (whole tile).
    assert ArrayTiming(8, 8).weight_delay_flops(8) == 8 * 64 * 14 // 2 + 28 + 56 == 3668
    assert ArrayTiming(16, 16).weight_delay_flops(8) == 30720 + 120 + 240 == 31080
    assert ArrayTiming(16, 16, 8).weight_delay_flops(8) == 8 * (16 * 112 + 1920) + 112 + 240
    assert ArrayTiming(16, 16, 1).weight_delay_flops(8) == 8 * 1920 + 240


@pytest.mark.parametrize("rows, cols, load_rows", [(3, 5, None), (4, 4, 2), (4, 1, 1), (1, 3, 1)])
def test_register_count_matches_docs(rows, cols, load_rows):
    """The elaborated design has exactly the flip-flops docs/array.md "Register cost" lists."""
    a, w, acc = 9, 8, 32
    dut = SystolicArray(rows, cols, act_width=a, weight_width=w, acc_width=acc,
                        load_rows=load_rows)
    # shadow, the multiplier's operands (active weight, activation) and product, its
    # fabric copy, act (the east chain's copy of the activation), psum, swap
    per_pe = w + (w + a + (a + w)) + (a + w) + a + acc + 1
    skew = rows * (rows - 1) // 2 * (a + 1)
    deskew = cols * (cols - 1) // 2 * acc
    valid = rows + cols + 2
    assert register_bits(dut) == (rows * cols * per_pe + skew + deskew + valid
                                  + dut.timing.weight_delay_flops(w))


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=0, cols=4), "array rows must be a positive integer, not 0"),
    (dict(rows=4, cols=-1), "array cols must be a positive integer, not -1"),
    (dict(rows=4.0, cols=4), "array rows must be a positive integer, not 4.0"),
    (dict(rows=4, cols=4, act_width=0), "activation width must be a positive integer, not 0"),
    (dict(rows=4, cols=4, weight_width=True),
     "weight width must be a positive integer, not True"),
    (dict(rows=4, cols=4, acc_width=12),
     "accumulator width 12 cannot hold a 8×8-bit product; use at least 16"),
    (dict(rows=6, cols=4, load_rows=4),
     "load rows must divide the 6 array rows, not 4; use one of 1, 2, 3, 6"),
    (dict(rows=4, cols=4, load_rows=0),
     "load rows must divide the 4 array rows, not 0; use one of 1, 2, 4"),
    (dict(rows=4, cols=4, load_rows=8),
     "load rows must divide the 4 array rows, not 8; use one of 1, 2, 4"),
])
def test_array_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError) as exc:
        SystolicArray(**kwargs)
    assert str(exc.value) == message


def test_pe_rejects_bad_width():
    with pytest.raises(ValueError) as exc:
        ProcessingElement(act_width=9, weight_width=8, acc_width=16)
    assert str(exc.value) == \
        "accumulator width 16 cannot hold a 9×8-bit product; use at least 17"


# --- PE -------------------------------------------------------------------------------

def test_pe_pipeline_and_swap():
    """``east`` is ``west`` one cycle later; ``psum_out(t+4) = psum_in(t+3) + west(t)*active``,
    and the active weight changes exactly with the activation that carries ``swap``."""
    rng = np.random.default_rng(1)
    n = 60
    acts = rng.integers(-128, 128, size=n)
    psums = rng.integers(-2**31, 2**31, size=n)
    loads = {3: -128, 10: 127, 12: 99, 25: 5, 40: -7}   # cycle -> shadow weight written
    swaps = {5, 11, 12, 30, 31}   # back-to-back swaps; the one in 12 must not see 99
    acts[:4] = [-128, 127, -128, 127]
    dut = ProcessingElement()
    trace = []

    async def testbench(ctx):
        for t in range(n):
            ctx.set(dut.west.data, int(acts[t]))
            ctx.set(dut.west.swap, t in swaps)
            ctx.set(dut.psum_in, int(psums[t]))
            ctx.set(dut.load.en, t in loads)
            ctx.set(dut.load.data, loads.get(t, 0))
            trace.append((ctx.get(dut.east.data), ctx.get(dut.east.swap), ctx.get(dut.psum_out)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()

    shadow, active, weight_at = 0, 0, []
    for t in range(n):
        if t in swaps:
            active = shadow         # the swap reads the shadow before this edge's load
        weight_at.append(active)
        if t in loads:
            shadow = loads[t]
    for t in range(1, n):
        assert trace[t][0] == acts[t - 1]
        assert trace[t][1] == (t - 1 in swaps)
    for t in range(n - 4):
        want = wrap([int(psums[t + 3]) + int(acts[t]) * weight_at[t]], 32)[0]
        assert trace[t + 4][2] == want, f"cycle {t}"


# --- array ----------------------------------------------------------------------------

@pytest.mark.parametrize("rows, cols, load_rows", [
    (1, 1, None), (2, 2, None), (3, 5, None), (5, 3, None), (4, 4, None), (8, 8, None),
    (4, 4, 1), (6, 3, 2), (3, 5, 1),
])
def test_array_back_to_back_tiles(rows, cols, load_rows):
    """Several tiles, each loaded during the previous one and swapped in with no bubble:
    the input stream has no gap and every sum arrives exactly ``R + C + 2`` cycles late."""
    rng = np.random.default_rng(rows * 100 + cols)
    timing = ArrayTiming(rows, cols, load_rows)
    pixels = max(rows, cols) + 2
    weights, acts = random_tiles(rng, rows, cols, 4, pixels)
    weights[0][0, :] = -128
    acts[0][0, :] = -128                 # -128 * -128 = 2**14, the largest product
    acts[1][-1, :] = 127
    sched = tile_stream(rows, cols, weights, acts, load_rows=load_rows)

    valid_cycles = sorted(c for c, b in sched.beats.items() if b.act is not None)
    assert valid_cycles == list(range(1, 1 + 4 * pixels))   # swap one cycle after group 0
    assert swap_cycles(sched) == [1 + k * pixels for k in range(4)]

    got = run_array(SystolicArray(rows, cols, load_rows=load_rows), sched)
    assert got == expected_sums(sched)
    assert min(got) == 1 + rows + cols + 2
    assert max(got) == 1 + 4 * pixels - 1 + rows + cols + 2    # docs/array.md cycle model
    want = products(weights, acts)
    for k in range(4):
        assert [got[1 + k * pixels + p + timing.latency] for p in range(pixels)] == want[k]


@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 5), (5, 3), (4, 4), (8, 8)])
def test_array_one_pixel_per_tile_every_cycle(rows, cols):
    """The fully connected case: a new tile for every pixel, swapped every cycle, with
    a whole-tile load in the cycle before each swap; sums come out every cycle."""
    rng = np.random.default_rng(40 + rows * cols)
    n = 3 * (rows + cols) + 4            # several tiles in flight in every PE's delay line
    weights, acts = random_tiles(rng, rows, cols, n, 1)
    weights[0][:] = -128
    acts[0][:] = -128
    weights[1][:] = 127
    acts[1][:] = -128
    sched = tile_stream(rows, cols, weights, acts)
    assert swap_cycles(sched) == list(range(1, n + 1))
    assert sorted(c for c, b in sched.beats.items() if b.load is not None) == list(range(n))

    got = run_array(SystolicArray(rows, cols), sched)
    assert got == expected_sums(sched)
    latency = rows + cols + 2
    assert sorted(got) == list(range(1 + latency, 1 + n + latency))
    assert [got[1 + k + latency] for k in range(n)] == [p[0] for p in products(weights, acts)]
    assert got[1 + latency] == [rows * 2**14] * cols
    assert got[2 + latency] == [rows * -128 * 127] * cols


@pytest.mark.parametrize("rows, cols, load_rows", [(4, 4, None), (3, 5, None), (5, 3, None),
                                                   (6, 3, 2), (4, 2, 1)])
def test_array_mixed_tile_lengths(rows, cols, load_rows):
    """Long (convolution) tiles and runs of one-pixel (linear-layer) tiles in one stream:
    swaps follow :meth:`ArrayTiming.swap_cycles`; with a whole-tile port the stream
    has no gap, with a narrow one one-pixel tiles wait for their load."""
    rng = np.random.default_rng(rows * 7 + cols)
    timing = ArrayTiming(rows, cols, load_rows)
    lengths = [9, 1, 1, 1, 1, 1, 6, 1, 2, 1, 1, 11, 1, 1]
    weights, acts = random_tiles(rng, rows, cols, len(lengths), lengths)
    sched = tile_stream(rows, cols, weights, acts, load_rows=load_rows)
    swaps = swap_cycles(sched)
    assert swaps == timing.swap_cycles(lengths)
    N = timing.load_cycles
    for k in range(len(lengths) - 1):
        assert lengths[k] <= swaps[k + 1] - swaps[k] <= max(lengths[k], N)
    if N == 1:
        assert sorted(c for c, b in sched.beats.items() if b.act is not None) == \
            list(range(1, 1 + sum(lengths)))

    got = run_array(SystolicArray(rows, cols, load_rows=load_rows), sched)
    assert got == expected_sums(sched)
    want = products(weights, acts)
    for k, t in enumerate(swaps):
        assert [got[t + p + timing.latency] for p in range(lengths[k])] == want[k]


@pytest.mark.parametrize("rows, cols, load_rows", [(2, 2, None), (4, 4, None), (3, 5, None),
                                                   (4, 4, 2)])
def test_array_idle_gaps(rows, cols, load_rows):
    """Random idle cycles between pixels (swaps may land on a gap) change nothing but timing;
    tiles of 1 to 12 pixels."""
    rng = np.random.default_rng(7 + rows * cols)
    lengths = [12, 1, 1, 5, 1, 12, 2, 1]
    weights, acts = random_tiles(rng, rows, cols, len(lengths), lengths)
    sched = tile_stream(rows, cols, weights, acts, load_rows=load_rows, rng=rng,
                        gap_prob=0.4)
    got = run_array(SystolicArray(rows, cols, load_rows=load_rows), sched)
    assert got == expected_sums(sched)
    assert sorted(v for vs in products(weights, acts) for v in map(tuple, vs)) == \
        sorted(map(tuple, got.values()))


def test_array_short_tiles_with_narrow_port():
    """With ``rows // load_rows`` beats per tile, one-pixel tiles are spaced by that
    many cycles (T_0 = 1, T_k+1 = T_k + load_cycles) and still compute exactly."""
    rows, cols = 6, 5
    rng = np.random.default_rng(3)
    weights, acts = random_tiles(rng, rows, cols, 5, 1)
    sched = tile_stream(rows, cols, weights, acts, load_rows=2)
    assert swap_cycles(sched) == [1, 4, 7, 10, 13]
    got = run_array(SystolicArray(rows, cols, load_rows=2), sched)
    assert got == expected_sums(sched)
    assert list(got.values()) == [p[0] for p in products(weights, acts)]
    assert max(got) == 13 + rows + cols + 2


def test_array_narrow_operands_sign_extended():
    """4-bit weights and 2-bit activations, sign-extended to 8 bits by the producer."""
    rng = np.random.default_rng(11)
    weights, acts = random_tiles(rng, 4, 4, 2, 6, weight_bits=4, act_bits=2)
    sched = tile_stream(4, 4, weights, acts)
    got = run_array(SystolicArray(4, 4), sched)
    assert got == expected_sums(sched)
    assert list(got.values()) == [v for p in products(weights, acts) for v in p]


def test_array_nine_bit_activations_hold_uint8():
    """With ``act_width=9`` unsigned 8-bit activations (0..255) multiply exactly."""
    rng = np.random.default_rng(12)
    weights = [rng.integers(-128, 128, size=(2, 3)) for _ in range(3)]
    acts = [np.array([[255, 255], [0, 255], [128, 1]]), np.array([[255, 255]]),
            np.array([[1, 255]])]
    weights[0][:, 0] = -128
    sched = tile_stream(2, 3, weights, acts)
    got = run_array(SystolicArray(2, 3, act_width=9), sched)
    assert list(got.values()) == [v for p in products(weights, acts) for v in p]
    assert got[1 + 7][0] == 2 * 255 * -128


def test_array_accumulator_wraps():
    """Sums wrap modulo ``2**acc_width`` (here 16 bits), never saturate."""
    weights = [np.full((2, 1), -128)]
    acts = [np.array([[-128, -128], [127, -128]])]
    sched = tile_stream(2, 1, weights, acts)
    got = run_array(SystolicArray(2, 1, acc_width=16), sched)
    assert list(got.values()) == [[-32768], [128]]   # 2 * 2**14 wraps to -2**15


def test_swap_without_reload_reactivates_same_tile():
    rows, cols = 2, 3
    sched = Schedule(rows, cols)
    sched.beat(0).load = (0, [[1, 2, 3], [-4, 5, -6]])
    sched.beat(2).swap = True
    sched.beat(2).act = [1, 1]
    sched.beat(3).swap = True
    sched.beat(3).act = [2, -1]
    got = run_array(SystolicArray(rows, cols), sched)
    latency = ArrayTiming(rows, cols).latency
    assert got == {2 + latency: [-3, 7, -3], 3 + latency: [6, -1, 12]}


def test_zero_weights_before_first_swap():
    sched = Schedule(2, 2)
    sched.beat(0).act = [100, -100]
    sched.beat(0).load = (0, [[3, 3], [3, 3]])
    got = run_array(SystolicArray(2, 2), sched)
    assert got == {6: [0, 0]}


def test_out_of_range_group_is_ignored():
    """With 3 groups the group index has 2 bits; group 3 writes nothing."""
    rows, cols = 6, 2
    sched = Schedule(rows, cols, load_rows=2)
    for g in range(3):
        sched.beat(g).load = (g, [[g + 1] * cols, [-(g + 1)] * cols])
    sched.beat(3).load = (3, [[100] * cols, [100] * cols])
    sched.beat(5).swap = True
    sched.beat(5).act = [1, 0, 1, 0, 1, 0]
    check(sched)
    got = run_array(SystolicArray(rows, cols, load_rows=2), sched)
    assert got == expected_sums(sched) == {5 + 10: [6, 6]}


@pytest.mark.parametrize("load, message", [
    ((0, [[1, 2, 3]]), "load in cycle 4 has weights of shape (1, 3), expected (2, 3): "
                       "load_rows rows of cols weights"),
    ((0, [[1, 2], [3, 4]]), "load in cycle 4 has weights of shape (2, 2), expected (2, 3): "
                            "load_rows rows of cols weights"),
    ((-1, [[1, 2, 3], [4, 5, 6]]), "load in cycle 4 has group -1; "
                                   "expected a non-negative integer"),
])
def test_model_rejects_malformed_load(load, message):
    sched = Schedule(2, 3)
    sched.beat(4).load = load
    with pytest.raises(ScheduleError) as exc:
        check(sched)
    assert str(exc.value) == message


# --- the weight-loading windows are exact ----------------------------------------------

def _window_schedule(rows, cols, load_rows, group, offset):
    """Tile A loaded early and swapped in at T=10 with one pixel; then group ``group``
    loaded with -1s at ``T + group + offset`` and tile swapped in at T2=11 + rows + cols
    with one pixel. Pixels are all ones, so each sum is a column sum of the tile."""
    sched = Schedule(rows, cols, load_rows)
    timing = sched.timing
    a = [[10 * r + c + 1 for c in range(cols)] for r in range(rows)]
    B = timing.load_rows
    for g in range(timing.load_cycles):
        sched.beat(g).load = (g, a[g * B:(g + 1) * B])
    T, T2 = 10, 11 + rows + cols
    sched.beat(T).swap = True
    sched.beat(T).act = [1] * rows
    sched.beat(T + group + offset).load = (group, [[-1] * cols] * B)
    sched.beat(T2).swap = True
    sched.beat(T2).act = [1] * rows
    return sched, a, T, T2


@pytest.mark.parametrize("rows, cols, load_rows, group", [
    (3, 4, None, 0), (4, 3, 1, 0), (4, 3, 1, 3), (6, 2, 2, 2), (4, 1, 2, 1), (1, 5, None, 0),
])
def test_load_deadline_is_exact(rows, cols, load_rows, group):
    """A load of group g in cycle ``T + g - 1`` is part of the tile swapped in at T; one in
    ``T + g`` (while that swap's wavefront is still crossing the array) is part of the
    next tile only, in every column."""
    sched0, a, T, T2 = _window_schedule(rows, cols, load_rows, group, 0)
    timing = sched0.timing
    B = timing.load_rows
    assert timing.load_deadline(group, T) == T + group - 1
    a_sum = [sum(row[c] for row in a) for c in range(cols)]
    b_sum = [sum(-1 if timing.load_group(r) == group else a[r][c] for r in range(rows))
             for c in range(cols)]
    assert a_sum != b_sum
    for offset, first in [(-1, b_sum), (0, a_sum)]:
        sched = _window_schedule(rows, cols, load_rows, group, offset)[0]
        check(sched)
        got = run_array(SystolicArray(rows, cols, load_rows=load_rows), sched)
        assert got == expected_sums(sched)
        assert got == {T + timing.latency: first, T2 + timing.latency: b_sum}
    assert B * timing.load_cycles == rows


# --- cocotb on the generated Verilog ------------------------------------------------

COCOTB_SHAPE = (4, 4)


@functools.cache
def _array_verilog(rows, cols, load_rows):
    # Conversion takes seconds; both simulators share it within a session.
    return runners.verilog_source(SystolicArray(rows, cols, load_rows=load_rows),
                                  name="systolic_array")


# The whole-tile port on both simulators; the narrow port (a group field in the
# payload) on Icarus only, whose builds take a second rather than Verilator's ~20 s.
@pytest.mark.parametrize("simulator, load_rows", [
    *((sim, None) for sim in runners.SIMULATORS), ("icarus", 2)])
def test_array_cocotb(simulator, load_rows, tmp_path):
    rows, cols = COCOTB_SHAPE
    built = runners.build(_array_verilog(rows, cols, load_rows), "systolic_array", simulator)
    env = {"ARRAY_ROWS": str(rows), "ARRAY_COLS": str(cols)}
    if load_rows is not None:
        env["ARRAY_LOAD_ROWS"] = str(load_rows)
    runners.run(built, "cocotb_array", work_dir=tmp_path, module_dir=Path(__file__).parent,
                extra_env=env)
