"""PostProcessor in the Amaranth simulator against `sim.machine.requantize`, cycle by cycle."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.postproc import PARAM_BLACKOUT, POST_LATENCY, PostProcessor
from sim import machine, runners

# Constructors that refuse their arguments leave unelaborated objects behind.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

INT32 = (-(1 << 31), (1 << 31) - 1)
INT56 = (-(1 << 55), (1 << 55) - 1)


def wrap32(v):
    return ((int(v) + (1 << 31)) % (1 << 32)) - (1 << 31)


def expected(acc, params, mode):
    """The NumPy definition for one pixel (`params`: dict of per-lane arrays)."""
    acc = np.asarray(acc, dtype=np.int64)
    if mode["raw"]:
        return [wrap32(a + b) for a, b in zip(acc, params["bias"])]
    return [int(y) for y in machine.requantize(acc, params, mode["lo"], mode["hi"],
                                               bool(mode["bipolar"]))]


# --- stimulus ----------------------------------------------------------------------

def random_lane(rng):
    """(acc, bias, mult, offset, shift) of one lane: mostly results near the clamp
    range, some anywhere in the field ranges, some exact rounding ties."""
    kind = rng.integers(0, 4)
    shift = int(rng.choice([0, 1, 2, 62, 63, int(rng.integers(0, 64))]))
    mult = int(rng.choice([0, 1, (1 << 31) - 1, int(2 ** rng.uniform(0, 31))]))
    acc = int(rng.choice([INT32[0], INT32[1], 0, -1,
                          int(rng.integers(-1, 2) * 2 ** rng.uniform(0, 31))]))
    acc = max(INT32[0], min(INT32[1], acc))
    if kind == 0:                           # anywhere: wraps exactly like int64
        return acc, int(rng.integers(*INT32, endpoint=True)), mult, \
            int(rng.integers(*INT56, endpoint=True)), shift
    bias = int(rng.integers(-1000, 1000))
    x = acc + bias
    target = int(rng.integers(-600, 600))
    if kind == 1:                           # a tie: exactly .5 below target + 1
        frac = (1 << (shift - 1)) if shift else 0
    else:
        frac = int(rng.integers(0, 1 << shift)) if shift < 63 else int(rng.integers(0, 1 << 62))
    offset = (target << shift) + frac - x * mult
    offset = max(INT56[0], min(INT56[1], offset))
    return acc, bias, mult, offset, shift


def random_mode(rng, raw=None):
    lo, hi = [(-128, 127), (0, 255), (0, 127), (-4, 3), (0, 1), (5, 2),
              tuple(sorted(rng.integers(-512, 512, size=2)))][rng.integers(0, 7)]
    return {"lo": int(lo), "hi": int(hi),
            "raw": int(rng.random() < 0.2) if raw is None else raw,
            "bipolar": int(rng.random() < 0.2)}


def random_segments(rng, cols, n_segments, max_pixels):
    """Segments of pixels sharing one parameter set and mode."""
    segments = []
    for _ in range(n_segments):
        pixels, params = [], {k: [] for k in ("bias", "mult", "offset", "shift")}
        lanes = [random_lane(rng) for _ in range(cols)]
        for _, b, mu, o, s in lanes:
            for k, v in zip(("bias", "mult", "offset", "shift"), (b, mu, o, s)):
                params[k].append(v)
        n = int(rng.integers(1, max_pixels + 1))
        for _ in range(n):
            # The lane's own acc on the first pixel (ties, extremes), random later.
            pixels.append([lanes[c][0] if not pixels or rng.random() < 0.3
                           else int(rng.integers(*INT32, endpoint=True)) for c in range(cols)])
        segments.append({"params": {k: np.array(v, dtype=np.int64) for k, v in params.items()},
                         "mode": random_mode(rng), "pixels": pixels})
    return segments


# --- harness -------------------------------------------------------------------------

def run_segments(dut, segments, rng, *, gap=0.3, load_gap=0.3):
    """Stream `segments` into `dut`: each segment's parameters are loaded into the
    shadow while the previous segment streams, then a swap rides on its first pixel
    (or on a gap before it). Returns (outputs by cycle, inputs by cycle, swap cycles,
    ready by cycle)."""
    C = dut.cols
    outs, ins, swaps, ready_seen = {}, {}, [], {}

    async def testbench(ctx):
        cycle = 0
        loads = []                 # (lane, record) still to load for the next segment
        queue = []                 # pixels of the active segment still to send
        seg = -1

        def start_loads(s):
            """(lane, record, no_bias): a lane loaded with no_bias has its stored bias
            and takes 0, so the segment's expected bias becomes 0"""
            p = segments[s]["params"]
            out = []
            for c in rng.permutation(C):
                no_bias = int(rng.random() < 0.25)
                out.append((c, {k: int(p[k][c]) for k in p}, no_bias))
                if no_bias:
                    p["bias"][c] = 0
            return out

        loads = start_loads(0)
        while True:
            swap = False
            if not queue and not loads and seg + 1 < len(segments):
                seg += 1
                swap = True
                queue = list(segments[seg]["pixels"])
                ctx.set(dut.mode, segments[seg]["mode"])
                if seg + 1 < len(segments):
                    loads = start_loads(seg + 1)
            send = bool(queue) and (rng.random() >= gap or (swap and rng.random() < 0.5))
            # A swap may also sit in a gap before its first pixel.
            ctx.set(dut.swap, swap)
            if swap:
                swaps.append(cycle)
            ctx.set(dut.acc.valid, send)
            if send:
                acc = queue.pop(0)
                tag = int(rng.integers(0, 1 << dut.tag_width)) if dut.tag_width else 0
                ctx.set(dut.acc.payload, {"acc": acc, "tag": tag})
                ins[cycle] = (seg, acc, tag)
            offer = bool(loads) and rng.random() >= load_gap
            ctx.set(dut.param.valid, offer)
            if offer:
                lane, record, no_bias = loads[0]
                ctx.set(dut.param.payload, {"lane": int(lane), "param": record,
                                            "no_bias": no_bias})
            ready = ctx.get(dut.param.ready)
            ready_seen[cycle] = ready
            if offer and ready:
                loads.pop(0)
            if ctx.get(dut.out.valid):
                outs[cycle] = ([int(v) for v in ctx.get(dut.out.payload.data)],
                               int(ctx.get(dut.out.payload.tag)))
            await ctx.tick()
            cycle += 1
            if seg == len(segments) - 1 and not queue and not loads:
                for _ in range(POST_LATENCY + 2):
                    ctx.set(dut.acc.valid, 0)
                    ctx.set(dut.swap, 0)
                    ctx.set(dut.param.valid, 0)
                    if ctx.get(dut.out.valid):
                        outs[cycle] = ([int(v) for v in ctx.get(dut.out.payload.data)],
                                       int(ctx.get(dut.out.payload.tag)))
                    await ctx.tick()
                    cycle += 1
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return outs, ins, swaps, ready_seen


