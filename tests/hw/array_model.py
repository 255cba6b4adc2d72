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
    """Inputs of one cycle; ``None`` fields are idle."""
    act: "list[int] | None" = None
    swap: bool = False
    load: "tuple[int, list[int]] | None" = None


@dataclass
class Schedule:
    """Stimulus for an R×C array: ``beats[cycle]`` holds that cycle's inputs."""
    rows: int
    cols: int
    beats: dict = field(default_factory=dict)

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
    """Raise :class:`ScheduleError` if a load falls in a swap's blackout window."""
    timing = ArrayTiming(schedule.rows, schedule.cols)
    swaps = sorted(t for t, b in schedule.beats.items() if b.swap)
    for cycle, beat in sorted(schedule.beats.items()):
        if beat.load is None:
            continue
        row, weights = beat.load
        if len(weights) != schedule.cols:
            raise ScheduleError(f"load in cycle {cycle} has {len(weights)} weights, "
                                f"expected {schedule.cols}")
        for swap in swaps:
            blackout = timing.row_blackout(row, swap)
            if cycle in blackout:
                raise ScheduleError(
                    f"load of row {row} in cycle {cycle} falls in the blackout of the swap "
                    f"in cycle {swap} (cycles {blackout.start}..{blackout.stop - 1}); load it "
                    f"by cycle {timing.row_deadline(row, swap)} or from cycle {blackout.stop} on")


def tiles(schedule):
    """Map each swap cycle to the R×C weight tile it activates (per the row deadlines)."""
    timing = ArrayTiming(schedule.rows, schedule.cols)
    loads = sorted((t, b.load) for t, b in schedule.beats.items() if b.load is not None)
    result = {}
    for swap in sorted(t for t, b in schedule.beats.items() if b.swap):
        tile = np.zeros((schedule.rows, schedule.cols), dtype=object)
        for cycle, (row, weights) in loads:
            if row < schedule.rows and cycle <= timing.row_deadline(row, swap):
                tile[row] = weights
        result[swap] = tile
    return result


def expected_sums(schedule, acc_width=32):
    """``{output cycle: [C sums]}`` the array must produce for ``schedule``."""
    check(schedule)
    timing = ArrayTiming(schedule.rows, schedule.cols)
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


def tile_stream(rows, cols, weight_tiles, pixel_tiles, *, rng=None, gap_prob=0.0,
                load_start=0):
    """Schedule that runs ``pixel_tiles[k]`` (P_k × R) against ``weight_tiles[k]`` (R × C).

    Every tile is loaded in row order as early as the protocol allows and swapped
    in as early as its load allows, so with ``gap_prob=0`` and at least
    ``max(R, C)`` pixels per tile the activation stream has no gap at all.
    ``gap_prob`` inserts idle cycles between pixels at random.
    """
    timing = ArrayTiming(rows, cols)
    sched = Schedule(rows, cols)
    load_free = load_start      # first cycle the load port is free
    pixels_done = 0             # first cycle after the previous tile's pixels
    prev_swap = None
    for weights, pixels in zip(weight_tiles, pixel_tiles):
        start = load_free
        if prev_swap is not None:
            start = max(start, timing.first_load_after_swap(prev_swap))
        for r in range(rows):
            sched.beat(start + r).load = (r, [int(w) for w in weights[r]])
        load_free = start + rows
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
