"""FPGA boards by name: their amaranth-boards platform, clock, UART, resource budget and
the accelerator config that fits them.

Budgets are the device's totals from the vendor data sheets: LUT4s, flip-flops,
multiplier blocks (ECP5 MULT18X18D, iCE40 SB_MAC16) and block RAMs (ECP5 DP16KD: 18 kbit;
iCE40UP5K SB_RAM40_4K: 4 kbit; its SPRAM is not used by the generated memories).
`fit_problems` checks a config against them before any synthesis, with the resource
estimate of `boards.fit`.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field

from hw import AcceleratorConfig, derive

from . import fit


class BoardError(ValueError):
    """An unknown board, or a config or model that does not fit one."""


@dataclass(frozen=True)
class Board:
    """One supported board. `config` is the accelerator config built when none is given:
    the largest that fits, or, where none does, the smallest (which the fit check then
    refuses, saying what it needs)."""

    name: str
    platform: str                 # "module:Class" in amaranth_boards
    family: str                   # "ecp5" or "ice40": a key of boards.fit.FAMILIES
    device: str
    clk_in_mhz: float             # the board oscillator feeding the PLL
    luts: int
    ffs: int
    dsps: int
    brams: int                    # block RAMs (DP16KD / SB_RAM40_4K)
    max_baud: int                 # fastest rate its USB-UART bridge takes
    config: AcceleratorConfig = field(default_factory=AcceleratorConfig)
    description: str = ""
    # nextpnr's placement seed for a build that gives none (None: nextpnr's own): the
    # seed of the build the default config's clock comes from, so that the default
    # build is that build (the flow is deterministic for a netlist, a clock and a seed)
    seed: int | None = None

    def platform_class(self):
        """The amaranth-boards platform class (imported on demand)."""
        module, _, cls = self.platform.partition(":")
        return getattr(importlib.import_module(module), cls)

    @property
    def bram_bytes(self) -> int:
        """Block RAM in bytes (the data bits of all its blocks)."""
        return self.brams * fit.FAMILIES[self.family].bram_bits // 8


# Memory depths of the small ECP5 boards. At 2x2 they hold digits-cnn (832 activation
# words, 7,632 weight words); fmnist-cnn needs 51,488 weight words at 2x2 (100 KiB),
# more block RAM than these devices have.
_SMALL_ECP5 = AcceleratorConfig(rows=2, cols=2, act_depth=2048, weight_depth=8192,
                                param_depth=512, program_depth=32, acc_depth=256)

# The iCE40UP5K's config: 1x1 with every reduction of hw.AcceleratorConfig.
_ICE40_REDUCED = AcceleratorConfig(rows=1, cols=1, act_depth=1024, weight_depth=2048,
                                   param_depth=128, program_depth=16, acc_depth=1,
                                   clock_mhz=18.0, program_beat_bytes=2, ram_delays=True,
                                   serial_size=True, compact_link=True, compact_post=True,
                                   compact_feeder=True, standalone_pool=True)

BOARDS = {b.name: b for b in [
    Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", "LFE5U-85F", 25.0,
          83_640, 83_640, 156, 208, 3_000_000,
          # 125 MHz with placement seed 2: the 8x8 met it at 125.55 MHz post-route at
          # 3935bac (docs/boards.md; the flow is deterministic for a netlist, a clock
          # and a seed, but a change to any of them re-rolls placement: seeds 0 and 1
          # of that netlist routed to 118.50 and 110.13 MHz)
          AcceleratorConfig(clock_mhz=125.0), "Radiona ULX3S, ECP5-85F, FTDI FT231X",
          seed=2),
    Board("ulx3s-12f", "amaranth_boards.ulx3s:ULX3S_12F_Platform", "ecp5", "LFE5U-12F", 25.0,
          12_096, 12_096, 28, 32, 3_000_000,
          _SMALL_ECP5, "Radiona ULX3S, ECP5-12F"),
    Board("orangecrab-25f", "amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform",
          "ecp5", "LFE5U-25F", 48.0, 24_288, 24_288, 28, 56, 1_000_000,
          dataclasses.replace(_SMALL_ECP5, act_depth=4096, weight_depth=16384),
          "OrangeCrab r0.2, ECP5-25F (UART on its header)"),
    Board("ecpix5-85f", "amaranth_boards.ecpix5:ECPIX585Platform", "ecp5", "LFE5UM5G-85F",
          100.0, 83_640, 83_640, 156, 208, 3_000_000,
          AcceleratorConfig(), "LambdaConcept ECPIX-5, ECP5-5G-85F, FT2232H"),
    # The UP5K gets the reduced variant (hw.AcceleratorConfig: descriptors fetched two
    # bytes at a time, tags delayed in block RAM, the output size on one block, compact
    # link, post-processor and feeder, max pools as descriptors of their own, one-pixel
    # tiles): 5,196 of its 5,280 LCs, all 8 SB_MAC16, 19 of 30 block RAMs; 22.04 MHz
    # post-route, met at 18 MHz (24 and 19.875 were not: docs/boards.md).
    Board("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", "iCE40UP5K",
          12.0, 5_280, 5_280, 8, 30, 3_000_000, _ICE40_REDUCED,
          "1BitSquared iCEBreaker, iCE40UP5K (the reduced 1x1 only)"),
]}

DEFAULT_BOARD = "ulx3s-85f"

# Array sizes hw.Accelerator builds: powers of two with cols <= rows.
SIZES = [(r, c) for r in (1, 2, 4, 8, 16, 32, 64) for c in (1, 2, 4, 8, 16, 32, 64) if c <= r]


def names() -> list[str]:
    return list(BOARDS)


def get(name: str) -> Board:
    """The board `name`, or a BoardError listing the choices."""
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r}; choose one of: {', '.join(BOARDS)}") from None


def memory_bytes(config: AcceleratorConfig) -> int:
    """Bytes the accelerator's memory spaces hold for `config` (what a model can use; the
    block RAMs they take are `boards.fit.estimate(...).brams`)."""
    d = derive(config)
    return d.act_bytes + d.weight_bytes + d.param_bytes + d.program_bytes + d.acc_bytes


@dataclass(frozen=True)
class Shortfall:
    """One resource `config` needs more of than `board` has."""

    cell: str
    need: int
    have: int
    estimated: bool = False       # an estimate (LUTs), not an exact count
    detail: str = ""

    def __str__(self):
        need = f"~{self.need:,} {self.cell} (estimate, ±{fit.LUT_MARGIN:.0%})" if self.estimated \
            else f"{self.need:,} {self.cell}"
        return f"{need} of {self.have:,}" + (f" ({self.detail})" if self.detail else "")


def shortfalls(board: Board, config: AcceleratorConfig,
               estimate: fit.Estimate | None = None) -> list[Shortfall]:
    """What `config` needs more of than `board` has, by `boards.fit.estimate`."""
    e = estimate or fit.estimate(config, board.family)
    family = e.family
    found = []
    if e.luts > board.luts:
        found.append(Shortfall(family.lut_cell, e.luts, board.luts, estimated=True))
    if e.dsps > board.dsps:
        found.append(Shortfall(family.dsp_cell, e.dsps, board.dsps))
    if e.brams > board.brams:
        uses = sorted((u for u in e.memories if u.brams), key=lambda u: -u.brams)
        found.append(Shortfall(family.bram_cell, e.brams, board.brams, detail=", ".join(
            f"{u.memory.name} {u.brams}" for u in uses)))
    return found


def fit_problems(board: Board, config: AcceleratorConfig) -> list[str]:
    """What in `config` does not fit `board` (empty when it fits)."""
    return [str(s) for s in shortfalls(board, config)]


def with_size(board: Board, rows: int, cols: int) -> AcceleratorConfig:
    """The board's default config with another array size (the same memory depths)."""
    return dataclasses.replace(board.config, rows=rows, cols=cols)