def check_run(dut, segments, outs, ins, swaps, ready_seen):
    want = {cycle + POST_LATENCY: (expected(acc, segments[seg]["params"], segments[seg]["mode"]),
                                   tag)
            for cycle, (seg, acc, tag) in ins.items()}
    assert sorted(outs) == sorted(want), "outputs at the wrong cycles"
    for cycle in want:
        assert outs[cycle] == want[cycle], (
            f"cycle {cycle}: got {outs[cycle]}, want {want[cycle]} "
            f"(input {ins[cycle - POST_LATENCY]})")
    blackout = {t + k for t in swaps for k in range(PARAM_BLACKOUT)}
    for cycle, ready in ready_seen.items():
        assert ready == (cycle not in blackout), f"param.ready {ready} in cycle {cycle}"


# --- tests ---------------------------------------------------------------------------

# compact (AcceleratorConfig.compact_post) must compute the same integers in the same cycles
COMPACT = pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])


@COMPACT
@pytest.mark.parametrize("cols, seed", [(1, 1), (3, 2), (4, 3)])
def test_random_against_numpy(cols, seed, compact):
    rng = np.random.default_rng(seed)
    dut = PostProcessor(cols, tag_width=12, compact=compact)
    segments = random_segments(rng, cols, n_segments=24, max_pixels=6)
    check_run(dut, segments, *run_segments(dut, segments, rng))


