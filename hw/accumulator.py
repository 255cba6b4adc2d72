"""Accumulators: the array's per-pixel sums added up over the K-steps of a pixel tile.

Every beat carries C int32 sums for one pixel of the tile (`addr`, 0..depth-1) and marks
whether it is the pixel's first step (start from zero) and/or its last (send the total to
the post-processor instead of storing it). So one C-lane memory of `depth` entries
serves (at depth 1, one-pixel tiles, a register: `Accumulator._running`): pixel tiles
follow each other without a drain phase, because a tile's last step
streams out while the next tile's first step overwrites.

With `max` high the lanes keep a running maximum instead (standalone max pools, fed
straight from the activation feeder); a beat marked `skip` (a padding pixel) leaves it
unchanged, and a window's first beat, if skipped, starts it at the lowest value.

Pipeline (ACC_LATENCY = 5), for a beat in cycle t:

    t     read the pixel's partial total (address into the block RAM; with
          `read_ahead`, `addr_ahead` in t-1 into registers beside the blocks)
    t+1   the read data lands in the block RAM's output register (hw.bram): the block's
          output without it arrives 5.8 ns after the clock on an ECP5
    t+2   the stored total into a fabric register (beside the blocks)
    t+3   the operand other than the newest total: the stored total, or one of the
          four older totals still in flight (for a pixel's first step 0, or the
          lowest value in max mode), into a register (beside the adds)
    t+4   add (or max) of the newest total and of that operand, side by side; each
          compare's carry out picks the value or its own add's sum, the newest's flag
          picks between those, and the total goes into a register: the write data, or
          the output
    t+5   the write lands (edge ending t+5); the output is valid in t+5

(The stage at t+2: with the block's output register straight into the choice of the
operand, that register sat between the blocks and the adds, and its route into the
carry chains, 3.4-4.7 ns, made the add stage the slowest path of every 125 MHz build.)

A beat reads memory that is up to five totals stale: the beats of the five cycles
before it are computed or written after its read. Each of those totals is kept in a
register (the write-data register and three older copies, and the one being added) and
forwarded when its address matches, the newest first; the match flags are compared
stages early, between registers. Two adds then take the two possible operands (the
total added the cycle before, or the operand picked a stage ahead) straight from
registers, and the choice comes after the carry chains: a one-pixel tile stepping every
cycle (linear layers) accumulates every cycle with no stall, and that loop is a carry
chain and a LUT level. (One add behind a 2-way choice of its operand, a LUT and two
routes more, was the 8x8's slowest path at 90 MHz.)
"""

from __future__ import annotations

import itertools

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .bram import BlockRAM
from .fanout import KEEP_PREFIX, copies

ACC_LATENCY = 5   # beat in cycle t -> its total (last step) on `out` in cycle t + 5
RUNNING_LATENCY = 3   # the same at depth 1 (`Accumulator._running`)


def beat_layout(cols: int, depth: int, acc_width: int = 32) -> data.StructLayout:
    """One accumulator input beat: the array's sums for one pixel of the tile."""
    return data.StructLayout({
        "sums": data.ArrayLayout(signed(acc_width), cols),
        "addr": unsigned(max(1, ceil_log2(depth))),
        "first": unsigned(1),
        "last": unsigned(1),
        "skip": unsigned(1),    # max mode: a padding pixel, not a value
    })


