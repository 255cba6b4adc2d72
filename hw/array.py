"""R×C weight-stationary systolic array with double-buffered weight tiles.

Row ``r`` multiplies input channel ``r`` of a K-tile; column ``c`` accumulates
output channel ``c``. The array skews activations entering on the left and
deskews the sums leaving at the bottom, so both edges are plain per-pixel vectors:
one pixel (R activations) in per cycle, one vector of C sums out per cycle, a
fixed :attr:`ArrayTiming.latency` later. ``docs/array.md`` is the full protocol;
:class:`ArrayTiming` is its executable form for the compiler's cycle model.
"""

from dataclasses import dataclass

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .pe import ProcessingElement, check_widths, _check_positive_int

__all__ = ["ArrayTiming", "SystolicArray", "weight_row_layout"]


@dataclass(frozen=True)
class ArrayTiming:
    """Cycle-level contract of a :class:`SystolicArray` with ``rows`` × ``cols`` PEs.

    Cycles are numbered by the rising edge that samples the inputs: an input
    "in cycle t" is sampled at the edge that ends cycle t.
    """

    rows: int
    cols: int

    def __post_init__(self):
        _check_positive_int("array rows", self.rows)
        _check_positive_int("array cols", self.cols)

    @property
    def latency(self):
        """Cycles from a pixel in cycle ``t`` to its sums valid in cycle ``t + latency``."""
        # 1 input latch + (rows - 1) row skew + 1 product register + 1 psum
        # register per row (rows in all) + (cols - 1) column skew/deskew.
        return self.rows + self.cols + 1

    @property
    def load_cycles(self):
        """Load beats (one row of ``cols`` weights each) per weight tile."""
        return self.rows

    @property
    def min_swap_interval(self):
        """Fewest cycles between two swaps that each activate a freshly loaded tile.

        A tile used for at least this many pixel cycles hides the next tile's
        load completely: no bubble is needed at the swap.
        """
        return max(self.rows, self.cols)

    def row_deadline(self, row, swap_cycle):
        """Last cycle in which ``row`` of the tile activated at ``swap_cycle`` may be loaded."""
        return swap_cycle + row - 1

    def row_blackout(self, row, swap_cycle):
        """Cycles in which ``row`` must not be loaded because of the swap at ``swap_cycle``.

        The swap copies shadow row ``row`` into column ``c`` at the end of cycle
        ``swap_cycle + row + c``; a load in between would reach only some columns.
        """
        return range(swap_cycle + row, swap_cycle + row + self.cols - 1)

    def first_load_after_swap(self, swap_cycle):
        """Earliest cycle to start loading the next tile in row order 0, 1, …, R−1."""
        return swap_cycle + self.cols - 1


def weight_row_layout(rows, cols, weight_width=8):
    """Payload of one weight-load beat: row index and the ``cols`` weights of that row."""
    return data.StructLayout({
        "row":     unsigned(max(1, ceil_log2(rows))),
        "weights": data.ArrayLayout(signed(weight_width), cols),
    })


class SystolicArray(wiring.Component):
    """Weight-stationary systolic array, ``rows`` × ``cols`` signed MAC PEs.

    Ports (all streams are ``always_ready``: the array never stalls, and the
    consumer of ``sums`` must take every beat)
    -----
    act : In(stream(ArrayLayout(signed(act_width), rows)))
        One pixel per valid cycle: ``payload[r]`` is input channel ``r`` of the
        current K-tile. Gaps (``valid`` low) are allowed anywhere.
    swap : In(1)
        High in cycle T: pixels entering in cycles ≥ T use the shadow tile.
        Independent of ``act.valid`` (a swap may ride on a gap).
    load : In(stream(weight_row_layout))
        Writes ``payload.weights[c]`` into the shadow weight of PE(``payload.row``, c).
        Out-of-range rows are ignored.
    sums : Out(stream(ArrayLayout(signed(acc_width), cols)))
        ``payload[c] = sum_r act[r] * W[r][c]`` (wrapping at ``acc_width``) for the
        pixel that entered :attr:`ArrayTiming.latency` cycles earlier.
    """

    def __init__(self, rows, cols, *, act_width=8, weight_width=8, acc_width=32):
        _check_positive_int("array rows", rows)
        _check_positive_int("array cols", cols)
        check_widths(act_width, weight_width, acc_width)
        self.rows = rows
        self.cols = cols
        self.act_width = act_width
        self.weight_width = weight_width
        self.acc_width = acc_width
        self.timing = ArrayTiming(rows, cols)
        super().__init__({
            "act":  In(stream.Signature(data.ArrayLayout(signed(act_width), rows),
                                        always_ready=True)),
            "swap": In(1),
            "load": In(stream.Signature(weight_row_layout(rows, cols, weight_width),
                                        always_ready=True)),
            "sums": Out(stream.Signature(data.ArrayLayout(signed(acc_width), cols),
                                         always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols

        pes = [[ProcessingElement(act_width=self.act_width, weight_width=self.weight_width,
                                  acc_width=self.acc_width)
                for _ in range(C)] for _ in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # Row skew: row r sees a pixel r cycles after row 0, which is exactly
        # when the partial sum of that pixel arrives from row r - 1.
        for r in range(R):
            data_in, swap_in = self.act.payload[r], self.swap
            for stage in range(r):
                d = Signal(signed(self.act_width), name=f"skew_{r}_{stage}", reset_less=True)
                s = Signal(name=f"skew_swap_{r}_{stage}")
                m.d.sync += [d.eq(data_in), s.eq(swap_in)]
                data_in, swap_in = d, s
            m.d.comb += [
                pes[r][0].west.data.eq(data_in),
                pes[r][0].west.swap.eq(swap_in),
            ]
            for c in range(1, C):
                wiring.connect(m, pes[r][c - 1].east, pes[r][c].west)

        # Weight loads broadcast a row to its C PEs; rows are decoded here so a
        # PE sees only an enable and its own weight.
        for r in range(R):
            row_en = self.load.valid & (self.load.payload.row == r)
            for c in range(C):
                m.d.comb += [
                    pes[r][c].load.en.eq(row_en),
                    pes[r][c].load.data.eq(self.load.payload.weights[c]),
                ]

        for c in range(C):
            m.d.comb += pes[0][c].psum_in.eq(0)
            for r in range(1, R):
                m.d.comb += pes[r][c].psum_in.eq(pes[r - 1][c].psum_out)

        # Column deskew: column c finishes c cycles after column 0, so it waits
        # C - 1 - c cycles to line up with the last column.
        for c in range(C):
            out = pes[R - 1][c].psum_out
            for stage in range(C - 1 - c):
                d = Signal(signed(self.acc_width), name=f"deskew_{c}_{stage}", reset_less=True)
                m.d.sync += d.eq(out)
                out = d
            m.d.comb += self.sums.payload[c].eq(out)

        # Valid does not travel through the PEs: the latency is fixed, so a
        # single delay line qualifies the output.
        valid = self.act.valid
        for stage in range(self.timing.latency):
            v = Signal(name=f"valid_{stage}")
            m.d.sync += v.eq(valid)
            valid = v
        m.d.comb += self.sums.valid.eq(valid)

        return m
