"""Feeder in the Amaranth simulator: the pixels it sends for every step of a CONV must be
the im2col rows `sim.machine.conv` multiplies, at one pixel per cycle."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.sim import Simulator

from hw import layout
from hw.bram import BlockRAM
from hw.feeder import FEED_LATENCY, Feeder
from sim import runners

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


class Bench(Elaboratable):
    """Feeder reading an R-byte-wide activation memory: an amaranth memory, or with
    `registered_read` the accelerator's hw.bram.BlockRAM (`read_ahead` its too)."""

    def __init__(self, rows, init, **kwargs):
        depth = len(init)
        self.dut = Feeder(rows, addr_width=max(1, (depth - 1).bit_length()), **kwargs)
        self.shape = data.ArrayLayout(unsigned(8), rows)
        self.init = [list(map(int, w)) for w in init]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        if dut.registered_read:
            m.submodules.mem = mem = BlockRAM(self.shape, len(self.init), init=self.init,
                                              read_ahead=int(dut.read_ahead))
            port = mem.read[0]
            m.d.comb += [port.addr.eq(dut.rd.addr), port.en.eq(dut.rd.en),
                         dut.rd.data.eq(port.q)]
        else:
            m.submodules.mem = mem = memory.Memory(shape=self.shape, depth=len(self.init),
                                                   init=self.init)
            wiring.connect(m, dut.rd, mem.read_port())
        return m


def conv_steps(rng, conv, tile_px):
    """Feeder commands of one CONV, in the sequencer's order (pixel tile, kh, kw, k)."""
    conv_h, conv_w = conv["conv_hw"]
    pixels = conv_h * conv_w
    kt = layout.ceil_div(conv["in_c"], conv["rows"])
    steps = []
    for p0 in range(0, pixels, tile_px):
        oh0, ow0 = divmod(p0, conv_w)
        for i in range(conv["kh"]):
            for j in range(conv["kw"]):
                for k in range(kt):
                    steps.append({
                        "src": conv["src"], "in_h": conv["in_h"], "in_w": conv["in_w"],
                        "in_c": conv["in_c"], "stride": conv["stride"],
                        "pad_t": conv["pad_t"], "pad_l": conv["pad_l"],
                        "in_signed": conv["signed"], "conv_w": conv_w, "oh0": oh0,
                        "ow0": ow0, "n": min(tile_px, pixels - p0), "i": i, "j": j, "k": k,
                        "swap": int(rng.random() < 0.7)})
    return steps


def expected_pixels(conv, x, step):
    """What machine.conv multiplies for one step: xp[oh*s + i, ow*s + j, kR:(k+1)R]."""
    R = conv["rows"]
    kt = layout.ceil_div(conv["in_c"], R)
    t, l = conv["pad_t"], conv["pad_l"]
    xp = np.zeros((conv["in_h"] + t + 8, conv["in_w"] + l + 8, kt * R), dtype=np.int64)
    xp[t:t + conv["in_h"], l:l + conv["in_w"], :conv["in_c"]] = x
    conv_w = conv["conv_hw"][1]
    out = []
    for p in range(step["oh0"] * conv_w + step["ow0"],
                   step["oh0"] * conv_w + step["ow0"] + step["n"]):
        oh, ow = divmod(p, conv_w)
        s = conv["stride"]
        out.append([int(v) for v in xp[oh * s + step["i"], ow * s + step["j"],
                                        step["k"] * R:(step["k"] + 1) * R]])
    return out


