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

__all__ = ["ArrayTiming", "SystolicArray", "weight_beat_layout", "check_load_rows"]


@dataclass(frozen=True)
class ArrayTiming:
    """Cycle-level contract of a :class:`SystolicArray` with ``rows`` × ``cols`` PEs.

    Cycles are numbered by the rising edge that samples the inputs: an input
    "in cycle t" is sampled at the edge that ends cycle t.

    A weight tile arrives in :attr:`load_cycles` beats of ``load_rows`` rows each
    (beat *group* ``g`` carries rows ``g*load_rows`` … ``(g+1)*load_rows − 1``);
    ``load_rows=None`` means ``rows``: the whole tile in one beat.
    """

    rows: int
    cols: int
    load_rows: "int | None" = None

    def __post_init__(self):
        _check_positive_int("array rows", self.rows)
        _check_positive_int("array cols", self.cols)
        if self.load_rows is None:
            object.__setattr__(self, "load_rows", self.rows)
        check_load_rows(self.rows, self.load_rows)

    @property
    def latency(self):
        """Cycles from a pixel in cycle ``t`` to its sums valid in cycle ``t + latency``."""
        # 1 input latch + (rows - 1) row skew + 1 product register + 1 fabric copy of
        # the product + 1 psum register per row (rows in all) + (cols - 1) column
        # skew/deskew.
        return self.rows + self.cols + 2

    @property
    def load_cycles(self):
        """Load beats (``load_rows`` rows of ``cols`` weights each) per weight tile."""
        return self.rows // self.load_rows

    @property
    def min_swap_interval(self):
        """Cycles per freshly loaded tile in a sustained run of tiles: the load port's
        occupancy, one beat per group. 1 with the default whole-tile port, so a new
        tile may be swapped in for every pixel.
        """
        return self.load_cycles

    def load_group(self, row):
        """The load beat group that carries ``row``."""
        return row // self.load_rows

    def load_deadline(self, group, swap_cycle):
        """Last cycle in which ``group`` may be loaded to be part of the tile
        activated by the swap in ``swap_cycle``."""
        return swap_cycle - 1 + group

    def load_window(self, group, prev_swap_cycle, swap_cycle):
        """Cycles in which a load of ``group`` belongs to the tile activated in
        ``swap_cycle`` when the swap before it was in ``prev_swap_cycle``.

        Consecutive windows of a group tile the time axis: every load belongs to
        exactly one swap, and there is no cycle in which a load is unsafe.
        """
        return range(self.load_deadline(group, prev_swap_cycle) + 1,
                     self.load_deadline(group, swap_cycle) + 1)

    def first_load_after_swap(self, swap_cycle):
        """Earliest cycle to start loading the next tile (group 0, then 1, … in
        consecutive cycles) without disturbing the tile swapped in at ``swap_cycle``."""
        return swap_cycle

    def swap_cycles(self, pixel_cycles, first_load=0):
        """Swap cycles of a run of tiles, tile k streaming ``pixel_cycles[k]`` cycles
        (pixels and gaps), when every tile is loaded in group order as early as
        allowed (from ``first_load``, not before the previous swap) and swapped in as
        early as its load and the previous tile's pixels allow.

        ``T_k+1 = max(T_k + P_k, S_k+1 + 1)`` with load starts
        ``S_k+1 = max(S_k + load_cycles, T_k)``; ``T_0 = first_load + 1``. Hence
        ``T_k+1 ≤ T_k + max(P_k, load_cycles)``, with equality for a whole-tile port.
        """
        swaps, start, swap = [], first_load, None
        for k, pixels in enumerate(pixel_cycles):
            if k:
                start = max(start + self.load_cycles, swap)
                swap = max(swap + pixel_cycles[k - 1], start + 1)
            else:
                swap = start + 1
            swaps.append(swap)
        return swaps

    def row_delay(self, row):
        """Cycles the array delays a weight of ``row`` before its column delay (``row −
        group``), so that every PE(r, c) is written one cycle before the swap
        wavefront reaches it at ``swap + r + c``."""
        return row - self.load_group(row)

    def weight_delay_flops(self, weight_width):
        """Flip-flops of the weight delay lines: ``cols`` weights and one enable per row
        stage, plus ``c`` stages of one weight per PE(r, c) and one enable per row and
        column step. See ``docs/array.md`` "Register cost"."""
        row_stages = sum(self.row_delay(r) for r in range(self.rows))
        col_stages = self.rows * self.cols * (self.cols - 1) // 2
        return (weight_width * (self.cols * row_stages + col_stages)
                + row_stages + self.rows * (self.cols - 1))


def check_load_rows(rows, load_rows):
    """Raise ``ValueError`` unless ``load_rows`` is a positive divisor of ``rows``."""
    if not isinstance(load_rows, int) or isinstance(load_rows, bool) or load_rows <= 0 \
            or rows % load_rows:
        divisors = ", ".join(str(d) for d in range(1, rows + 1) if rows % d == 0)
        raise ValueError(f"load rows must divide the {rows} array rows, not {load_rows!r}; "
                         f"use one of {divisors}")


