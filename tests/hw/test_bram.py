"""hw.bram: BlockRAM's registered reads (READ_LATENCY, en and q_en holding), byte lanes,
the collision poison in simulation, and the ECP5 blocks (DP16KD and PDPW16KD with their
output registers, under Icarus with the models in tests/hw/models/) giving the same words
as the simulation."""

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.hdl import Value, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.bram import (READ_LATENCY, BlockRAM, block_width, blocks_needed, fewest_blocks,
                     instance_width, instantiates, lutram_cheaper)

MODELS = [Path(__file__).parent / "models" / name for name in ("dp16kd.v", "pdpw16kd.v")]


class _ECP5:
    """What hw.bram.BlockRAM looks at in a platform: an ECP5 one."""
    family = "ecp5"


def _reference(steps, width, granularity, ports):
    """q of every port after every edge, by the module documentation: each step is
    (waddr, wdata, wen, [(raddr, ren, qen)]); None where a lane read was never written
    or a read met a write of its address at the same edge."""
    g = granularity or width
    lanes = width // g
    mem, latch, q, out = {}, [None] * ports, [None] * ports, []

    def word(stored):
        if stored is None or None in stored:
            return None
        return sum(v << lane * g for lane, v in enumerate(stored))

    for waddr, wdata, wen, reads in steps:
        for i, (raddr, ren, qen) in enumerate(reads):
            if qen:
                q[i] = latch[i]
            if ren:
                latch[i] = None if wen and raddr == waddr else word(mem.get(raddr))
        if wen:
            stored = mem.setdefault(waddr, [None] * lanes)
            for lane in range(lanes):
                if wen >> lane & 1:
                    stored[lane] = wdata >> lane * g & (1 << g) - 1
        out.append(list(q))
    return out


def _stimulus(rng, depth, width, lanes, ports, cycles, collide):
    hot = [rng.randrange(depth) for _ in range(6)]     # a few addresses, often reused
    idle = [(0, 1, 1)] * ports
    steps = [(a, rng.getrandbits(width), (1 << lanes) - 1, idle) for a in hot]
    for _ in range(cycles):
        waddr = rng.choice(hot) if rng.random() < 0.6 else rng.randrange(depth)
        wen = rng.getrandbits(lanes) if rng.random() < 0.5 else 0
        reads = []
        for _ in range(ports):
            raddr = rng.choice(hot + [waddr]) if rng.random() < 0.7 else rng.randrange(depth)
            if not collide and wen and raddr == waddr:
                raddr = (raddr + 1) % depth
            reads.append((raddr, int(rng.random() < 0.85), int(rng.random() < 0.85)))
        steps.append((waddr, rng.getrandbits(width), wen, reads))
    return steps


def _driven_ahead(steps, ports, write, read):
    """`steps` with an idle step in front, and what drives them with `write_ahead`
    (`write`: each step's write address and enables a step early, its data on time)
    and `read_ahead` (`read`: read port 0's address and enable a step early, its q_en
    on time)."""
    steps = [(0, 0, 0, [(0, 1, 1)] * ports)] + steps
    drive = []
    for now, later in zip(steps, steps[1:]):
        waddr, wdata, wen, reads = now
        if write:
            waddr, wen = later[0], later[2]
        if read:
            reads = [(*later[3][0][:2], reads[0][2]), *reads[1:]]
        drive.append((waddr, wdata, wen, reads))
    return steps[:-1], drive


AHEAD = {"": (0, 0), "write_ahead": (3, 0), "read_ahead": (0, 3), "both_ahead": (2, 1)}


SHAPES = [   # (width, depth, granularity, ports): every block width, lanes shared or split
    (64, 4096, 8, 2), (72, 2048, 8, 1), (40, 1024, 8, 1), (24, 1024, 8, 1),
    (40, 1024, None, 1), (16, 8192, 8, 1), (8, 16384, 8, 1), (27, 2048, None, 2),
    (32, 1024, 16, 1),      # a lane over both 9-bit slots of an x18 block
]
# the 512x36 mode (PDPW16KD): four lanes of up to 9 bits a block, two of 16, one of 32,
# the accumulator's 8 x int32 words without lanes
SHAPES_36 = [
    (36, 512, None, 2), (36, 512, 9, 1), (72, 512, 8, 2), (72, 512, None, 1),
    (256, 512, None, 2), (256, 512, 8, 1), (256, 512, 32, 1), (64, 256, 16, 1),
]


