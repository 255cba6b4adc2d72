"""Accumulators: the array's per-pixel sums added up over the K-steps of a pixel tile.

Every beat carries C int32 sums for one pixel of the tile (`addr`, 0..depth-1) and marks
whether it is the pixel's first step (start from zero) and/or its last (send the total to
the post-processor instead of storing it). So one C-lane memory of `depth` entries
serves: pixel tiles follow each other without a drain phase, because a tile's last step
streams out while the next tile's first step overwrites.

With `max` high the lanes keep a running maximum instead (standalone max pools, fed
straight from the activation feeder); a beat marked `skip` (a padding pixel) leaves it
unchanged, and a window's first beat, if skipped, starts it at the lowest value.

Pipeline (ACC_LATENCY = 2): a beat in cycle t reads its partial total; in t + 1 the sum is
formed and either written back or registered as the output, valid in t + 2. A beat for the
same pixel in t + 1 (a one-pixel tile stepping every cycle: linear layers) reads the
entry in the edge that writes it: the read port is transparent for the write port, so it
sees the new total without extra forwarding logic.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

ACC_LATENCY = 2   # beat in cycle t -> its total (last step) on `out` in cycle t + 2


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
            "max": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = data.ArrayLayout(signed(self.acc_width), self.cols)
        m.submodules.mem = mem = Memory(shape=lanes, depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))

        # Stage 0: read the partial total of the beat's pixel.
        m.d.comb += [rd.addr.eq(self.beat.payload.addr), rd.en.eq(1)]
        beat = Signal(beat_layout(self.cols, self.depth, self.acc_width))
        valid = Signal()
        m.d.sync += [beat.eq(self.beat.payload), valid.eq(self.beat.valid)]

        # Stage 1: add, then store the total or hand it on.
        total = Signal(lanes)
        lowest = -(1 << (self.acc_width - 1))
        for c in range(self.cols):
            value = Mux(beat.skip, lowest, beat.sums[c])
            with m.If(self.max):
                # Max pool: the running maximum; a skipped (padding) beat keeps it.
                m.d.comb += total[c].eq(Mux(beat.first | (value > rd.data[c]), value,
                                            rd.data[c]))
            with m.Else():
                # Assignment truncates: totals wrap at acc_width like the array's sums.
                m.d.comb += total[c].eq(beat.sums[c] + Mux(beat.first, 0, rd.data[c]))
        m.d.comb += [
            wr.addr.eq(beat.addr),
            wr.data.eq(total),
            wr.en.eq(valid & ~beat.last),
        ]
        m.d.sync += [self.out.valid.eq(valid & beat.last), self.out.payload.eq(total)]
        return m