def largest_fit(board: Board) -> AcceleratorConfig | None:
    """The largest array (most PEs, then the squarest) that fits `board` with its memory
    depths, or None when none does."""
    fitting = [with_size(board, r, c) for r, c in SIZES
               if board.config.weight_depth % r == 0 and not shortfalls(board,
                                                                       with_size(board, r, c))]
    return max(fitting, key=lambda c: (c.rows * c.cols, c.cols), default=None)


def check_fit(board: Board, config: AcceleratorConfig, cm=None) -> None:
    """Raise BoardError naming what does not fit: the config on the board (resource,
    need and budget, and the config to try instead), or the compiled model's weights and
    activations in the config's memories."""
    problems = fit_problems(board, config)
    if problems:
        # the board's own config where it fits (it is the one built and tested there)
        best = board.config if not fit_problems(board, board.config) else largest_fit(board)
        if best is None:
            hint = f"no accelerator config fits {board.name}; see `samoyed boards`"
        else:
            hint = f"try a smaller --config: {best.label} fits {board.name}"
        raise BoardError(f"{config.label} does not fit {board.name} ({board.device}): it "
                         f"needs {', '.join(problems)}; {hint}")
    if cm is not None:
        from compiler.program import MemoryFitError, lower
        try:
            lower(cm.graph, config)
        except MemoryFitError as error:
            raise BoardError(f"{cm.name} does not fit {board.name} with {config.label}: "
                             f"{error}") from None