def _run_amaranth(ram, steps):
    got = []

    async def bench(ctx):
        for waddr, wdata, wen, reads in steps:
            ctx.set(ram.write.addr, waddr)
            ctx.set(Value.cast(ram.write.data), wdata)
            ctx.set(ram.write.en, wen)
            for port, (raddr, ren, qen) in zip(ram.read, reads):
                ctx.set(port.addr, raddr)
                ctx.set(port.en, ren)
                ctx.set(port.q_en, qen)
            await ctx.tick()
            got.append([ctx.get(Value.cast(port.q)) for port in ram.read])

    sim = Simulator(ram)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("ahead", list(AHEAD))
@pytest.mark.parametrize("width, depth, granularity, ports", SHAPES[:4])
def test_simulated_reads_are_registered_twice_and_lanes_write_alone(width, depth,
                                                                    granularity, ports,
                                                                    ahead):
    rng = random.Random(width * depth)
    write_ahead, read_ahead = AHEAD[ahead]
    ram = BlockRAM(unsigned(width), depth, granularity=granularity, read_ports=ports,
                   write_ahead=write_ahead, read_ahead=read_ahead)
    lanes = width // granularity if granularity else 1
    steps = drive = _stimulus(rng, depth, width, lanes, ports, 400, collide=False)
    if ahead:
        steps, drive = _driven_ahead(steps, ports, write_ahead, read_ahead)
    want = _reference(steps, width, granularity, ports)
    got = _run_amaranth(ram, drive)
    checked = 0
    for step, (g, w) in enumerate(zip(got, want)):
        for i in range(ports):
            if w[i] is not None:
                assert g[i] == w[i], f"step {step} port {i}: {g[i]:#x}, want {w[i]:#x}"
                checked += 1
    assert checked > 200
    assert READ_LATENCY == 2


def test_latency_is_two_edges_exactly():
    ram = BlockRAM(unsigned(8), 16)
    steps = [(a, 100 + a, 1, [(0, 1, 1)]) for a in range(16)]      # fill
    steps += [(0, 0, 0, [(a, 1, 1)]) for a in range(16)] + [(0, 0, 0, [(0, 1, 1)])] * 2
    got = _run_amaranth(ram, steps)
    # the address given in step 16 + a is on q after the edge ending step 17 + a
    assert [g[0] for g in got[17:33]] == [100 + a for a in range(16)]


def test_simulation_poisons_a_read_of_the_address_being_written():
    """A read meeting a write of its address at the same edge gets the written lanes
    inverted (the block does not define it), the other lanes as stored."""
    ram = BlockRAM(data.ArrayLayout(unsigned(8), 4), 32, granularity=8)
    steps = [(5, 0x44332211, 0b1111, [(0, 1, 1)]),
             (5, 0xAABBCCDD, 0b0101, [(5, 1, 1)]),      # collides in lanes 0 and 2
             (0, 0, 0, [(5, 1, 1)]), (0, 0, 0, [(5, 1, 1)]), (0, 0, 0, [(5, 1, 1)])]
    got = [g[0] for g in _run_amaranth(ram, steps)]
    assert got[2] == 0x44332211 ^ 0x00FF00FF          # the old word, lanes 0, 2 inverted
    assert got[3] == got[4] == 0x44BB22DD               # the write landed, by lane


