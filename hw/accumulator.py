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

Pipeline (ACC_LATENCY = 3), for a beat in cycle t:

    t     read the pixel's partial total (address into the block RAM)
    t+1   the read data lands in the block RAM's output register (hw.bram): the block's
          output without it arrives 5.8 ns after the clock on an ECP5
    t+2   add (or max) and register the total: the write data, or the output
    t+3   the write lands (edge ending t+3); the output is valid in t+3

A beat reads memory that is up to three totals stale: the beats of the three cycles
before it are computed or written after its read. Each of those totals is kept in a
register (the write-data register and two older copies) and forwarded when its address
matches, the newest first; the match flags are compared a stage early, between
registers. So a one-pixel tile stepping every cycle (linear layers) accumulates every
cycle with no stall.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .bram import BlockRAM
from .fanout import copies

ACC_LATENCY = 3   # beat in cycle t -> its total (last step) on `out` in cycle t + 3


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

    def __init__(self, cols: int, depth: int, acc_width: int = 32):
        for what, value in (("accumulator lanes", cols), ("accumulator depth", depth),
                            ("accumulator width", acc_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer, not {value!r}")
        self.cols, self.depth, self.acc_width = cols, depth, acc_width
        lanes = data.ArrayLayout(signed(acc_width), cols)
        super().__init__({
            "beat": In(stream.Signature(beat_layout(cols, depth, acc_width), always_ready=True)),
            "out": Out(stream.Signature(lanes, always_ready=True)),
            "max": In(1),       # holds still from a cycle before a beat to its add
        })

    def elaborate(self, platform):
        m = Module()
        C, W = self.cols, self.acc_width
        lanes = data.ArrayLayout(signed(W), C)
        layout = beat_layout(C, self.depth, W)
        if self.depth == 1:
            return self._running(m, lanes, layout)
        m.submodules.mem = mem = BlockRAM(lanes, self.depth)
        wr, rd = mem.write, mem.read[0]

        # t: read the partial total of the beat's pixel.
        m.d.comb += [rd.addr.eq(self.beat.payload.addr), rd.en.eq(1)]
        beat1 = Signal(layout, reset_less=True)
        valid1 = Signal()
        m.d.sync += [beat1.eq(self.beat.payload), valid1.eq(self.beat.valid)]

        # Totals of the three beats before, newest first: fwd[0] is the write-data
        # register (its write lands at the edge ending this cycle), fwd[1], fwd[2] the
        # totals written one and two edges ago.
        fwd = [Signal(lanes, name=f"fwd{k}_data", reset_less=True) for k in range(3)]
        fwd_addr = [Signal.like(beat1.addr, name=f"fwd{k}_addr", reset_less=True)
                    for k in range(3)]
        fwd_en = [Signal(name=f"fwd{k}_en") for k in range(3)]

        # t+1: the stored total into the block's output register; which in-flight total
        # is newer. The beat in t+2 (beat2) becomes fwd[0] at the next edge, fwd[0]
        # becomes fwd[1]... The two older totals a beat may need (fwd[1], fwd[2] when it
        # adds) are picked a cycle ahead, in t+1, where they are fwd[0] and fwd[1]: their
        # match flags are compared in t, against the beat's own address. So the add's
        # operand is one 3-way choice (the newest total, the older one, the stored),
        # and each lane has its own copy of the selects (hw.fanout).
        stored = rd.q
        beat2 = Signal(layout, reset_less=True)
        valid2 = Signal()
        addr = self.beat.payload.addr
        # t: will the beat need the total now adding (fwd[1] when it adds) or the one in
        # fwd[0] (fwd[2] then)?
        adding_hit = valid2 & ~beat2.last & (beat2.addr == addr)
        older1 = copies(m, platform, adding_hit, C, "older1")
        older_any = Signal()
        m.d.sync += older_any.eq(adding_hit | (fwd_en[0] & (fwd_addr[0] == addr)))
        # t+1: the older total, and whether to use it or the newest, per lane
        older = Signal(lanes, reset_less=True)
        for c in range(C):
            m.d.sync += older[c].eq(Mux(older1[c], fwd[0][c], fwd[1][c]))
        newest = copies(m, platform, valid2 & ~beat2.last & (beat2.addr == beat1.addr), C,
                        "newest")
        use_older = copies(m, platform, older_any, C, "use_older")
        m.d.sync += [beat2.eq(beat1), valid2.eq(valid1)]
        old = Signal(lanes)
        for c in range(C):
            m.d.comb += old[c].eq(Mux(newest[c], fwd[0][c],
                                      Mux(use_older[c], older[c], stored[c])))

        # t+2: add, then hand the total on to be written or sent out. Each lane reads
        # its own copies of beat2's first and skip flags and of `max` (a cycle late: it
        # holds still while beats are in flight).
        first = copies(m, platform, beat1.first, C, "first")
        skip = copies(m, platform, beat1.skip, C, "skip")
        is_max = copies(m, platform, self.max, C, "max")
        total = Signal(lanes)
        lowest = -(1 << (W - 1))
        for c in range(C):
            value = Mux(skip[c], lowest, beat2.sums[c])
            with m.If(is_max[c]):
                # Max pool: the running maximum; a skipped (padding) beat keeps it.
                m.d.comb += total[c].eq(Mux(first[c] | (value > old[c]), value, old[c]))
            with m.Else():
                # Assignment truncates: totals wrap at acc_width like the array's sums.
                m.d.comb += total[c].eq(beat2.sums[c] + Mux(first[c], 0, old[c]))
        m.d.sync += [
            fwd[0].eq(total), fwd_addr[0].eq(beat2.addr), fwd_en[0].eq(valid2 & ~beat2.last),
            fwd[1].eq(fwd[0]), fwd_addr[1].eq(fwd_addr[0]), fwd_en[1].eq(fwd_en[0]),
            fwd[2].eq(fwd[1]), fwd_addr[2].eq(fwd_addr[1]), fwd_en[2].eq(fwd_en[1]),
            self.out.valid.eq(valid2 & beat2.last), self.out.payload.eq(total),
        ]
        # t+3: the write lands.
        m.d.comb += [wr.addr.eq(fwd_addr[0]), wr.data.eq(fwd[0]), wr.en.eq(fwd_en[0])]
        # A read meets a write of its address at the same edge when a beat's pixel was
        # written two beats before: that total is fwd[2] when the beat adds, so the
        # block's undefined read of it is never used.
        return m

    def _running(self, m, lanes, layout):
        """Depth 1 (one-pixel tiles: a pixel's beats come one after another, no other
        pixel's between them): the total is a register, with no memory to read and no
        writes in flight to forward. The same stages, so the same ACC_LATENCY."""
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
                m.d.comb += total[c].eq(Mux(beat2.first | (value > running[c]), value,
                                            running[c]))
            with m.Else():
                m.d.comb += total[c].eq(beat2.sums[c] + Mux(beat2.first, 0, running[c]))
        with m.If(valid2):
            m.d.sync += running.eq(total)
        m.d.sync += [self.out.valid.eq(valid2 & beat2.last), self.out.payload.eq(total)]
        return m