class Accumulator(wiring.Component):
    """C lanes × `depth` pixels of int32 partial totals."""

    def __init__(self, cols: int, depth: int, acc_width: int = 32, *,
                 max_bits: int | None = None, read_ahead: int = 0):
        for what, value in (("accumulator lanes", cols), ("accumulator depth", depth),
                            ("accumulator width", acc_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer, not {value!r}")
        if max_bits is not None and not 1 <= max_bits < acc_width:
            raise ValueError(f"max_bits must be from 1 to {acc_width - 1}, not {max_bits!r}")
        if isinstance(read_ahead, bool) or not isinstance(read_ahead, int) or read_ahead < 0:
            raise ValueError(f"read_ahead must be 0 or a number of blocks, not {read_ahead!r}")
        self.cols, self.depth, self.acc_width = cols, depth, acc_width
        self.max_bits = max_bits
        # depth 1 has no memory to read ahead of
        self.read_ahead = read_ahead if depth > 1 else 0
        lanes = data.ArrayLayout(signed(acc_width), cols)
        members = {
            "beat": In(stream.Signature(beat_layout(cols, depth, acc_width), always_ready=True)),
            "out": Out(stream.Signature(lanes, always_ready=True)),
            "max": In(1),       # holds still from a cycle before a beat to its add
            "out_next": Out(1),  # out.valid of the next cycle (for registers beside it)
        }
        if self.read_ahead:
            # the next cycle's beat.payload.addr (any value before an idle cycle)
            members["addr_ahead"] = In(beat_layout(cols, depth, acc_width)["addr"].shape)
        super().__init__(members)

    @property
    def latency(self) -> int:
        """Cycles from a beat to its total on `out`: :data:`ACC_LATENCY`, or at depth 1
        :data:`RUNNING_LATENCY` (a register: nothing to read or pick). ACC_LATENCY bounds
        both."""
        return ACC_LATENCY if self.depth > 1 else RUNNING_LATENCY

    def _above(self, a, b):
        """a > b in max mode. With `max_bits`, every value is a `max_bits`-bit integer
        (the feeder's activations) or the lowest (a skipped first beat): their low
        `max_bits` bits and the sign order them (the lowest's low bits are 0, below any
        such integer's), a short carry chain instead of one over all the bits: the low
        bits under the sign twice are a (`max_bits` + 2)-bit two's complement integer
        of the same order, and the difference of two such fits in as many bits, so its
        top bit is whether b - a < 0. That is a sum bit of the chain, no LUT before or
        after it: a compare yosys maps became LUTs around a piece of chain (two LUT6
        levels), and an unsigned borrow needed the sign inverted, a LUT in front of the
        chain for each operand (the 125 MHz builds' slowest path)."""
        if self.max_bits is None:
            return a > b
        m = self.max_bits
        key = lambda x: Cat(x[:m], x[-1], x[-1])
        return (key(b) - key(a))[m + 1]

    def elaborate(self, platform):
        m = Module()
        C, W = self.cols, self.acc_width
        lanes = data.ArrayLayout(signed(W), C)
        layout = beat_layout(C, self.depth, W)
        if self.depth == 1:
            return self._running(m, lanes, layout)
        # read_ahead: the address a cycle early, into registers beside the blocks (one
        # copy for each `read_ahead` of them), as hw.bram does; the word lands as before
        m.submodules.mem = mem = BlockRAM(lanes, self.depth, read_ahead=self.read_ahead)
        wr, rd = mem.write, mem.read[0]

        # The beat's stages: beat[k] holds it in cycle t+k.
        beat = [self.beat.payload]
        valid = [self.beat.valid]
        for k in range(1, 5):
            b = Signal(layout, name=f"beat{k}", reset_less=True)
            v = Signal(name=f"valid{k}")
            m.d.sync += [b.eq(beat[-1]), v.eq(valid[-1])]
            beat.append(b)
            valid.append(v)

        # whether the beat in stage k has a total that is written (valid, not its last)
        written = [v & ~b.last for v, b in zip(valid, beat)]

        # t: read the partial total of the beat's pixel.
        m.d.comb += [rd.addr.eq(self.addr_ahead if self.read_ahead else beat[0].addr),
                     rd.en.eq(1)]

        # Totals in flight, newest first: fwd[0] is the write-data register (its write
        # lands at the edge ending this cycle), fwd[1] .. fwd[3] the totals written one to
        # three edges ago.
        # (fwd[0] kept apart from the output register, which takes the same total: as
        # one register, its routes to the blocks, to the adds and to the post-processor
        # were a placement compromise, and the write data a 7.1 ns route)
        fwd = [Signal(lanes, name=f"{KEEP_PREFIX}fwd{k}_data" if k == 0 else f"fwd{k}_data",
                      reset_less=True) for k in range(4)]
        fwd_addr = [Signal.like(beat[1].addr, name=f"fwd{k}_addr", reset_less=True)
                    for k in range(2)]
        fwd_en = [Signal(name=f"fwd{k}_en") for k in range(2)]

        # Which of the totals before the newest the beat needs: in t+3, where it is
        # picked, they are fwd[0] .. fwd[3] (the beats two to five before it); the
        # selects are set in t+2, one-hot (the newest matching wins), one copy per lane
        # (hw.fanout), from matches compared in t+1, between registers: the beat
        # against those four beats, then in beat[3], beat[4] (choosing its operand and
        # adding), fwd[0] and fwd[1] (address compares and the priority after them in
        # one stage were six LUT levels).
        # Each match is a register with the other total's enable in it (that beat's
        # valid and not last, or the enable fwd[0] or fwd[1] will have): with the
        # enables after the registers, the picks were three LUT levels.
        hit = [Signal(name=f"hit{k}", reset_less=True) for k in range(4)]
        m.d.sync += [hit[0].eq(written[3] & (beat[3].addr == beat[1].addr)),
                     hit[1].eq(written[4] & (beat[4].addr == beat[1].addr)),
                     hit[2].eq(fwd_en[0] & (fwd_addr[0] == beat[1].addr)),
                     hit[3].eq(fwd_en[1] & (fwd_addr[1] == beat[1].addr))]
        # (reset_less: the selects matter only for valid beats, and a reset's fan-out
        # into them was a slow path of its own)
        pick = [copies(m, platform, hit[0], C, "pick0", reset_less=True),
                copies(m, platform, ~hit[0] & hit[1], C, "pick1", reset_less=True),
                copies(m, platform, ~hit[0] & ~hit[1] & hit[2], C, "pick2", reset_less=True),
                copies(m, platform, ~hit[0] & ~hit[1] & ~hit[2] & hit[3], C, "pick3",
                       reset_less=True)]

        # t+2: the stored total (the block's output register) into a register of the
        # fabric, beside the blocks.
        stored = Signal(lanes, reset_less=True)
        m.d.sync += stored.eq(rd.q)

        # t+3: the stored total or the older one in flight; for a pixel's first step 0
        # (add) or the lowest value (max), so that neither the add nor the compare needs
        # `first`.
        lowest = -(1 << (W - 1))
        first3 = copies(m, platform, beat[2].first, C, "first3", reset_less=True)
        start = Mux(self.max, lowest, 0)
        other = Signal(lanes, reset_less=True)
        for c in range(C):
            m.d.sync += other[c].eq(Mux(first3[c], start,
                                        Mux(pick[0][c], fwd[0][c],
                                            Mux(pick[1][c], fwd[1][c],
                                                Mux(pick[2][c], fwd[2][c],
                                                    Mux(pick[3][c], fwd[3][c],
                                                        stored[c]))))))
        # the newest: the beat just before, now adding in t+3 (not for a first step);
        # its address compare a cycle earlier, between registers (in t+2 against the
        # beat before it), for the copies to take one LUT (four levels before)
        # (with the enables in it: valid and not last, the beat before; not first, this)
        follows = Signal(reset_less=True)
        m.d.sync += follows.eq(written[3] & ~beat[2].first & (beat[3].addr == beat[2].addr))
        newest = copies(m, platform, follows, C, "newest", reset_less=True)

        # t+4: add, then hand the total on to be written or sent out.
        total = Signal(lanes)
        # registered in t+3: the value compared, max mode's value (a skipped beat's the
        # lowest, and the lowest in add mode, so that the compare never takes it), and
        # the adds' addend, 0 in max mode, so that the adds pass the older totals through
        # (a copy of each for either add: one register feeding both carry chains and
        # both choices was a 2.9 ns route into one of them)
        values = [Signal(lanes, reset_less=True, name=f"{KEEP_PREFIX}values_{k}")
                  for k in range(2)]
        addend = [Signal(lanes, reset_less=True, name=f"{KEEP_PREFIX}addend_{k}")
                  for k in range(2)]
        # Their choices in copies a lane and a register set each, set in t+2 (`max`
        # holds still from the cycle before a beat): `max`, a register beside the
        # sequencer, and `skip` each reached all 1,024 bits of both (2.5 ns routes and
        # a LUT in front of them).
        to_lowest = [copies(m, platform, beat[2].skip | ~self.max, C, f"to_lowest{k}",
                            reset_less=True) for k in range(2)]
        no_addend = [copies(m, platform, self.max, C, f"no_addend{k}", reset_less=True)
                     for k in range(2)]
        for k, c in itertools.product(range(2), range(C)):
            m.d.sync += [values[k][c].eq(Mux(to_lowest[k][c], lowest, beat[3].sums[c])),
                         addend[k][c].eq(Mux(no_addend[k][c], 0, beat[3].sums[c]))]
        for c in range(C):
            picked = []
            for k, old in enumerate((fwd[0][c], other[c])):
                value = values[k][c]
                # Assignment truncates: totals wrap at acc_width like the array's sums.
                added = Signal(signed(W), name=f"added{c}_{k}")
                m.d.comb += added.eq(addend[k][c] + old)
                # Max pool: the running maximum, the value when it is above the older
                # total (a window's first beat compares with the lowest, and a skipped
                # one is the lowest, so either gives the value); never in add mode.
                # Each carry out picks its own add's bits straight: one LUT level.
                picked.append(Mux(self._above(value, old), value, added))
            m.d.comb += total[c].eq(Mux(newest[c], *picked))
        last = beat[4].last
        # the output register without a reset (read only beside out.valid): with one,
        # the reset's fan-out reached its 256 bits' synchronous resets on the 8x8
        out_q = Signal(lanes, reset_less=True, name=f"{KEEP_PREFIX}out")
        m.d.sync += [
            fwd[0].eq(total), fwd_addr[0].eq(beat[4].addr), fwd_en[0].eq(written[4]),
            fwd[1].eq(fwd[0]), fwd_addr[1].eq(fwd_addr[0]), fwd_en[1].eq(fwd_en[0]),
            fwd[2].eq(fwd[1]), fwd[3].eq(fwd[2]),
            self.out.valid.eq(valid[4] & last), out_q.eq(total),
        ]
        m.d.comb += self.out.payload.eq(out_q)
        m.d.comb += self.out_next.eq(valid[4] & last)
        # t+5: the write lands.
        m.d.comb += [wr.addr.eq(fwd_addr[0]), wr.data.eq(fwd[0]), wr.en.eq(fwd_en[0])]
        # A read meets a write of its address at the same edge when a beat's pixel was
        # written five beats before: that total is fwd[3] in t+3, so the block's
        # undefined read of it is never used.
        return m

    def _running(self, m, lanes, layout):
        """Depth 1 (one-pixel tiles: a pixel's beats come one after another, no other
        pixel's between them): the total is a register, with no memory to read and no
        writes in flight to forward, and no stage to pick its operand in: a cycle less
        (`latency`)."""
        C, W = self.cols, self.acc_width
        beat1 = Signal(layout, reset_less=True)
        beat2 = Signal(layout, reset_less=True)
        valid1 = Signal()
        valid2 = Signal()
        running = Signal(lanes, reset_less=True)
        m.d.sync += [beat1.eq(self.beat.payload), valid1.eq(self.beat.valid),
                     beat2.eq(beat1), valid2.eq(valid1)]
        total = Signal(lanes)
        lowest = -(1 << (W - 1))
        for c in range(C):
            value = Mux(beat2.skip, lowest, beat2.sums[c])
            with m.If(self.max):
                m.d.comb += total[c].eq(Mux(beat2.first | self._above(value, running[c]),
                                            value, running[c]))
            with m.Else():
                m.d.comb += total[c].eq(beat2.sums[c] + Mux(beat2.first, 0, running[c]))
        with m.If(valid2):
            m.d.sync += running.eq(total)
        m.d.sync += [self.out.valid.eq(valid2 & beat2.last), self.out.payload.eq(total)]
        m.d.comb += self.out_next.eq(valid2 & beat2.last)
        return m