def weight_beat_layout(rows, cols, weight_width=8, load_rows=None):
    """Payload of one weight-load beat: the group index (0 bits for a whole-tile port)
    and ``load_rows`` rows of ``cols`` weights, ``weights[i][c]`` for PE(group*load_rows + i, c)."""
    timing = ArrayTiming(rows, cols, load_rows)
    return data.StructLayout({
        "group":   unsigned(ceil_log2(timing.load_cycles)),
        "weights": data.ArrayLayout(data.ArrayLayout(signed(weight_width), cols),
                                    timing.load_rows),
    })


class SystolicArray(wiring.Component):
    """Weight-stationary systolic array, ``rows`` × ``cols`` signed MAC PEs.

    ``load_rows`` (default ``rows``) is the width of the weight-load port in array
    rows: a tile takes ``rows // load_rows`` beats, and that is also the fewest
    cycles per freshly loaded tile (:attr:`ArrayTiming.min_swap_interval`).

    Ports (all streams are ``always_ready``: the array never stalls, and the
    consumer of ``sums`` must take every beat)
    -----
    act : In(stream(ArrayLayout(signed(act_width), rows)))
        One pixel per valid cycle: ``payload[r]`` is input channel ``r`` of the
        current K-tile. Gaps (``valid`` low) are allowed anywhere.
    swap : In(1)
        High in cycle T: pixels entering in cycles ≥ T use the tile loaded for T
        (see :meth:`ArrayTiming.load_deadline`). Independent of ``act.valid``.
    load : In(stream(weight_beat_layout))
        Rows ``group*load_rows + i`` of the next tile: ``payload.weights[i][c]``
        is the weight of PE(row, c). Group indices ≥ ``rows // load_rows`` are ignored.
    sums : Out(stream(ArrayLayout(signed(acc_width), cols)))
        ``payload[c] = sum_r act[r] * W[r][c]`` (wrapping at ``acc_width``) for the
        pixel that entered :attr:`ArrayTiming.latency` cycles earlier.
    """

    def __init__(self, rows, cols, *, act_width=8, weight_width=8, acc_width=32,
                 load_rows=None):
        _check_positive_int("array rows", rows)
        _check_positive_int("array cols", cols)
        check_widths(act_width, weight_width, acc_width)
        self.timing = ArrayTiming(rows, cols, load_rows)
        self.rows = rows
        self.cols = cols
        self.load_rows = self.timing.load_rows
        self.act_width = act_width
        self.weight_width = weight_width
        self.acc_width = acc_width
        super().__init__({
            "act":  In(stream.Signature(data.ArrayLayout(signed(act_width), rows),
                                        always_ready=True)),
            "swap": In(1),
            "load": In(stream.Signature(
                weight_beat_layout(rows, cols, weight_width, self.load_rows),
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

        self._weight_delay(m, pes)

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

    def _weight_delay(self, m, pes):
        """Delay each loaded weight so PE(r, c)'s shadow is written in cycle
        ``L + row_delay(r) + c``: one cycle before the swap wavefront of a swap in
        ``L + 1 + group`` reaches it. The shadow then behaves as the last stage of a
        pipeline, so tiles may follow each other every cycle."""
        R, C, w = self.rows, self.cols, self.weight_width
        beat = self.load.payload
        for r in range(R):
            group, index = divmod(r, self.load_rows)
            en = self.load.valid
            if self.timing.load_cycles > 1:
                en = en & (beat.group == group)
            weights = [beat.weights[index][c] for c in range(C)]

            # Row part: the whole row of C weights, row_delay(r) stages. The data
            # stages shift every cycle; the enable says which stage holds a load.
            for stage in range(self.timing.row_delay(r)):
                en_d = Signal(name=f"wrow_en_{r}_{stage}")
                w_d = [Signal(signed(w), name=f"wrow_{r}_{stage}_{c}", reset_less=True)
                       for c in range(C)]
                m.d.sync += en_d.eq(en)
                m.d.sync += [d.eq(q) for d, q in zip(w_d, weights)]
                en, weights = en_d, w_d

            # Column part: moves east one column per cycle like the activations,
            # dropping at each PE its own weight, so the vector shrinks by one.
            for c in range(C):
                m.d.comb += [
                    pes[r][c].load.en.eq(en),
                    pes[r][c].load.data.eq(weights[0]),
                ]
                if c == C - 1:
                    break
                en_d = Signal(name=f"wcol_en_{r}_{c}")
                w_d = [Signal(signed(w), name=f"wcol_{r}_{c}_{k}", reset_less=True)
                       for k in range(c + 1, C)]
                m.d.sync += en_d.eq(en)
                m.d.sync += [d.eq(q) for d, q in zip(w_d, weights[1:])]
                en, weights = en_d, w_d
