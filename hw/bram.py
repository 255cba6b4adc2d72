"""A block RAM whose read data comes out of the block's own output register.

``BlockRAM`` is a memory with one write port and one or more read ports. A read port's
``q`` holds the word at the address given two clock edges before
(:data:`READ_LATENCY`):

- edge 0: when ``en`` is high, the word at ``addr`` is read (the block's read latch;
  ``en`` low holds the last word read);
- edge 1: when ``q_en`` is high, that word goes into the output register, ``q``.

That is a synchronous read port followed by a register, which is what every memory of
the accelerator had before this block existed: a block RAM's output went into a fabric
register before any logic. On an ECP5 the output without its register arrives 5.8 ns
after the clock (nextpnr's model, speed grade 6), and the route from the block-RAM column
to that register came on top: 9-12 ns, the longest class of paths in the 8x8 build.
With ``REGMODE = "OUTREG"`` the block's own register holds ``q`` and it arrives 0.96 ns
after the clock, so the route into the logic has most of the cycle.

Yosys maps a memory to ``DP16KD`` without that register and cannot absorb the one after
it, so on an ECP5 platform this component instantiates the blocks itself: one port
writes, the other reads, each read port has its own copy of the contents (a block has
two ports). The word is split over blocks of 1, 2, 4, 9 or 18 bits by the depth (DP16KD:
16384, 8192, 4096, 2048 or 1024 entries a block) or, up to 512 words, of 36 bits
(PDPW16KD, the block's pseudo-dual-port mode, where it takes no more blocks). A byte
lane never shares a 9-bit slot with a write enable other than its own (x18 and x36
blocks enable their slots one by one: two lanes of up to 9 bits share an x18 block, four
an x36 one). Where that takes more blocks than yosys's mapping would, where yosys would
take LUT RAM (`instantiates`) or where there are initial contents, an ECP5 build gets
yosys's mapping and a fabric register instead.

The ports behave alike everywhere but in one case, where the block does not define
what it reads: a read of the address being written at the same edge. Yosys emulated
read-first behaviour for every memory (a delayed write and a bypass mux: ~1,700 LUT4
and ~700 FF on the 8x8); here no user may rely on it. In simulation (no platform) such a
read returns the word with every bit inverted in each lane being written, so a test of a
block that used it sees the damage. Elsewhere (iCE40, other platforms) it is an
amaranth ``Memory`` and a fabric register, as before.
"""

from __future__ import annotations

from amaranth.hdl import (Cat, ClockSignal, Const, Instance, Module, Shape, Signal, Value,
                          unsigned)
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .fanout import KEEP_PREFIX

__all__ = ["BlockRAM", "READ_LATENCY", "ECP5_MODES", "ECP5_LUTRAM", "ECP5_BRAM_COST",
           "block_width", "blocks_needed", "fewest_blocks", "instance_width", "instantiates",
           "lutram_cheaper"]

READ_LATENCY = 2          # address in cycle t -> its word on q in t + 2
# (depth, data width) of one block in each mode; 512x36 is the pseudo-dual-port one
# (PDPW16KD: one write and one read port, both 36 bits wide)
ECP5_MODES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
_DEPTHS = {width: depth for depth, width in ECP5_MODES}
_ADDR_BITS = 14
_SLOT = 9                 # bits one byte enable writes (x18: ADA0, ADA1; x36: BE0..BE3)
# yosys's ECP5 LUT RAM cell (TRELLIS_DPR16X4: depth, width, cost) and its cost of a block
# RAM: a memory whose cells cost less than its blocks goes to LUT RAM
ECP5_LUTRAM = (16, 4, 4)
ECP5_BRAM_COST = 128


def block_width(depth: int) -> int | None:
    """The widest DP16KD data width whose depth holds `depth` entries; None over 16384."""
    for width in (18, 9, 4, 2, 1):
        if depth <= _DEPTHS[width]:
            return width
    return None


