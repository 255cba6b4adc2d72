"""`AcceleratorConfig`: the one frozen description of an accelerator instance.

Everything else is derived from it by the pure function `derive`: the hardware's
widths and memory sizes, the compiler's target (memory depths, accumulator tile) and the
host's constants (the size of each memory space on the link).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


class ConfigError(ValueError):
    """An accelerator configuration value is out of range."""


# Field limits: (minimum, maximum). Maxima follow from the descriptor's field widths
# (hw/isa.py) and what one FPGA can hold.
_LIMITS = {
    "rows": (1, 64),
    "cols": (1, 64),
    "act_depth": (16, 1 << 20),       # descriptor src/dst fields are 20 bits
    "weight_depth": (16, 1 << 20),    # descriptor wgt field is 20 bits
    "param_depth": (16, 1 << 14),     # descriptor prm field is 14 bits
    "program_depth": (2, 1 << 12),
    "acc_depth": (1, 1 << 12),        # descriptor tile_px field is 12 bits
}


@dataclass(frozen=True)
class AcceleratorConfig:
    """Size and widths of the accelerator (rows R × cols C systolic array).

    Depths are in words: an activation word is one byte in each of the R banks, a weight
    word one array row of C bytes (the memory reads `load_rows` of them per cycle: a whole
    tile by default), a parameter word one 16-byte PARAM record, a program
    word one 32-byte descriptor, an accumulator word one pixel of C int32 lanes.
    """

    rows: int = 8
    cols: int = 8
    data_bits: int = 8
    acc_bits: int = 32
    act_depth: int = 4096       # words per activation bank
    weight_depth: int = 16384   # weight memory words (C bytes each): 128 KiB at 8x8
    param_depth: int = 1024     # PARAM records (one per output channel of every layer)
    program_depth: int = 64     # descriptors
    acc_depth: int = 512        # pixels per accumulator tile (each C × 32 bits, doubled)
    weight_load_rows: int | None = None  # array rows per weight-load beat; None: the whole tile
    clock_mhz: float = 50.0
    # Reductions for small FPGAs (iCE40UP5K); the defaults build the full-speed design.
    program_beat_bytes: int = 32    # program memory word: a descriptor is fetched in
                                    # 32 / program_beat_bytes reads, a cycle each
    ram_delays: bool = False        # pixel tags and weight addresses delayed in block RAM,
                                    # not in chains of flip-flops (same cycles)
    serial_size: bool = False       # output size and pixel count on one multiplier block
                                    # in turn, in the setup (not three; +1 cycle)
    compact_link: bool = False      # the host link keeps only STATUS's changing fields in
                                    # registers (the same bytes on the line) and serves no
                                    # WRITE_GROUPS (`group_writes`)
    compact_post: bool = False      # the post-processor forms only the bits of its
                                    # rounding shift it uses (same cycles)
    compact_feeder: bool = False    # the feeder reads a descriptor's input shape from its
                                    # latest command, not from each pixel's (same cycles)
    standalone_pool: bool = False   # no pool-on-write: the compiler gives max pools
                                    # MAXPOOL descriptors of their own, and the pool writer
                                    # has no divides, reads or merges

    def __post_init__(self):
        for name, (lo, hi) in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(f"{name} must be an integer from {lo} to {hi}, not {value!r}")
        load = self.weight_load_rows
        if load is not None and (isinstance(load, bool) or not isinstance(load, int)
                                 or load < 1 or self.rows % load):
            divisors = [d for d in range(1, self.rows + 1) if self.rows % d == 0]
            raise ConfigError(f"weight_load_rows must divide rows={self.rows}, not {load!r}; "
                              f"use one of {', '.join(map(str, divisors))} (or None: {self.rows})")
        beat = self.program_beat_bytes
        if isinstance(beat, bool) or not isinstance(beat, int) or beat not in (1, 2, 4, 8, 16, 32):
            raise ConfigError(f"program_beat_bytes must be 1, 2, 4, 8, 16 or 32 (a divisor of "
                              f"the 32-byte descriptor), not {beat!r}")
        for name in ("ram_delays", "serial_size", "compact_link", "compact_post",
                     "compact_feeder", "standalone_pool"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if self.data_bits != 8:
            raise ConfigError(f"data_bits must be 8 (int8 datapath), not {self.data_bits!r}")
        if self.acc_bits != 32:
            raise ConfigError(f"acc_bits must be 32 (int32 accumulators), not {self.acc_bits!r}")
        if (isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float))
                or not 0 < self.clock_mhz <= 1000):
            raise ConfigError(f"clock_mhz must be a number in (0, 1000], not {self.clock_mhz!r}")

    @classmethod
    def parse(cls, text: str, **overrides) -> "AcceleratorConfig":
        """A config from 'RxC' (e.g. '8x8'), with other fields as keyword overrides."""
        try:
            rows, cols = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise ConfigError(f"config {text!r} is not ROWSxCOLS, e.g. 8x8") from None
        return cls(rows=rows, cols=cols, **overrides)

    @property
    def load_rows(self) -> int:
        """Array rows per weight-load beat (the weight memory reads this many rows at once)."""
        return self.weight_load_rows or self.rows

    @property
    def group_writes(self) -> bool:
        """The host link serves WRITE_GROUPS (docs/protocol.md): all but `compact_link`."""
        return not self.compact_link

    @property
    def label(self) -> str:
        return f"{self.rows}x{self.cols}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "AcceleratorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown accelerator config keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "AcceleratorConfig":
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Derived:
    """What the RTL, the compiler and the host need, derived from a config."""

    act_width: int            # PE activation operand: 9 bits so unsigned 8-bit values fit
    weight_width: int
    act_bytes: int            # memory sizes in bytes, per space
    weight_bytes: int
    param_bytes: int
    program_bytes: int
    acc_bytes: int            # accumulator storage (double-buffered)
    space_sizes: dict         # hw.isa.Space -> bytes (what HostLink(space_sizes=) takes)
    macs_per_cycle: int


def derive(config: AcceleratorConfig) -> Derived:
    """The derived parameters of `config` (a pure function)."""
    from .isa import DESCRIPTOR_BYTES, PARAM_BYTES, Space
    act = config.act_depth * config.rows
    weight = config.weight_depth * config.cols
    param = config.param_depth * PARAM_BYTES
    program = config.program_depth * DESCRIPTOR_BYTES
    return Derived(
        act_width=config.data_bits + 1,
        weight_width=config.data_bits,
        act_bytes=act, weight_bytes=weight, param_bytes=param, program_bytes=program,
        acc_bytes=2 * config.acc_depth * config.cols * config.acc_bits // 8,
        space_sizes={Space.ACTIVATIONS: act, Space.WEIGHTS: weight, Space.PARAMS: param,
                     Space.PROGRAM: program},
        macs_per_cycle=config.rows * config.cols,
    )