def lane_for(v):
    """(acc, bias, mult, offset) whose (acc + bias) * mult + offset is v modulo 2**64,
    for any int64 v (-2**63 + small through the wrap)."""
    m = (1 << 31) - 1
    for big in (v, v + (1 << 64), v - (1 << 64)):
        x = max(2 * INT32[0], min(2 * INT32[1], big // m))
        if INT56[0] <= big - x * m <= INT56[1]:
            acc = max(INT32[0], min(INT32[1], x))
            return acc, x - acc, m, big - x * m
    raise AssertionError(f"no lane for {v}")


@COMPACT
def test_rounding_edges_exactly(compact):
    """Ties both ways at every shift class, shift 0 (no rounding) and 63, negatives."""
    cases = []
    for shift in (0, 1, 2, 5, 31, 61, 62, 63):
        half = (1 << (shift - 1)) if shift else 0
        for q in (-3, -2, -1, 0, 1, 2, 3):
            for frac in sorted({0, half, half + 1, max(half - 1, 0), (1 << shift) - 1}):
                v = q * (1 << shift) + frac
                if abs(v) <= (1 << 62) + (1 << 40):
                    cases.append((shift, v))
    assert sum(s == 63 for s, _ in cases) >= 4 and (63, -(1 << 62)) in cases
    cols = 4
    segments = []
    for i in range(0, len(cases), cols):
        chunk = cases[i:i + cols] + [(0, 0)] * (cols - len(cases[i:i + cols]))
        lanes = [lane_for(v) for _, v in chunk]
        params = {"bias": np.array([b for _, b, _, _ in lanes], np.int64),
                  "mult": np.array([m for _, _, m, _ in lanes], np.int64),
                  "offset": np.array([o for _, _, _, o in lanes], np.int64),
                  "shift": np.array([s for s, _ in chunk], np.int64)}
        segments.append({"params": params, "mode": {"lo": -512, "hi": 511, "raw": 0,
                                                    "bipolar": 0},
                         "pixels": [[a for a, _, _, _ in lanes]]})
    dut = PostProcessor(cols, compact=compact)
    outs, ins, swaps, ready = run_segments(dut, segments, np.random.default_rng(0), gap=0,
                                           load_gap=0)
    check_run(dut, segments, outs, ins, swaps, ready)
    # And against the hand-computed values, not only against NumPy.
    got = [v for cycle in sorted(outs) for v in outs[cycle][0]]
    ties = set()
    for (shift, v), y in zip(cases, got):
        exact, rest = divmod(v, 1 << shift)          # v / 2**shift = exact + rest / 2**shift
        if 2 * rest == (1 << shift):
            ties.add((shift, exact & 1))
            assert y == exact + (exact & 1), f"tie {v}/2**{shift} gave {y}"
        else:
            assert y == exact + (2 * rest > (1 << shift)), f"{v}/2**{shift} gave {y}"
    assert ties == {(s, odd) for s in (1, 2, 5, 31, 61, 62, 63) for odd in (0, 1)}


def shift_cases(rng):
    """(shift, v) for every shift: one bit of v at or above s + 10 that takes q out of 11
    bits (at s + 10, s + 11, 62 and one drawn; both signs, -2**63 + small included), one
    bit below the guard that breaks a tie (at 0, s - 2 and one drawn), and ties and
    near-ties around the clamp and the saturation bounds."""
    cases = []
    for s in range(64):
        if s + 10 < 63:
            for p in sorted({s + 10, min(s + 11, 62), 62, int(rng.integers(s + 10, 63))}):
                low = 3 << s
                cases += [(s, (1 << p) + low), (s, -(1 << (p + 1)) + low)]
        half = (1 << (s - 1)) if s else 0
        if s >= 2:
            for p in sorted({0, s - 2, int(rng.integers(0, s - 1))}):
                cases += [(s, (q << s) + half + (1 << p)) for q in (0, 2, -3)]
        for q in (-1025, -1024, -513, -512, 511, 512, 1023, 1024):
            cases += [(s, (q << s) + frac) for frac in sorted({half, half + 1, (1 << s) - 1})]
    return [(s, v) for s, v in cases if -(1 << 63) <= v < (1 << 63)]


@COMPACT
def test_saturation_and_sticky_at_every_shift(compact):
    """Every shift 0..63 with the cases of `shift_cases`: the saturation's and the sticky
    bit's ORs reached at both ends, ties at the clamp and saturation bounds."""
    rng = np.random.default_rng(7)
    cases = shift_cases(rng)
    cols = 8
    segments = []
    for i in range(0, len(cases), cols):
        chunk = cases[i:i + cols] + [(0, 0)] * (cols - len(cases[i:i + cols]))
        lanes = [lane_for(v) for _, v in chunk]
        params = {k: np.array([lane[j] for lane in lanes], np.int64)
                  for j, k in enumerate(("bias", "mult", "offset"), start=1)}
        params["shift"] = np.array([s for s, _ in chunk], np.int64)
        segments.append({"params": params,
                         "mode": {"lo": -512, "hi": 511, "raw": 0, "bipolar": 0},
                         "pixels": [[lane[0] for lane in lanes]]})
        acc = np.array(segments[-1]["pixels"][0], np.int64)
        wrapped = (acc + params["bias"]) * params["mult"] + params["offset"]   # int64 wraps
        assert [int(x) for x in wrapped] == [v for _, v in chunk]
    dut = PostProcessor(cols, compact=compact)
    check_run(dut, segments, *run_segments(dut, segments, rng, gap=0, load_gap=0))


@COMPACT
def test_extremes_and_raw_mode(compact):
    cols = 2
    ext = [INT32[0], INT32[1]]
    segments = []
    for raw in (1, 0):
        for bias in (INT32[0], INT32[1], 0):
            params = {"bias": np.full(cols, bias, np.int64),
                      "mult": np.array([(1 << 31) - 1, 1], np.int64),
                      "offset": np.array([INT56[1], INT56[0]], np.int64),
                      "shift": np.array([63, 0], np.int64)}
            segments.append({"params": params,
                             "mode": {"lo": -128, "hi": 127, "raw": raw, "bipolar": 0},
                             "pixels": [[a, b] for a in ext for b in ext] + [[0, -1]]})
    dut = PostProcessor(cols, compact=compact)
    check_run(dut, segments, *run_segments(dut, segments, np.random.default_rng(5), gap=0))
    # Raw mode ignores mult/offset/shift: acc + bias wraps to int32.
    assert expected([INT32[1], 5], segments[0]["params"], segments[0]["mode"]) == \
        [wrap32(INT32[1] + INT32[0]), wrap32(5 + INT32[0])]


@COMPACT
def test_swap_in_gap_and_back_to_back_swaps(compact):
    """Single-pixel segments: every pixel swaps, so up to five parameter sets are in
    flight at once; loads wait out each blackout."""
    rng = np.random.default_rng(11)
    dut = PostProcessor(2, tag_width=4, compact=compact)
    segments = random_segments(rng, 2, n_segments=30, max_pixels=1)
    check_run(dut, segments, *run_segments(dut, segments, rng, gap=0.5, load_gap=0))


@pytest.mark.parametrize("args, kwargs, message", [
    ((0,), {}, "PostProcessor cols must be an integer from 1 to 64, not 0; "
               "use the array's column count"),
    ((4, 40), {}, "PostProcessor acc_width must be an integer from 2 to 32, not 40; "
                  "the PARAM bias is int32 and the raw output int32"),
    ((4,), {"tag_width": -1}, "PostProcessor tag_width must be an integer from 0 to 64, "
                              "not -1; tags carry a pixel address"),
    ((1,), {"sparse_raw": True}, "PostProcessor sparse_raw needs compact (its output stage "
                                 "reads v five stages after it is set, not six)"),
])
def test_constructor_errors(args, kwargs, message):
    with pytest.raises(ValueError) as info:
        PostProcessor(*args, **kwargs)
    assert str(info.value) == message


@COMPACT
def test_converts_to_verilog(compact):
    text = runners.verilog_source(PostProcessor(2, tag_width=8, compact=compact),
                                  name="postproc")
    for port in ("acc__valid", "acc__payload", "swap", "mode", "param__valid",
                 "param__ready", "out__valid", "out__payload"):
        assert f" {port}" in text


# --- the accelerator's 1x1 on small FPGAs: mode held still, records held outside ------

def run_held(dut, segments, rng, *, gap=0.3, spacing=1):
    """Stream `segments` (one mode for all) into a `held_params`, `static_mode` `dut`:
    `shadow` holds the next segment's records from the start or from the cycle after
    `param_done`, and a segment swaps in once they are there and the last one is sent.
    Returns (outputs by cycle, inputs by cycle, param_done cycles, swap cycles)."""
    C = dut.cols
    outs, ins, done, swaps = {}, {}, [], []

    def records(s):
        p = segments[s]["params"]
        return [{k: int(p[k][c]) for k in p} for c in range(C)]

    def sample(ctx, cycle):
        if ctx.get(dut.param_done):
            done.append(cycle)
        if ctx.get(dut.out.valid):
            outs[cycle] = [int(v) for v in ctx.get(dut.out.payload.data)]

    async def testbench(ctx):
        cycle, seg, queue, have_next, last_sent = 0, -1, [], True, -spacing
        ctx.set(dut.shadow, records(0))
        ctx.set(dut.mode, segments[0]["mode"])
        while seg < len(segments) - 1 or queue:
            swap = not queue and have_next and seg + 1 < len(segments)
            if swap:
                seg, have_next = seg + 1, False
                queue = list(segments[seg]["pixels"])
                swaps.append(cycle)
            send = bool(queue) and (rng.random() >= gap or (swap and rng.random() < 0.5))
            send = send and cycle - last_sent >= spacing
            ctx.set(dut.swap, swap)
            ctx.set(dut.acc.valid, send)
            if send:
                acc = queue.pop(0)
                ctx.set(dut.acc.payload, {"acc": acc, "tag": 0})
                ins[cycle] = (seg, acc)
                last_sent = cycle
            sample(ctx, cycle)
            await ctx.tick()
            cycle += 1
            if done and done[-1] == cycle - 1 and seg + 1 < len(segments):
                ctx.set(dut.shadow, records(seg + 1))
                have_next = True
        ctx.set(dut.acc.valid, 0)
        ctx.set(dut.swap, 0)
        for _ in range(POST_LATENCY + 2):
            sample(ctx, cycle)
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return outs, ins, done, swaps


@pytest.mark.parametrize("raw", [0, 1])
@pytest.mark.parametrize("seed", [11, 12])
@pytest.mark.parametrize("sparse_raw", [False, True])
def test_held_params_and_static_mode(seed, raw, sparse_raw):
    """held_params + static_mode (the accelerator's 1x1 with compact_post; sparse_raw
    with its one-pixel tiles, pixels 4 cycles apart or more): the same integers in the
    same cycles, with the records read from `shadow` until T+3 after each swap
    (`param_done` then)."""
    rng = np.random.default_rng(seed)
    dut = PostProcessor(1, compact=True, static_mode=True, held_params=True,
                        sparse_raw=sparse_raw)
    segments = random_segments(rng, 1, n_segments=24, max_pixels=6)
    mode = random_mode(rng, raw=raw)
    for seg in segments:
        seg["mode"] = mode
    outs, ins, done, swaps = run_held(dut, segments, rng, spacing=4 if sparse_raw else 1)
    want = {cycle + POST_LATENCY: expected(acc, segments[seg]["params"], mode)
            for cycle, (seg, acc) in ins.items()}
    assert outs == want
    assert done == [t + PARAM_BLACKOUT for t in swaps]
