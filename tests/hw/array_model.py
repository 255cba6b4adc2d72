"""Behavioural model of the systolic array's documented contract (docs/array.md).

The model knows nothing about PEs, skew or pipelines: it applies the protocol
(which load belongs to which tile, which tile a pixel uses, when sums appear) to
a cycle-indexed schedule and computes the sums with NumPy. Both the Amaranth and
the cocotb tests compare the RTL against it.
"""

from dataclasses import dataclass, field

import numpy as np

from hw.array import ArrayTiming


class ScheduleError(ValueError):
    """A stimulus schedule breaks the array's weight-loading protocol."""


@dataclass
class Beat:
    """Inputs of one cycle; ``None`` fields are idle. ``load`` is ``(group, rows)``
    with ``load_rows`` rows of ``cols`` weights."""
    act: "list[int] | None" = None
    swap: bool = False
    load: "tuple[int, list[list[int]]] | None" = None


@dataclass
class Schedule:
    """Stimulus for an R×C array: ``beats[cycle]`` holds that cycle's inputs."""
    rows: int
    cols: int
    load_rows: "int | None" = None
    beats: dict = field(default_factory=dict)

    @property
    def timing(self):
        return ArrayTiming(self.rows, self.cols, self.load_rows)

    @property
    def length(self):
        return max(self.beats, default=-1) + 1

    def beat(self, cycle):
        return self.beats.setdefault(cycle, Beat())


def wrap(values, width):
    """Two's-complement wrap of integer ``values`` to ``width`` bits."""
    values = np.asarray(values, dtype=object)
    mask = (1 << width) - 1
    half = 1 << (width - 1)
    return np.array([((int(v) + half) & mask) - half for v in values.ravel()],
                    dtype=object).reshape(values.shape)


def check(schedule):
    """Raise :class:`ScheduleError` if a load beat does not have the port's shape.

    There is no timing rule to break: every load belongs to exactly one swap
    (:meth:`ArrayTiming.load_window`). Group indices past the last group are legal
    and ignored, as in the hardware.
    """
    timing = schedule.timing
    for cycle, beat in sorted(schedule.beats.items()):
        if beat.load is None:
            continue
        group, rows = beat.load
        if not isinstance(group, int) or group < 0:
            raise ScheduleError(f"load in cycle {cycle} has group {group!r}; "
                                f"expected a non-negative integer")
        shape = np.shape(np.asarray(rows, dtype=object))
        if shape != (timing.load_rows, schedule.cols):
            raise ScheduleError(
                f"load in cycle {cycle} has weights of shape {shape}, expected "
                f"({timing.load_rows}, {schedule.cols}): load_rows rows of cols weights")


def tiles(schedule):
    """Map each swap cycle to the R×C weight tile it activates: per group, the last
    load in a cycle up to :meth:`ArrayTiming.load_deadline`."""
    timing = schedule.timing
    loads = sorted((t, b.load) for t, b in schedule.beats.items() if b.load is not None)
    result = {}
    for swap in sorted(t for t, b in schedule.beats.items() if b.swap):
        tile = np.zeros((schedule.rows, schedule.cols), dtype=object)
        for cycle, (group, rows) in loads:
            if group < timing.load_cycles and cycle <= timing.load_deadline(group, swap):
                first = group * timing.load_rows
                tile[first:first + timing.load_rows] = np.asarray(rows, dtype=object)
        result[swap] = tile
    return result


def expected_sums(schedule, acc_width=32):
    """``{output cycle: [C sums]}`` the array must produce for ``schedule``."""
    check(schedule)
    timing = schedule.timing
    by_swap = tiles(schedule)
    active = np.zeros((schedule.rows, schedule.cols), dtype=object)
    out = {}
    for cycle in range(schedule.length):
        beat = schedule.beats.get(cycle)
        if beat is None:
            continue
        if beat.swap:
            active = by_swap[cycle]
        if beat.act is not None:
            x = np.asarray(beat.act, dtype=object)
            out[cycle + timing.latency] = [int(v) for v in wrap(x @ active, acc_width)]
    return out


def tile_stream(rows, cols, weight_tiles, pixel_tiles, *, load_rows=None, rng=None,
                gap_prob=0.0, load_start=0):
    """Schedule that runs ``pixel_tiles[k]`` (P_k × R) against ``weight_tiles[k]`` (R × C).

    Every tile is loaded in group order in consecutive cycles, as early as the
    protocol allows (not before the previous swap), and swapped in as early as its
    load and the previous tile's pixels allow. With ``gap_prob=0`` and at least
    ``min_swap_interval`` pixels per tile the activation stream has no gap at all.
    ``gap_prob`` inserts idle cycles between pixels at random.
    """
    timing = ArrayTiming(rows, cols, load_rows)
    B = timing.load_rows
    sched = Schedule(rows, cols, load_rows)
    load_free = load_start      # first cycle the load port is free
    pixels_done = 0             # first cycle after the previous tile's pixels
    prev_swap = None
    for weights, pixels in zip(weight_tiles, pixel_tiles):
        start = load_free
        if prev_swap is not None:
            start = max(start, timing.first_load_after_swap(prev_swap))
        for g in range(timing.load_cycles):
            sched.beat(start + g).load = (g, [[int(w) for w in row]
                                              for row in weights[g * B:(g + 1) * B]])
        load_free = start + timing.load_cycles
        swap = max(start + 1, pixels_done)
        sched.beat(swap).swap = True
        cycle = swap
        for px in pixels:
            while rng is not None and gap_prob and rng.random() < gap_prob:
                cycle += 1
            sched.beat(cycle).act = [int(a) for a in px]
            cycle += 1
        pixels_done = cycle
        prev_swap = swap
    return sched