def test_block_count_and_widths():
    assert [block_width(d) for d in (1, 1024, 1025, 2048, 4096, 8192, 16384, 16385)] == \
        [18, 18, 9, 9, 4, 2, 1, None]
    assert blocks_needed(64, 4096, 8, read_ports=2) == 32     # 8x8 activations: 4-bit blocks
    assert blocks_needed(512, 2048, 8) == 64                   # 8x8 weights: a byte a block
    assert blocks_needed(40, 1024, 8) == 3                     # 5 lanes, two a block
    assert blocks_needed(32, 1024, 16) == 2                    # a 16-bit lane fills an x18
    # up to 512 words, x36 blocks where they are no more than x18 ones
    assert [instance_width(256, d) for d in (512, 513, 16)] == [36, 18, 36]
    assert blocks_needed(256, 512) == 8                        # the 8x8 accumulators
    assert blocks_needed(256, 512, 8) == 8                     # 4 lanes a block
    assert blocks_needed(1024, 512, 8) == 32                   # 32x4 weights
    assert blocks_needed(72, 512, 8) == 3                      # 9 lanes: 4, 4 and 1
    assert blocks_needed(64, 256, 16) == 2                     # two 16-bit lanes a block
    assert blocks_needed(256, 512, 32) == 8                    # an int32 lane a block
    assert blocks_needed(72, 512, 24) == 3 and instance_width(72, 512, 24) == 36
    assert instance_width(18, 512) == 36                       # a tie takes the x36 block
    # q_en held low: no x36 block (its low half's output register ignores OCER), so a
    # 512x128 PARAM memory (the 12F's) stays yosys's, in its four 36-bit blocks
    assert instance_width(128, 512, 8, q_hold=True) == 18
    assert not instantiates(128, 512, 8, q_hold=True) and instantiates(128, 512, 8)


@pytest.mark.parametrize("width, depth, granularity, ports, ahead",
                         [(*shape, "") for shape in SHAPES + SHAPES_36]
                         # a copy of the write's (read's) address and enables for every
                         # 3 blocks
                         + [(64, 4096, 8, 2, "write_ahead"), (256, 512, 8, 1, "write_ahead"),
                            (64, 4096, 8, 2, "read_ahead"), (256, 512, 8, 2, "both_ahead")])
def test_ecp5_blocks_match_the_simulation(tmp_path, width, depth, granularity, ports,
                                          ahead):
    """The DP16KD or PDPW16KD instances (OUTREG), under Icarus with the blocks' models,
    read what the reference says, en, q_en and byte lanes included; a read meeting a write
    of its address is X there."""
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not found; apt-get install iverilog")
    from amaranth.back import verilog
    write_ahead, read_ahead = AHEAD[ahead]
    ram = BlockRAM(unsigned(width), depth, granularity=granularity, read_ports=ports,
                   write_ahead=write_ahead, read_ahead=read_ahead)
    lanes = width // granularity if granularity else 1
    ports_list = [ram.write.addr, ram.write.data, ram.write.en]
    for port in ram.read:
        ports_list += [port.addr, port.en, port.q_en, port.q]
    text = verilog.convert(ram, name="ram", platform=_ECP5(), ports=ports_list)
    cell = "PDPW16KD" if instance_width(width, depth, granularity) == 36 else "DP16KD"
    assert re.findall(r"^\s*(\w+) #\(", text, re.M) == \
        [cell] * blocks_needed(width, depth, granularity, ports)
    assert text.count('"OUTREG"') == blocks_needed(width, depth, granularity, ports)
    for what, group in (("write", write_ahead), ("read", read_ahead)):
        # one register copy of the address for each `group` blocks (of read port 0)
        copies = set(re.findall(rf"keep_copy__{what}_addr_(\d+)", text))
        per_port = blocks_needed(width, depth, granularity)
        want = -(-per_port * (ports if what == "write" else 1) // group) if group else 0
        assert len(copies) == want, (what, sorted(copies))
    rng = random.Random(depth + width)
    steps = drive = _stimulus(rng, depth, width, lanes, ports, 300, collide=True)
    if ahead:
        steps, drive = _driven_ahead(steps, ports, write_ahead, read_ahead)
    want = _reference(steps, width, granularity, ports)
    # amaranth names the ports after the signature's paths
    decl = dict((m.group(2), m.group(1)) for m in
                re.finditer(r"(input|output) (?:wire )?(?:\[\d+:0\] )?\\?([\w.$]+)", text))
    pins = [n for n in decl if n not in ("clk", "rst")]
    wa, wd, we = (f"write__{x}" for x in ("addr", "data", "en"))
    assert {wa, wd, we} <= set(pins), pins
    lines = []
    for waddr, wdata, wen, reads in drive:
        line = f"    {wa} = {waddr}; {wd} = {width}'d{wdata}; {we} = {wen};"
        for i, (raddr, ren, qen) in enumerate(reads):
            line += (f" read__{i}__addr = {raddr}; read__{i}__en = {ren};"
                     f" read__{i}__q_en = {qen};")
        shows = " ".join(f'$display("%0d", read__{i}__q);' for i in range(ports))
        lines.append(line + f" @(posedge clk); #1 {shows}")
    widths = {n: re.search(rf"(?:input|output) (?:wire )?(\[\d+:0\] )?\\?{re.escape(n)}\b",
                           text).group(1) or "" for n in pins}
    regs = "\n".join(f"  {'wire' if decl[n] == 'output' else 'reg'} {widths[n]}{n};"
                     for n in pins)
    conns = ", ".join(f".{n}({n})" for n in pins)
    (tmp_path / "ram.v").write_text(text)
    (tmp_path / "bench.v").write_text(f"""
module bench;
  reg clk = 0, rst = 0;
{regs}
  always #5 clk = ~clk;
  ram dut(.clk(clk), .rst(rst), {conns});
  initial begin
{chr(10).join(lines)}
    $finish;
  end
endmodule
""")
    subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "sim"), "-s", "bench",
                    str(tmp_path / "bench.v"), str(tmp_path / "ram.v"), *map(str, MODELS)],
                   check=True, capture_output=True, text=True)
    run = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], capture_output=True,
                         text=True)
    assert run.returncode == 0 and "FATAL" not in run.stdout.upper(), run.stdout[-2000:]
    out = run.stdout.split()
    assert len(out) == len(drive) * ports
    checked = collided = 0
    for step, w in enumerate(want):
        for i in range(ports):
            g = out[step * ports + i]
            if w[i] is None:
                collided += "x" in g.lower()
                continue
            assert "x" not in g.lower() and int(g) == w[i], \
                f"step {step} port {i}: the blocks gave {g}, the reference {w[i]}"
            checked += 1
    assert checked > 150