def random_conv(rng, rows, *, signed, stride=None, pads=None):
    in_h, in_w = (int(v) for v in rng.integers(1, 8, size=2))
    kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
    stride = stride or int(rng.integers(1, 4))
    pad_t, pad_l, pad_b, pad_r = pads or (int(v) for v in rng.integers(0, 3, size=4))
    if in_h + pad_t + pad_b < kh:
        pad_b = kh - in_h - pad_t
    if in_w + pad_l + pad_r < kw:
        pad_r = kw - in_w - pad_l
    conv_hw = ((in_h + pad_t + pad_b - kh) // stride + 1,
               (in_w + pad_l + pad_r - kw) // stride + 1)
    in_c = int(rng.integers(1, 3 * rows + 1))
    return {"rows": rows, "in_h": in_h, "in_w": in_w, "in_c": in_c, "kh": kh, "kw": kw,
            "stride": stride, "pad_t": pad_t, "pad_l": pad_l, "conv_hw": conv_hw,
            "signed": int(signed), "src": int(rng.integers(0, 20))}


def run_feeder(rows, init, steps, rng, *, cmd_gap=0.0, min_cycles=1, variant="full"):
    """Offer `steps` (with random idle cycles); return (accept cycles, outputs by cycle)."""
    bench = Bench(rows, init, min_cycles=min_cycles, **VARIANTS[variant])
    dut = bench.dut
    accepted, outputs = [], {}

    async def testbench(ctx):
        queue = list(steps)
        cycle = idle = 0
        while queue or ctx.get(dut.busy) or idle < 2:
            idle = idle + 1 if not queue and not ctx.get(dut.busy) else 0
            offer = bool(queue) and rng.random() >= cmd_gap
            ctx.set(dut.cmd.valid, offer)
            if offer:
                ctx.set(dut.cmd.payload, queue[0])
            if offer and ctx.get(dut.cmd.ready):
                queue.pop(0)
                accepted.append(cycle)
            if ctx.get(dut.act.valid):
                outputs[cycle] = ([int(v) for v in ctx.get(dut.act.payload)],
                                  int(ctx.get(dut.swap)))
            else:
                assert not ctx.get(dut.swap), f"swap without a pixel in cycle {cycle}"
            await ctx.tick()
            cycle += 1

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return accepted, outputs


def check_conv(rng, conv, tile_px, *, cmd_gap=0.0, min_cycles=1, variant="full"):
    R = conv["rows"]
    lo, hi = (-128, 127) if conv["signed"] else (0, 255)
    x = rng.integers(lo, hi + 1, size=(conv["in_h"], conv["in_w"], conv["in_c"]))
    x.flat[:2] = (lo, hi)
    words = layout.act_words(conv["in_h"] * conv["in_w"], conv["in_c"], R)
    # Garbage around the tensor: a read outside it, or a padding pixel read instead of
    # zeroed, shows up.
    init = rng.integers(0, 256, size=(conv["src"] + words + 7, R)).astype(np.uint8)
    init[conv["src"]:conv["src"] + words] = layout.to_banks(x, R)
    steps = conv_steps(rng, conv, tile_px)
    accepted, outputs = run_feeder(R, init, steps, rng, cmd_gap=cmd_gap,
                                   min_cycles=min_cycles, variant=variant)
    assert len(accepted) == len(steps)
    want = {}
    for step, start in zip(steps, accepted):
        for q, vec in enumerate(expected_pixels(conv, x, step)):
            want[start + FEED_LATENCY + q] = (vec, int(q == 0 and step["swap"]))
    assert sorted(outputs) == sorted(want), "pixels at the wrong cycles"
    for cycle in sorted(want):
        assert outputs[cycle] == want[cycle], f"cycle {cycle}: {conv}"
    return steps, accepted


# Every variant sends the same pixels in the same cycles. compact
# (AcceleratorConfig.compact_feeder): for commands that share in_h, in_w and in_c (one
# conv at a time, as the sequencer sends); bram: out of a hw.bram.BlockRAM's registered
# port, read_ahead: its address and enable a cycle ahead (the ECP5 accelerator's).
VARIANTS = {"full": {}, "compact": {"compact": True}, "bram": {"registered_read": True},
            "read_ahead": {"registered_read": True, "read_ahead": True}}
VARIANT = pytest.mark.parametrize("variant", list(VARIANTS))


@VARIANT
@pytest.mark.parametrize("seed", range(6))
def test_random_convs_back_to_back(seed, variant):
    """Commands offered back to back: each starts the cycle after the previous one's
    last pixel, so the array sees no bubble."""
    rng = np.random.default_rng(seed)
    rows = [4, 3, 8, 1, 4, 5][seed]
    conv = random_conv(rng, rows, signed=seed % 2 == 0)
    conv_h, conv_w = conv["conv_hw"]
    tile_px = int(rng.integers(1, conv_h * conv_w + 1))
    steps, accepted = check_conv(rng, conv, tile_px, variant=variant)
    assert [b - a for a, b in zip(accepted, accepted[1:])] == [s["n"] for s in steps[:-1]]


@VARIANT
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_padding_on_every_border(stride, variant):
    rng = np.random.default_rng(10 + stride)
    conv = random_conv(rng, 4, signed=True, stride=stride, pads=(2, 1, 2, 3))
    conv.update(kh=3, kw=4, in_h=5, in_w=6, in_c=6)
    conv["conv_hw"] = ((5 + 2 + 2 - 3) // stride + 1, (6 + 1 + 3 - 4) // stride + 1)
    check_conv(rng, conv, tile_px=7, variant=variant)


def test_unsigned_255_and_signed_minus_128_are_exact():
    rng = np.random.default_rng(20)
    for signed, value in ((0, 255), (1, -128)):
        conv = random_conv(rng, 2, signed=signed, stride=1, pads=(0, 0, 0, 0))
        conv.update(in_h=1, in_w=1, in_c=2, kh=1, kw=1, conv_hw=(1, 1))
        init = np.zeros((conv["src"] + 2, 2), dtype=np.uint8)
        init[conv["src"]] = value & 0xFF
        steps = conv_steps(rng, conv, 1)
        _, outputs = run_feeder(2, init, steps, rng)
        assert [v for v, _ in outputs.values()] == [[value, value]]


@VARIANT
def test_idle_commands_and_minimum_step_length(variant):
    """Short tiles hold the command for min_cycles (swap spacing); gaps between
    commands delay pixels but never reorder or drop them."""
    rng = np.random.default_rng(30)
    conv = random_conv(rng, 4, signed=True, stride=1, pads=(1, 1, 1, 1))
    steps, accepted = check_conv(rng, conv, tile_px=3, cmd_gap=0.4, min_cycles=5,
                                 variant=variant)
    assert all(b - a >= 5 for a, b in zip(accepted, accepted[1:]))
    steps, accepted = check_conv(rng, conv, tile_px=3, min_cycles=5, variant=variant)
    assert [b - a for a, b in zip(accepted, accepted[1:])] == [5] * (len(steps) - 1)


@pytest.mark.parametrize("args, kwargs, message", [
    ((0,), {}, "Feeder rows must be an integer from 1 to 64, not 0; use the array's row count"),
    ((4,), {"act_width": 8}, "Feeder act_width must be an integer from 9 to 32, not 8; "
                             "unsigned 8-bit activations (0..255) need 9 signed bits"),
    ((4,), {"addr_width": 24}, "Feeder addr_width must be an integer from 1 to 20, not 24; "
                               "the descriptor's src field has 20 bits"),
    ((4,), {"min_cycles": 0}, "Feeder min_cycles must be an integer from 1 to 4095, not 0; "
                              "pass ArrayTiming(rows, cols).min_swap_interval"),
])
def test_constructor_errors(args, kwargs, message):
    with pytest.raises(ValueError) as info:
        Feeder(*args, **kwargs)
    assert str(info.value) == message


def test_converts_to_verilog():
    text = runners.verilog_source(Feeder(4, addr_width=12), name="feeder")
    for port in ("cmd__valid", "cmd__ready", "cmd__payload", "rd__addr", "rd__en",
                 "rd__data", "act__valid", "act__payload", "swap", "busy"):
        assert f" {port}" in text
