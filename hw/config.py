"""`AcceleratorConfig`: the one frozen description of an accelerator instance.

Issue 4 derives the hardware parameters, the compiler's target and the host's constants
from it; for now it is a validated, JSON-round-trippable record.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


class ConfigError(ValueError):
    """An accelerator configuration value is out of range."""


@dataclass(frozen=True)
class AcceleratorConfig:
    """Size and widths of the accelerator (rows R × cols C systolic array)."""

    rows: int = 8
    cols: int = 8
    data_bits: int = 8
    acc_bits: int = 32
    act_depth: int = 4096       # words per activation bank
    weight_depth: int = 16384   # weight memory words (C bytes each): 128 KiB at 8x8
    clock_mhz: float = 50.0

    def __post_init__(self):
        for name in ("rows", "cols", "act_depth", "weight_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if self.data_bits != 8:
            raise ConfigError(f"data_bits must be 8 (int8 datapath), not {self.data_bits!r}")
        if self.acc_bits != 32:
            raise ConfigError(f"acc_bits must be 32 (int32 accumulators), not {self.acc_bits!r}")
        if not isinstance(self.clock_mhz, (int, float)) or self.clock_mhz <= 0:
            raise ConfigError(f"clock_mhz must be a positive number, not {self.clock_mhz!r}")

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