def _slices(width: int, granularity: int | None, bw: int):
    """The word's bits over blocks `bw` bits wide: a list of blocks, each a list of
    (word bit, block data bit, width, lane) slices; lane None without byte enables.

    A lane takes whole 9-bit slots of a block, as many lanes a block as fit; a lane wider
    than a block, or in a block without slots (under 9 bits), has blocks of its own."""
    if granularity is None:
        return [[(lo, 0, min(bw, width - lo), None)] for lo in range(0, width, bw)]
    lanes = width // granularity
    span = -(-granularity // _SLOT) * _SLOT          # block bits one lane takes
    per_block = bw // span if bw >= _SLOT else 0
    if per_block:
        return [[(lane * granularity, span * (lane - first), granularity, lane)
                 for lane in range(first, min(first + per_block, lanes))]
                for first in range(0, lanes, per_block)]
    return [[(lane * granularity + lo, 0, min(bw, granularity - lo), lane)]
            for lane in range(lanes) for lo in range(0, granularity, bw)]


def instance_width(width: int, depth: int, granularity: int | None = None, *,
                   q_hold: bool = False) -> int | None:
    """The data width of the blocks a BlockRAM of this shape instantiates on an ECP5: 36
    (PDPW16KD) up to 512 words where that takes no more blocks than the DP16KD of
    `block_width`, which it is otherwise; None over 16384 words.

    `q_hold`: a read port's ``q_en`` goes low. Then never 36: nextpnr drives the output
    register of a PDPW16KD's low 18 bits (its port A half) with OCEA tied high, so only
    the high half would hold."""
    bw = block_width(depth)
    if bw is None or depth > _DEPTHS[36] or q_hold:
        return bw
    if len(_slices(width, granularity, 36)) <= len(_slices(width, granularity, bw)):
        return 36
    return bw


def blocks_needed(width: int, depth: int, granularity: int | None = None,
                  read_ports: int = 1, *, q_hold: bool = False) -> int:
    """Blocks (DP16KD or PDPW16KD, `instance_width`) a BlockRAM of this shape
    instantiates on an ECP5: one read port's worth times `read_ports`."""
    bw = instance_width(width, depth, granularity, q_hold=q_hold)
    return len(_slices(width, granularity, bw)) * read_ports


def fewest_blocks(width: int, depth: int, granularity: int | None = None,
                  modes=ECP5_MODES, byte_lane: int | None = 9) -> int:
    """The fewest blocks one copy of the memory takes in any of `modes` ((depth, width)
    of one block; the ECP5's by default, its 512x36 mode included), the way yosys maps
    it: blocks stacked for depth, and with byte writes (`granularity` 8) one byte per
    `byte_lane`-bit lane where a mode has them (None: bit enables)."""
    best = None
    for mode_depth, mode_width in modes:
        data_bits = mode_width
        if granularity == 8 and byte_lane and mode_width >= byte_lane:
            data_bits = mode_width // byte_lane * 8
        count = -(-depth // mode_depth) * -(-width // data_bits)
        best = count if best is None else min(best, count)
    return best


def lutram_cheaper(width: int, depth: int, granularity: int | None = None) -> bool:
    """Whether yosys maps a memory of this shape to ECP5 LUT RAM, not block RAM: its
    cells cost less than its fewest blocks (a tie keeps the blocks)."""
    cell_depth, cell_width, cost = ECP5_LUTRAM
    cells = -(-depth // cell_depth) * -(-width // cell_width)
    return cells * cost < fewest_blocks(width, depth, granularity) * ECP5_BRAM_COST


def instantiates(width: int, depth: int, granularity: int | None = None, *,
                 q_hold: bool = False) -> bool:
    """Whether a BlockRAM of this shape is its own blocks on an ECP5: when they are no
    more than the fewest and yosys would not take LUT RAM instead. Otherwise it stays
    yosys's, with a fabric register: a 32-word program memory (LUT RAM), or 512 words
    whose lanes fill x36 blocks worse than yosys's count of them (72 bits in 24-bit
    lanes)."""
    return (block_width(depth) is not None
            and not lutram_cheaper(width, depth, granularity)
            and blocks_needed(width, depth, granularity, q_hold=q_hold)
            <= fewest_blocks(width, depth, granularity))


class BlockRAM(wiring.Component):
    """`depth` words of `shape`, one write port and `read_ports` read ports with
    registered data (:data:`READ_LATENCY`).

    Parameters
    ----------
    shape : shape-castable
        The word; an ``ArrayLayout`` of 8-bit elements with ``granularity=8`` gives one
        write enable a byte.
    depth : int
    granularity : int or None
        Bits per write-enable lane (the word's width must be a multiple), or one enable.
    read_ports : int
    init : sequence or None
        Initial words (simulation and non-ECP5 builds; an ECP5 build with contents uses
        yosys's inferred blocks and a fabric register, with the same behaviour).
    q_hold : bool
        A read port's ``q_en`` goes low (`instance_width`: no x36 blocks then).
    write_ahead : int
        0, or ``write.addr`` and ``write.en`` come a cycle ahead of ``write.data``: the
        memory registers them, on an ECP5 one copy for each `write_ahead` blocks, so
        that one register set (or a mux after it) is not a route to every block of a
        wide memory.
    read_ahead : int
        The same for the first read port: 0, or ``read[0].addr`` and ``read[0].en`` come a
        cycle ahead and the memory registers them, one copy for each `read_ahead` blocks
        on an ECP5 (its word is on ``q`` two edges after those registers, three after
        the port).

    Ports
    -----
    write.addr, write.data, write.en : In
        The word at ``addr`` takes ``data`` in the lanes whose ``en`` bit is high, at the
        edge ending the cycle (with `write_ahead`, ``addr`` and ``en`` of the cycle
        before).
    read[i].addr, read[i].en (default 1), read[i].q_en (default 1) : In
    read[i].q : Out
        See the module documentation.
    """

    def __init__(self, shape, depth: int, *, granularity: int | None = None,
                 read_ports: int = 1, init=None, q_hold: bool = False,
                 write_ahead: int = 0, read_ahead: int = 0):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"memory depth must be a positive integer, not {depth!r}")
        if isinstance(read_ports, bool) or not isinstance(read_ports, int) or read_ports < 1:
            raise ValueError(f"read_ports must be a positive integer, not {read_ports!r}")
        width = Shape.cast(shape).width
        if granularity is not None and (granularity < 1 or width % granularity):
            raise ValueError(f"granularity {granularity} does not divide the word's "
                             f"{width} bits")
        self.shape, self.depth, self.width = shape, depth, width
        self.granularity = granularity
        self.lanes = 1 if granularity is None else width // granularity
        self.read_ports = read_ports
        self.q_hold = q_hold
        for what, ahead in (("write_ahead", write_ahead), ("read_ahead", read_ahead)):
            if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead < 0:
                raise ValueError(f"{what} must be 0 or a number of blocks, not {ahead!r}")
        self.write_ahead, self.read_ahead = write_ahead, read_ahead
        self.init = [self._bits(shape, word) for word in init] if init else []
        abits = max(1, ceil_log2(depth))
        write = wiring.Signature({"addr": Out(abits), "data": Out(shape),
                                  "en": Out(self.lanes)})
        read = wiring.Signature({"addr": Out(abits), "en": Out(1, init=1),
                                 "q_en": Out(1, init=1), "q": In(shape)})
        super().__init__({"write": In(write), "read": In(read).array(read_ports)})

    @staticmethod
    def _bits(shape, word):
        if isinstance(word, int):
            return word
        return Const.cast(shape.const(word)).value

    def elaborate(self, platform):
        m = Module()
        family = getattr(platform, "family", None)
        if family == "ecp5" and not self.init and instantiates(
                self.width, self.depth, self.granularity, q_hold=self.q_hold):
            self._ecp5(m)
        else:
            self._generic(m, poison=platform is None)
        return m

    def _write_regs(self, m, name):
        """The write's address and enables: the ports, or with `write_ahead` registers
        of them (`name` tells copies apart; KEEP_PREFIX: yosys keeps each)."""
        if not self.write_ahead:
            return self.write.addr, self.write.en
        addr = Signal.like(self.write.addr, reset_less=True,
                           name=f"{KEEP_PREFIX}write_addr_{name}")
        en = Signal.like(self.write.en, name=f"{KEEP_PREFIX}write_en_{name}")
        m.d.sync += [addr.eq(self.write.addr), en.eq(self.write.en)]
        return addr, en

    def _read_regs(self, m, i, name):
        """Read port `i`'s address and enable: the port's, or with `read_ahead` (port 0)
        registers of them (`name` tells copies apart; KEEP_PREFIX: yosys keeps each)."""
        port = self.read[i]
        if i or not self.read_ahead:
            return port.addr, port.en
        addr = Signal.like(port.addr, reset_less=True, name=f"{KEEP_PREFIX}read_addr_{name}")
        en = Signal(name=f"{KEEP_PREFIX}read_en_{name}")
        m.d.sync += [addr.eq(port.addr), en.eq(port.en)]
        return addr, en

    def _generic(self, m, *, poison):
        mem = Memory(shape=unsigned(self.width), depth=self.depth, init=self.init)
        m.submodules.mem = mem
        wr = mem.write_port(granularity=self.granularity)
        waddr, wen = self._write_regs(m, "all")
        m.d.comb += [wr.addr.eq(waddr), wr.data.eq(self.write.data), wr.en.eq(wen)]
        g = self.granularity or self.width
        for i, port in enumerate(self.read):
            rd = mem.read_port()
            raddr, ren = self._read_regs(m, i, "all")
            m.d.comb += [rd.addr.eq(raddr), rd.en.eq(ren)]
            word = Signal(self.width, name=f"word{i}")
            m.d.comb += word.eq(rd.data)
            if poison:
                # A read at the address written at the same edge is undefined in a
                # DP16KD: hand the written lanes back inverted.
                hit = Signal(self.lanes, name=f"collide{i}")
                with m.If(ren & (raddr == waddr)):
                    m.d.sync += hit.eq(wen)
                with m.Elif(ren):
                    m.d.sync += hit.eq(0)
                mask = Signal(self.width, name=f"mask{i}")
                m.d.comb += mask.eq(Const(0, self.width))
                for lane in range(self.lanes):
                    with m.If(hit[lane]):
                        m.d.comb += mask[lane * g:(lane + 1) * g].eq(-1)
                word = word ^ mask
            q = Signal(self.width, name=f"q{i}", reset_less=True)
            with m.If(port.q_en):
                m.d.sync += q.eq(word)
            m.d.comb += Value.cast(port.q).eq(q)

    def _ecp5(self, m):
        bw = instance_width(self.width, self.depth, self.granularity, q_hold=self.q_hold)
        wdata = Signal(self.width)
        m.d.comb += wdata.eq(self.write.data)
        blocks = _slices(self.width, self.granularity, bw)
        group = self.write_ahead or len(blocks) * len(self.read)
        writes = [self._write_regs(m, str(k))
                  for k in range(-(-len(blocks) * len(self.read) // group))]
        read_group = self.read_ahead or len(blocks)
        reads = [self._read_regs(m, 0, str(k)) for k in range(-(-len(blocks) // read_group))]
        for i, port in enumerate(self.read):
            q = Signal(self.width, name=f"q{i}")
            m.d.comb += Value.cast(port.q).eq(q)
            for b, slices in enumerate(blocks):
                waddr, wen = writes[(i * len(blocks) + b) // group]
                raddr, ren = reads[b // read_group] if i == 0 else self._read_regs(m, i, "")
                di = Signal(max(bw, 18), name=f"di{i}_{b}")
                do = Signal(max(bw, 18), name=f"do{i}_{b}")
                for word_bit, block_bit, width, _ in slices:
                    m.d.comb += [di[block_bit:block_bit + width].eq(
                                     wdata[word_bit:word_bit + width]),
                                 q[word_bit:word_bit + width].eq(
                                     do[block_bit:block_bit + width])]
                we = Signal(name=f"we{i}_{b}")          # any of the block's lanes
                any_lane, enables = self._enables(slices, bw, wen)
                m.d.comb += we.eq(any_lane)
                block = self._pdpw16kd if bw == 36 else self._dp16kd
                m.submodules[f"ram{i}_{b}"] = block(port, raddr, ren, bw, di, do, we,
                                                    enables, waddr)

    @staticmethod
    def _enables(slices, bw, wen):
        """(whether the block writes, one enable a 9-bit slot of it): a slot's lane's
        enable in `wen`, 0 for a slot no lane takes, 1 for all without lanes."""
        lanes = {lane for *_, lane in slices}
        if lanes == {None}:
            return wen[0], [Const(1)] * (bw // _SLOT)
        enables = []
        for slot in range(bw // _SLOT):
            owner = [lane for _, bit, width, lane in slices
                     if bit <= slot * _SLOT < bit + width]
            enables.append(wen[owner[0]] if owner else Const(0))
        return Cat(wen[lane] for lane in sorted(lanes)).any(), enables

    def _address(self, addr, lsb):
        """A 14-bit block address: `addr` from bit `lsb` up (the bits below select
        within a word, or are byte enables), zeros elsewhere."""
        bits = [Const(0)] * _ADDR_BITS
        for k in range(min(len(addr), _ADDR_BITS - lsb)):
            bits[lsb + k] = addr[k]
        return bits

    def _dp16kd(self, port, raddr, ren, bw, di, do, we, enables, waddr):
        """One DP16KD of `bw`-bit ports: A writes, B reads into its output register."""
        lsb = _ADDR_BITS - ceil_log2(_DEPTHS[bw])
        ada = self._address(waddr, lsb)
        adb = self._address(raddr, lsb)
        if bw == 18:
            ada[0], ada[1] = enables             # x18: ADA0/ADA1 enable DI[8:0] / DI[17:9]
        pins = {}
        pins.update({f"i_ADA{k}": ada[k] for k in range(_ADDR_BITS)})
        pins.update({f"i_ADB{k}": adb[k] for k in range(_ADDR_BITS)})
        pins.update({f"i_DIA{k}": di[k] for k in range(18)})
        pins.update({f"i_DIB{k}": Const(0) for k in range(18)})
        pins.update({f"o_DOB{k}": do[k] for k in range(18)})
        return Instance(
            "DP16KD",
            p_DATA_WIDTH_A=bw, p_DATA_WIDTH_B=bw,
            p_REGMODE_A="NOREG", p_REGMODE_B="OUTREG",
            p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
            p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
            p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED",
            i_CLKA=ClockSignal(), i_CEA=Const(1), i_OCEA=Const(1), i_WEA=we,
            i_RSTA=Const(0), i_CSA0=Const(0), i_CSA1=Const(0), i_CSA2=Const(0),
            i_CLKB=ClockSignal(), i_CEB=ren, i_OCEB=port.q_en, i_WEB=Const(0),
            i_RSTB=Const(0), i_CSB0=Const(0), i_CSB1=Const(0), i_CSB2=Const(0),
            **pins)

    def _pdpw16kd(self, port, raddr, ren, bw, di, do, we, enables, waddr):
        """One PDPW16KD (512x36): the write port's CEW and byte enables BE0..BE3 write,
        the read port reads into the output register (REGMODE OUTREG, enabled by OCER)."""
        adw = self._address(waddr, 0)[:9]              # ADW8..0: the word's address
        adr = self._address(raddr, 5)                  # ADR13..5: the word's address
        pins = {}
        pins.update({f"i_ADW{k}": adw[k] for k in range(9)})
        pins.update({f"i_ADR{k}": adr[k] for k in range(_ADDR_BITS)})
        pins.update({f"i_BE{k}": enables[k] for k in range(4)})
        pins.update({f"i_DI{k}": di[k] for k in range(36)})
        # Lattice numbers DO the other way round from DI: DO[35:18] reads what DI[17:0]
        # wrote (its module generator's netlists, nextpnr's packer: DO[35:18] is DOA)
        pins.update({f"o_DO{k}": do[(k + 18) % 36] for k in range(36)})
        return Instance(
            "PDPW16KD",
            p_DATA_WIDTH_W=36, p_DATA_WIDTH_R=36, p_REGMODE="OUTREG",
            p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
            p_CSDECODE_W="0b000", p_CSDECODE_R="0b000", p_GSR="DISABLED",
            i_CLKW=ClockSignal(), i_CEW=we,
            i_CSW0=Const(0), i_CSW1=Const(0), i_CSW2=Const(0),
            i_CLKR=ClockSignal(), i_CER=ren, i_OCER=port.q_en, i_RST=Const(0),
            i_CSR0=Const(0), i_CSR1=Const(0), i_CSR2=Const(0),
            **pins)
