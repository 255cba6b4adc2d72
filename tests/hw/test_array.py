"""Systolic array and PE: Amaranth-simulator tests against the NumPy contract model,
plus one cocotb test of the generated Verilog on Verilator and Icarus."""

import functools
from pathlib import Path

import numpy as np
import pytest
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
                ctx.set(dut.load.payload.row, load[0])
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
    """``n_tiles`` weight tiles and pixel tiles of signed ``*_bits``-bit integers."""
    w_lo, w_hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1))
    a_lo, a_hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1))
    weights = [rng.integers(w_lo, w_hi, size=(rows, cols)) for _ in range(n_tiles)]
    acts = [rng.integers(a_lo, a_hi, size=(pixels, rows)) for _ in range(n_tiles)]
    return weights, acts


# --- ArrayTiming and constructor errors ------------------------------------------------

def test_timing_formulas():
    t = ArrayTiming(3, 5)
    assert t.latency == 3 + 5 + 1
    assert t.load_cycles == 3
    assert t.min_swap_interval == 5
    assert t.row_deadline(2, 100) == 101
    assert list(t.row_blackout(2, 100)) == [102, 103, 104, 105]
    assert t.first_load_after_swap(100) == 104
    assert ArrayTiming(8, 2).min_swap_interval == 8


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=0, cols=4), "array rows must be a positive integer, not 0"),
    (dict(rows=4, cols=-1), "array cols must be a positive integer, not -1"),
    (dict(rows=4.0, cols=4), "array rows must be a positive integer, not 4.0"),
    (dict(rows=4, cols=4, act_width=0), "activation width must be a positive integer, not 0"),
    (dict(rows=4, cols=4, weight_width=True),
     "weight width must be a positive integer, not True"),
    (dict(rows=4, cols=4, acc_width=12),
     "accumulator width 12 cannot hold a 8×8-bit product; use at least 16"),
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
    """``east`` is ``west`` one cycle later; ``psum_out(t+3) = psum_in(t+2) + west(t)*active``,
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
    for t in range(n - 3):
        want = wrap([int(psums[t + 2]) + int(acts[t]) * weight_at[t]], 32)[0]
        assert trace[t + 3][2] == want, f"cycle {t}"


# --- array ----------------------------------------------------------------------------

@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 2), (3, 5), (5, 3), (4, 4), (8, 8)])
def test_array_back_to_back_tiles(rows, cols):
    """Several tiles, each loaded during the previous one and swapped in with no bubble:
    the input stream has no gap and every sum arrives exactly ``R + C + 1`` cycles late."""
    rng = np.random.default_rng(rows * 100 + cols)
    timing = ArrayTiming(rows, cols)
    pixels = timing.min_swap_interval + 2
    weights, acts = random_tiles(rng, rows, cols, 4, pixels)
    weights[0][0, :] = -128
    acts[0][0, :] = -128                 # -128 * -128 = 2**14, the largest product
    acts[1][-1, :] = 127
    sched = tile_stream(rows, cols, weights, acts)

    valid_cycles = sorted(c for c, b in sched.beats.items() if b.act is not None)
    assert valid_cycles == list(range(valid_cycles[0], valid_cycles[0] + 4 * pixels))

    got = run_array(SystolicArray(rows, cols), sched)
    want = expected_sums(sched)
    assert got == want
    first_in = valid_cycles[0]
    assert first_in == 1                                 # swap one cycle after row 0 loads
    assert min(got) == first_in + rows + cols + 1
    assert max(got) == 1 + 4 * pixels - 1 + rows + cols + 1    # docs/array.md cycle model
    for k in range(4):
        assert [got[first_in + k * pixels + p + timing.latency] for p in range(pixels)] == \
            [[int(v) for v in acts[k][p] @ weights[k]] for p in range(pixels)]


@pytest.mark.parametrize("rows, cols", [(2, 2), (4, 4), (3, 5)])
def test_array_idle_gaps(rows, cols):
    """Random idle cycles between pixels (swaps may land on a gap) change nothing but timing."""
    rng = np.random.default_rng(7 + rows * cols)
    weights, acts = random_tiles(rng, rows, cols, 3, 12)
    sched = tile_stream(rows, cols, weights, acts, rng=rng, gap_prob=0.4)
    got = run_array(SystolicArray(rows, cols), sched)
    assert got == expected_sums(sched)
    assert len(got) == 36


def test_array_short_tiles_need_min_swap_interval():
    """Tiles with fewer pixels than ``max(R, C)`` still compute correctly; the schedule
    then leaves gaps so swaps are ``max(R, C)`` cycles apart."""
    rows, cols = 3, 5
    rng = np.random.default_rng(3)
    weights, acts = random_tiles(rng, rows, cols, 4, 1)
    sched = tile_stream(rows, cols, weights, acts)
    swaps = sorted(c for c, b in sched.beats.items() if b.swap)
    assert swaps == [1, 6, 11, 16]                       # T_0 = 1, T_k+1 = T_k + max(R, C)
    got = run_array(SystolicArray(rows, cols), sched)
    assert got == expected_sums(sched)
    assert list(got.values()) == [[int(v) for v in a[0] @ w] for w, a in zip(weights, acts)]
    assert max(got) == 16 + 1 - 1 + rows + cols + 1


def test_array_narrow_operands_sign_extended():
    """4-bit weights and 2-bit activations, sign-extended to 8 bits by the producer."""
    rng = np.random.default_rng(11)
    weights, acts = random_tiles(rng, 4, 4, 2, 6, weight_bits=4, act_bits=2)
    sched = tile_stream(4, 4, weights, acts)
    assert run_array(SystolicArray(4, 4), sched) == expected_sums(sched)


def test_array_nine_bit_activations_hold_uint8():
    """With ``act_width=9`` unsigned 8-bit activations (0..255) multiply exactly."""
    rng = np.random.default_rng(12)
    weights = [rng.integers(-128, 128, size=(2, 3))]
    acts = [np.array([[255, 255], [0, 255], [128, 1]])]
    weights[0][:, 0] = -128
    sched = tile_stream(2, 3, weights, acts)
    got = run_array(SystolicArray(2, 3, act_width=9), sched)
    assert list(got.values()) == [[int(v) for v in a @ weights[0]] for a in acts[0]]


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
    sched.beat(0).load = (0, [1, 2, 3])
    sched.beat(1).load = (1, [-4, 5, -6])
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
    sched.beat(0).load = (0, [3, 3])
    got = run_array(SystolicArray(2, 2), sched)
    assert got == {5: [0, 0]}


# --- the weight-loading windows are exact ----------------------------------------------

def _window_schedule(rows, cols, row, offset):
    """Tile A everywhere, swap at T=10; then load row ``row`` with tile B's values at
    ``T + row + offset`` and swap B in at cycle 30; one pixel after each swap."""
    sched = Schedule(rows, cols)
    a = [[10 * r + c + 1 for c in range(cols)] for r in range(rows)]
    for r in range(rows):
        sched.beat(r).load = (r, a[r])
    T = 10
    sched.beat(T).swap = True
    sched.beat(T).act = [1] * rows
    sched.beat(T + row + offset).load = (row, [-1] * cols)
    sched.beat(30).swap = True
    sched.beat(30).act = [1] * rows
    return sched


@pytest.mark.parametrize("rows, cols, row", [(3, 4, 0), (3, 4, 2), (4, 1, 3)])
def test_row_deadline_is_exact(rows, cols, row):
    """A load at ``T + row - 1`` belongs to the tile swapped in at T; at ``T + row + C - 1``
    it belongs to the next tile; both are legal."""
    latency = ArrayTiming(rows, cols).latency
    for offset, in_first in [(-1, True), (cols - 1, False)]:
        sched = _window_schedule(rows, cols, row, offset)
        check(sched)
        got = run_array(SystolicArray(rows, cols), sched)
        assert got == expected_sums(sched)
        changed = [-1] * cols
        base = [sum(10 * r + c + 1 for r in range(rows) if r != row) for c in range(cols)]
        with_b = [b + x for b, x in zip(base, changed)]
        assert got[30 + latency] == with_b
        assert got[10 + latency] == (with_b if in_first else
                                    [b + 10 * row + c + 1 for c, b in enumerate(base)])


def test_blackout_load_reaches_only_some_columns():
    """A load inside the blackout is rejected by the model, and the RTL shows why:
    the columns the swap had already passed keep the old weight."""
    rows, cols, row = 3, 4, 1
    sched = _window_schedule(rows, cols, row, 1)       # cycle T + row + 1: columns 0, 1 done
    with pytest.raises(ScheduleError) as exc:
        check(sched)
    assert str(exc.value) == (
        "load of row 1 in cycle 12 falls in the blackout of the swap in cycle 10 "
        "(cycles 11..13); load it by cycle 10 or from cycle 14 on")
    got = run_array(SystolicArray(rows, cols), sched)
    latency = ArrayTiming(rows, cols).latency
    old = [sum(10 * r + c + 1 for r in range(rows)) for c in range(cols)]
    new = [o - (10 * row + c + 1) - 1 for c, o in enumerate(old)]
    assert got[10 + latency] == old[:2] + new[2:]


# --- cocotb on the generated Verilog ------------------------------------------------

COCOTB_SHAPE = (4, 4)


@functools.cache
def _array_verilog(rows, cols):
    # Conversion takes seconds; both simulators share it within a session.
    return runners.verilog_source(SystolicArray(rows, cols), name="systolic_array")


@pytest.mark.parametrize("simulator", runners.SIMULATORS)
def test_array_cocotb(simulator, tmp_path):
    rows, cols = COCOTB_SHAPE
    built = runners.build(_array_verilog(rows, cols), "systolic_array", simulator)
    runners.run(built, "cocotb_array", work_dir=tmp_path, module_dir=Path(__file__).parent,
                extra_env={"ARRAY_ROWS": str(rows), "ARRAY_COLS": str(cols)})