def test_ecp5_keeps_yosys_mapping_where_it_is_cheaper():
    """Yosys's mapping and a fabric register where the blocks would be more than yosys's
    (72 bits in 24-bit lanes: 3 x36 blocks, yosys counts 2), where yosys takes LUT RAM
    (a 32-word program memory: 128 DPR16X4 cost less than 8 blocks; at 64 words they
    tie and the blocks stay), and with initial contents."""
    from amaranth.back import verilog
    assert fewest_blocks(72, 512, 24) == 2 and not instantiates(72, 512, 24)
    assert lutram_cheaper(256, 32, 8) and not instantiates(256, 32, 8)
    assert not lutram_cheaper(256, 64, 8) and instantiates(256, 64, 8)
    assert instantiates(256, 512) and instantiates(1024, 512, 8)
    assert instantiates(64, 4096, 8) and instantiates(512, 2048, 8) and instantiates(128, 1024, 8)
    for ram in (BlockRAM(unsigned(72), 512, granularity=24),
                BlockRAM(unsigned(256), 32, granularity=8),
                BlockRAM(unsigned(8), 16, init=[1, 2, 3])):
        ports = [ram.write.addr, ram.write.data, ram.write.en, ram.read[0].addr, ram.read[0].q]
        text = verilog.convert(ram, name="ram", platform=_ECP5(), ports=ports)
        assert "DP16KD" not in text and "PDPW16KD" not in text


def test_ecp5_512x256_synthesizes_to_eight_registered_pdpw16kd(tmp_path):
    """The 8x8's accumulator memory through yosys's synth_ecp5: 8 PDPW16KD with their
    output register and nothing else but the blocks' write enables (no fabric register
    in front of q)."""
    from amaranth.back import verilog
    from boards.toolchain import environment
    yosys = environment("ecp5")["YOSYS"]
    ram = BlockRAM(unsigned(256), 512)
    port = ram.read[0]
    text = verilog.convert(ram, name="ram", platform=_ECP5(),
                           ports=[ram.write.addr, ram.write.data, ram.write.en, port.addr,
                                  port.en, port.q_en, port.q])
    (tmp_path / "ram.v").write_text(text)
    subprocess.run([yosys, "-q", "-p", "read_verilog ram.v; synth_ecp5 -top ram; "
                    "write_json ram.json"], cwd=tmp_path, check=True, capture_output=True)
    cells = json.loads((tmp_path / "ram.json").read_text())["modules"]["ram"]["cells"]
    types = sorted(c["type"] for c in cells.values())
    assert types == ["PDPW16KD"] * 8, types
    assert all(c["parameters"]["REGMODE"] == "OUTREG" for c in cells.values())
