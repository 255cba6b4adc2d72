"""Cycle model of the accelerator: how many clock cycles each descriptor takes.

It counts the sequencer's loops exactly as `sim/machine.py` walks them, with the array
timing of `hw.array.ArrayTiming` (R×C weight-stationary, double-buffered weights):

CONV, per output-channel tile and pixel tile of `n` pixels, `steps = kh * kw * ceil(IC/R)`
weight tiles are used in turn. A step streams the `n` pixels through the array; the next
weight tile loads meanwhile (`load_rows` rows per beat: a whole tile per cycle by default),
so a step takes `max(n, S)` cycles, where `S = ArrayTiming.min_swap_interval` is the number
of load beats per tile (1 by default: a linear layer's one-pixel tiles follow each other
every cycle). With S > 1 and tiles of mixed lengths, `max(n, S)` is an upper bound
(`ArrayTiming.swap_cycles` is exact). Pixel
tiles follow each other without a gap (the accumulators are double-buffered: one pixel
tile is post-processed while the next accumulates). The layer adds the longer of the first
weight tile's load and the feeder's fill (`hw.feeder.FEED_LATENCY`), the array's
fill/drain latency (`ArrayTiming.latency`), the last pixel tile's post-processing (`n`
cycles) and the pipeline behind the array: the accumulators' `ACC_LATENCY`,
`hw.postproc.POST_LATENCY`, the pool writer's `POOL_WRITE_LATENCY` and one packing stage.
MAXPOOL reads every window element once per channel group: `out_px * k * k` cycles per
group of R channels; AVGPOOL reads each input word once (`in_px` cycles per group) and
post-processes one word per group; ADD reads two words per output word. All of them pay
the same setup and drain as CONV (`hw.accelerator.conv_cycles`): the sequencer is exact.

Every descriptor also costs `DESCRIPTOR_FETCH` cycles to fetch and decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hw import accelerator, isa, layout
from hw.accumulator import ACC_LATENCY
from hw.array import ArrayTiming
from hw.feeder import FEED_LATENCY
from hw.poolwrite import POOL_WRITE_LATENCY
from hw.postproc import POST_LATENCY
from hw.isa import Opcode

from . import machine

DESCRIPTOR_FETCH = 5    # cycles to read and decode one descriptor
PACK_LATENCY = 1        # C post-processed lanes -> an R-byte activation word
# The datapath blocks' own pipeline depths, so the model cannot drift from them.
POST_PIPELINE = ACC_LATENCY + POST_LATENCY + POOL_WRITE_LATENCY + PACK_LATENCY


@dataclass
class LayerCycles:
    """Modelled cost of one descriptor."""

    index: int
    op: str
    cycles: int
    macs: int
    bound: str                    # what limits it: "compute", "weight load", "memory"
    detail: dict = field(default_factory=dict)

    def utilization(self, rows: int, cols: int) -> float:
        return self.macs / (self.cycles * rows * cols) if self.cycles else 0.0


@dataclass
class Estimate:
    """Modelled cycles of one frame: totals and per-descriptor breakdown."""

    rows: int
    cols: int
    layers: list[LayerCycles]

    @property
    def cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def utilization(self) -> float:
        """MACs / (cycles × R × C) over the whole frame, 0..1."""
        return self.macs / (self.cycles * self.rows * self.cols) if self.cycles else 0.0


def conv_cycles(d: isa.Descriptor, rows: int, cols: int, load_rows: int | None = None
                ) -> tuple[int, int, str, dict]:
    timing = ArrayTiming(rows, cols, load_rows)
    conv_h, conv_w = machine.conv_size(d)
    pixels = conv_h * conv_w
    tile_px = d.tile_px or pixels
    oc_tiles = layout.ceil_div(d.out_c, cols)
    steps = d.kh * d.kw * layout.ceil_div(d.in_c, rows)
    swap = timing.min_swap_interval
    ot_cycles = 0
    for p0 in range(0, pixels, tile_px):
        n = min(tile_px, pixels - p0)
        ot_cycles += steps * max(n, swap)
    # The sequencer's exact count (hw.accelerator.conv_cycles) less the descriptor fetch
    # that estimate() adds to every descriptor.
    cycles = accelerator.conv_cycles(rows, cols, ot_cycles, oc_tiles,
                                     tile_px < pixels) - DESCRIPTOR_FETCH
    macs = pixels * d.out_c * d.kh * d.kw * d.in_c
    bound = "weight load" if tile_px < swap or pixels < swap else "compute"
    if oc_tiles > 1 and ot_cycles < accelerator.OT_GAP(cols):
        bound = "parameter load"
    return cycles, macs, bound, {"pixels": pixels, "tile_px": tile_px, "oc_tiles": oc_tiles,
                                 "steps": steps, "swap_interval": swap}


def _group_cycles(d, rows, cols, taps, pixels, bound):
    """MAXPOOL / AVGPOOL / ADD: the sequencer walks channel groups like output-channel
    tiles, pixel tiles of `tile_px`, and `taps` feeder commands per tile (window taps,
    input pixels, or the two inputs); the activations skip the array."""
    groups = layout.ceil_div(d.in_c, rows)
    tile_px = d.get("tile_px") or pixels
    ot_cycles = taps * pixels
    cycles = accelerator.conv_cycles(rows, cols, ot_cycles, groups,
                                     tile_px < pixels) - DESCRIPTOR_FETCH
    return cycles, 0, bound, {"groups": groups, "pixels": pixels, "taps": taps}


def maxpool_cycles(d: isa.Descriptor, rows: int, cols: int, load_rows=None
                   ) -> tuple[int, int, str, dict]:
    """Every window element is read once per channel group."""
    return _group_cycles(d, rows, cols, d.pool_k * d.pool_k, d.out_h * d.out_w, "memory")


def avgpool_cycles(d: isa.Descriptor, rows: int, cols: int, load_rows=None
                   ) -> tuple[int, int, str, dict]:
    """Each input word is read once; one post-processed word per group."""
    return _group_cycles(d, rows, cols, d.in_h * d.in_w, 1, "memory")


def add_cycles(d: isa.Descriptor, rows: int, cols: int, load_rows=None
               ) -> tuple[int, int, str, dict]:
    """Two bank reads per output word: one per input tensor."""
    return _group_cycles(d, rows, cols, 2, d.in_h * d.in_w, "memory")


MODELS = {
    Opcode.CONV: conv_cycles,
    Opcode.MAXPOOL: maxpool_cycles,
    Opcode.AVGPOOL: avgpool_cycles,
    Opcode.ADD: add_cycles,
}


def estimate(program: list[isa.Descriptor], rows: int, cols: int,
             load_rows: int | None = None, *, extra: tuple[int, int] = (0, 0)) -> Estimate:
    """Cycle estimate of a decoded program (up to its END) on an R×C array whose weight
    port carries `load_rows` rows per beat (None: the whole tile). `extra` is what a
    reduced config adds to every descriptor's fetch and to every setup
    (`hw.accelerator.extra_setup_cycles(config)`)."""
    fetch_extra, setup_extra = extra
    layers = []
    for index, d in enumerate(program):
        if d.op is Opcode.END:
            layers.append(LayerCycles(index, "END", DESCRIPTOR_FETCH + fetch_extra, 0,
                                      "control"))
            break
        cycles, macs, bound, detail = MODELS[d.op](d, rows, cols, load_rows)
        layers.append(LayerCycles(index, d.op.name,
                                  cycles + DESCRIPTOR_FETCH + fetch_extra + setup_extra,
                                  macs, bound, detail))
    return Estimate(rows, cols, layers)


def estimate_on(program: list[isa.Descriptor], config) -> Estimate:
    """`estimate` of `program` on the accelerator built from `config`
    (hw.AcceleratorConfig): its array, weight port and reductions."""
    return estimate(program, config.rows, config.cols, config.load_rows,
                    extra=accelerator.extra_setup_cycles(config))
