"""FPGA boards by name: their amaranth-boards platform, clock, UART, resource budget and
the accelerator config that fits them.

Budgets are the device's totals from the vendor data sheets: LUT4s, flip-flops,
multiplier blocks (ECP5 MULT18X18D, iCE40 SB_MAC16) and block RAM in bytes (ECP5 EBR:
18 kbit each; iCE40UP5K EBR: 4 kbit each — its SPRAM is not used by the generated
memories). `fit_problems` checks a config against them before any synthesis.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from hw import AcceleratorConfig, derive


class BoardError(ValueError):
    """An unknown board, or a config or model that does not fit one."""


@dataclass(frozen=True)
class Board:
    """One supported board."""

    name: str
    platform: str                 # "module:Class" in amaranth_boards
    family: str                   # "ecp5" or "ice40"
    device: str
    clk_in_mhz: float             # the board oscillator feeding the PLL
    luts: int
    ffs: int
    dsps: int
    bram_bytes: int
    max_baud: int                 # fastest rate its USB-UART bridge takes
    config: AcceleratorConfig = field(default_factory=AcceleratorConfig)
    description: str = ""

    def platform_class(self):
        """The amaranth-boards platform class (imported on demand)."""
        module, _, cls = self.platform.partition(":")
        return getattr(importlib.import_module(module), cls)


_EBR_ECP5 = 18 * 1024 // 8     # bytes per 18 kbit EBR
_EBR_ICE40 = 4 * 1024 // 8     # bytes per 4 kbit EBR

_SMALL_ECP5 = AcceleratorConfig(rows=4, cols=4, act_depth=2048, weight_depth=8192,
                                param_depth=512, program_depth=32, acc_depth=256)

BOARDS = {b.name: b for b in [
    Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", "LFE5U-85F", 25.0,
          83_640, 83_640, 156, 208 * _EBR_ECP5, 3_000_000,
          AcceleratorConfig(), "Radiona ULX3S, ECP5-85F, FTDI FT231X"),
    Board("ulx3s-12f", "amaranth_boards.ulx3s:ULX3S_12F_Platform", "ecp5", "LFE5U-12F", 25.0,
          12_096, 12_096, 28, 32 * _EBR_ECP5, 3_000_000,
          _SMALL_ECP5, "Radiona ULX3S, ECP5-12F"),
    Board("orangecrab-25f", "amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform",
          "ecp5", "LFE5U-25F", 48.0, 24_288, 24_288, 28, 56 * _EBR_ECP5, 1_000_000,
          AcceleratorConfig(rows=4, cols=4, act_depth=4096, weight_depth=16384,
                            param_depth=512, program_depth=32, acc_depth=256),
          "OrangeCrab r0.2, ECP5-25F (UART on its header)"),
    Board("ecpix5-85f", "amaranth_boards.ecpix5:ECPIX585Platform", "ecp5", "LFE5UM5G-85F",
          100.0, 83_640, 83_640, 156, 208 * _EBR_ECP5, 3_000_000,
          AcceleratorConfig(), "LambdaConcept ECPIX-5, ECP5-5G-85F, FT2232H"),
    Board("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", "iCE40UP5K",
          12.0, 5_280, 5_280, 8, 30 * _EBR_ICE40, 3_000_000,
          AcceleratorConfig(rows=2, cols=2, act_depth=1024, weight_depth=2048,
                            param_depth=128, program_depth=16, acc_depth=64, clock_mhz=24.0),
          "1BitSquared iCEBreaker, iCE40UP5K (the config that fits is tiny)"),
]}

DEFAULT_BOARD = "ulx3s-85f"


def names() -> list[str]:
    return list(BOARDS)


def get(name: str) -> Board:
    """The board `name`, or a BoardError listing the choices."""
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r}; choose one of: {', '.join(BOARDS)}") from None


def memory_bytes(config: AcceleratorConfig) -> int:
    """Block RAM bytes the accelerator's memories take for `config`."""
    d = derive(config)
    return d.act_bytes + d.weight_bytes + d.param_bytes + d.program_bytes + d.acc_bytes


def fit_problems(board: Board, config: AcceleratorConfig) -> list[str]:
    """What in `config` does not fit `board` (empty when it fits)."""
    problems = []
    multipliers = config.rows * config.cols
    if multipliers > board.dsps:
        problems.append(f"{config.label} needs {multipliers} multipliers, {board.name} has "
                        f"{board.dsps}")
    need = memory_bytes(config)
    if need > board.bram_bytes:
        problems.append(f"{config.label} memories need {need:,} bytes of block RAM, "
                        f"{board.name} has {board.bram_bytes:,}")
    return problems


def check_fit(board: Board, config: AcceleratorConfig, cm=None) -> None:
    """Raise BoardError naming what does not fit: the config on the board, or the compiled
    model's weights and activations in the config's memories."""
    problems = fit_problems(board, config)
    if problems:
        raise BoardError("; ".join(problems) + f"; try the board's default config "
                                               f"{board.config.label}")
    if cm is not None:
        from compiler.program import MemoryFitError, lower
        try:
            lower(cm.graph, config)
        except MemoryFitError as error:
            raise BoardError(f"{cm.name} does not fit {board.name} with {config.label}: "
                             f"{error}") from None
