"""What an accelerator config takes of an FPGA, counted before any synthesis.

`estimate(config, family)` is the resource use of `boards.top.AcceleratorTop` (PLL, UART,
host link, sequencer, datapath and memories of `hw.Accelerator`) in the cells nextpnr
reports:

- **Multiplier blocks** (ECP5 `MULT18X18D`, iCE40 `SB_MAC16`): one per PE, a fixed number
  per accumulator lane (the post-processor's partial products), a fixed number for the
  sequencer's and pool writer's arithmetic, and the MAC counter's (absent at 1x1, where
  its factors are one bit). Exact for the RTL of `CALIBRATED_AT` (yosys counts: ECP5
  2x2 and 8x8). iCE40: `ice40_blocks`, the products `hw.dsp.Multiplier` puts in a block
  there (yosys infers none), counted from the operand shapes.
- **Block RAMs** (ECP5 `DP16KD`, iCE40 `SB_RAM40_4K`): every memory of the design by its
  shape (`memories`), in the block mode that needs the fewest blocks, the way yosys maps
  it; a second read port doubles a memory. On ECP5 a memory that costs yosys less as LUT
  RAM (`TRELLIS_DPR16X4`, 16 words of 4 bits) goes there instead: it then takes LUTs, not
  block RAM. Exact for the builds in docs/boards.md.
- **LUTs** (ECP5 `TRELLIS_COMB`, iCE40 `ICESTORM_LC`): an estimate, `base + per row × R +
  per lane × C + per PE × R·C` plus the LUT RAM, a least-squares fit to the real builds
  and to yosys's counts (scaled × 1.096, the way nextpnr packs them) of 2x2, 4x2, 4x4,
  8x4 and 8x8; `LUT_MARGIN` says how far from them it may be (at most 8.4 % and 9.8 %
  over, for the 12F's 2x2).

The numbers are the RTL's at `CALIBRATED_AT`: a change to `hw/` that adds multipliers or
logic moves them; a yosys-only synthesis of a 2x2 (~30 s) says by how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from hw import AcceleratorConfig
from hw.bram import (ECP5_BRAM_COST, ECP5_LUTRAM, ECP5_MODES, blocks_needed,
                     fewest_blocks, instantiates)

# The commit of hw/ the constants below were measured on (yosys 0.70, nextpnr 0.11.1).
CALIBRATED_AT = "e29d20a"
# 11d6e8e (per-lane mode copies in the post-processor, a fabric copy of each PE's product)
# has the same multiplier and block RAM counts; its 8x8 build (70 MHz) packed 23,535
# TRELLIS_COMB, 7.3 % over the LUT estimate (tests/boards/test_fit.py checks it against
# LUT_MARGIN).
# Relative error of the LUT estimate against the builds it was fitted to, with room for
# place-and-route's run-to-run spread: a need within this of the budget may not fit.
LUT_MARGIN = 0.10


# The sequencer's output-size multiplies (conv_h, conv_w, conv_h x conv_w), in
# `dsp_fixed`; `serial_size` makes them on one block in turn.
SIZE_MULTIPLIERS = 3


def ice40_blocks(config: AcceleratorConfig) -> int:
    """SB_MAC16s of `config`: `hw.dsp.Multiplier` instantiates one for every product of
    at least `hw.dsp.ICE40_BLOCK_BITS` bits whose operands fit 16 bits, and the build
    lets yosys infer none (`boards.build`), so the count is the RTL's multiplies by their
    operand widths (unsigned widths; a signed operand counts its sign)."""
    from hw.dsp import ICE40_BLOCK_BITS, ICE40_WIDTH
    R, C = config.rows, config.cols
    A = max(1, (config.act_depth - 1).bit_length())
    pes = R * C                                                     # PEs: block=True
    lane = [(16, 16), (16, 15), (16, 16), (16, 15)] if config.compact_post \
        else [(17, 17), (17, 14), (16, 17), (16, 14)]                # post-processor
    products = lane * C
    blocks = 0
    if config.standalone_pool:
        blocks += 2           # the feeder's two products (block_products); the pool
                              # writer has none
    else:
        products += [(10, 10), (A, 12)]                             # feeder
        products += [(10, 12), (10, 16), (10, 16), (10, A + 2), (10, 14)]  # pool writer
    if config.serial_size:
        blocks += 1           # the output size's three products in turn: block=True
    else:
        products += [(11, 14), (11, 14), (11, 11)]                  # output size
    if R * C > 1:
        products.append((13, (R * C).bit_length()))                 # MAC counter
    return pes + blocks + sum(1 for a, b in products
                              if a <= ICE40_WIDTH and b <= ICE40_WIDTH
                              and a + b >= ICE40_BLOCK_BITS)


@dataclass(frozen=True)
class MemoryShape:
    """One memory of the design as the RAM mapper sees it."""

    name: str
    depth: int                 # words
    width: int                 # bits per word
    byte_writes: bool          # written a byte at a time (byte enables)
    copies: int = 1            # read ports: yosys gives each its own copy
    # an hw.bram.BlockRAM: on an ECP5 its own DP16KD / PDPW16KD instances
    # (hw.bram.blocks_needed), not yosys's choice of mode; q_hold as its BlockRAM's
    block_ram: bool = False
    q_hold: bool = False


def memories(config: AcceleratorConfig) -> list[MemoryShape]:
    """The memories `hw.Accelerator` (and its host link) instantiate for `config`."""
    from hw.accelerator import FEED_LATENCY, WEIGHT_LEAD, held_params, whole_descriptor
    from hw.delay import ram_depth
    from hw.isa import DESCRIPTOR_BYTES, PARAM_BYTES
    from hw.link import MAX_PAYLOAD
    R, C = config.rows, config.cols
    beat = config.program_beat_bytes
    delays = []
    if config.ram_delays:
        # hw.delay.DelayLine: one RAM per delayed signal, at least 256 words
        depth = ram_depth(FEED_LATENCY)
        delays = [MemoryShape("weight address delay", depth,
                              max(1, (config.weight_depth // R - 1).bit_length()), False),
                  # one-pixel tiles: the accumulator's flags ride flip-flops
                  *([MemoryShape("accumulator tag delay", depth, 15, False)]
                    if config.acc_depth > 1 else []),
                  # the tag: (oh, ow, ot), or (first pixel, ot) for the sequential writer
                  MemoryShape("pixel tag delay", depth, 13 if config.standalone_pool else 32,
                              False)]
    return [
        # R banks of one byte per word; the feeder and the pool writer each read it
        # (without pool-on-write the writer does not)
        MemoryShape("activations", config.act_depth, 8 * R, True,
                    copies=1 if config.standalone_pool else 2, block_ram=True),
        # one word is a whole R x C weight tile
        MemoryShape("weights", config.weight_depth // R, 8 * R * C, True, block_ram=True),
        MemoryShape("params", config.param_depth, 8 * PARAM_BYTES, True,
                    block_ram=not held_params(config), q_hold=True),
        # a descriptor is DESCRIPTOR_BYTES / program_beat_bytes words
        MemoryShape("program", config.program_depth * DESCRIPTOR_BYTES // beat, 8 * beat,
                    True, block_ram=whole_descriptor(config)),
        # one pixel of C int32 partial sums (one pixel: a register, hw.accumulator)
        *([MemoryShape("accumulators", config.acc_depth, config.acc_bits * C, False,
                       block_ram=True)]
          if config.acc_depth > 1 else []),
        MemoryShape("link staging", MAX_PAYLOAD, 8, False),
        *delays,
    ]


@dataclass(frozen=True)
class Family:
    """An FPGA family: its cells, block RAM modes and the design's cost model on it."""

    name: str
    lut_cell: str
    dsp_cell: str
    bram_cell: str
    bram_bits: int                           # bits per block RAM
    bram_modes: tuple[tuple[int, int], ...]  # (depth, width) of one block
    byte_lane: int | None                    # data bits per byte enable (ECP5: 9); None: bit enables
    bram_cost: int                           # yosys's cost of one block
    lutram: tuple[int, int, int] | None      # (depth, width, cost) of one LUT RAM cell
    luts_per_lutram: int                     # LUT sites one LUT RAM cell takes
    dsp_pe_max: int | None                   # PE products yosys maps to blocks (None: all)
    dsp_per_lane: int
    dsp_fixed: int
    dsp_counter: int                         # the MAC counter's, when R*C > 1
    lut_base: int
    lut_per_row: int                         # feeder, pool writer, activation bank logic
    lut_per_lane: int                        # post-processor, accumulator
    lut_per_pe: int
    # LUT cells each reduction of AcceleratorConfig saves (a negative number costs),
    # measured where it matters; none counted where not measured (an over-estimate)
    lut_saved: tuple[tuple[str, int], ...] = ()
    lut_saved_per_lane: tuple[tuple[str, int], ...] = ()    # the same, per lane


FAMILIES = {
    "ecp5": Family(
        "ecp5", "TRELLIS_COMB", "MULT18X18D", "DP16KD", 18 * 1024, ECP5_MODES,
        byte_lane=9, bram_cost=ECP5_BRAM_COST, lutram=ECP5_LUTRAM,
        # a DPR16X4: two LUTs in RAM mode, two blocked by its write port, the read muxes
        # and write decode (the ULX3S-12F's 32-word program memory: 128 cells, ~1,550 LUTs)
        luts_per_lutram=12,
        dsp_pe_max=None, dsp_per_lane=4, dsp_fixed=10, dsp_counter=1,
        lut_base=5_440, lut_per_row=305, lut_per_lane=1_190, lut_per_pe=71),
    "ice40": Family(
        "ice40", "ICESTORM_LC", "SB_MAC16", "SB_RAM40_4K", 4 * 1024,
        ((2048, 2), (1024, 4), (512, 8), (256, 16)),
        byte_lane=None, bram_cost=64, lutram=None, luts_per_lutram=0,
        dsp_pe_max=4, dsp_per_lane=5, dsp_fixed=5, dsp_counter=0,  # unused: ice40_blocks
        # Calibrated on hw f81568b with the blocks hw.dsp instantiates (yosys infers none;
        # the counts before hw 764c324 came from netlists where yosys's inference had
        # dropped the PE's and some post-processor products): the design without
        # reductions packs 13,025 LCs at 1x1 and 18,156 at 2x2 (three of the
        # post-processor's four 17-bit partial products per lane are LUTs); rows against
        # lanes split as first measured (395 : 1,530).
        lut_base=7_894, lut_per_row=1_053, lut_per_lane=4_078, lut_per_pe=0,
        # what each reduction saves: the first four as measured one at a time (656, 940,
        # -35, 678 of 10,571 LCs at hw 10d5f37), scaled to what they save together at
        # 1x1 now (2,246 LCs: 13,025 -> 10,779); compact_feeder 84 (8,230 -> 8,146);
        # compact_post per lane (its 16x16 products are blocks, its shift a window):
        # 10,695 -> 8,146 at 1x1, 2,549, and 93 more since its saturation and sticky
        # bits come from what the shifter drops (hw c65198d: 8,053). Then (ice3, steps
        # at 1x1 in docs/boards.md): STATUS sent live, the descriptor read into place,
        # the 1x1 MAC count, standalone_pool, the PARAM record held in its memory port
        # and compact_post's static mode and missing copy stage: fitted to the 1x1's
        # 6,777 and the 2x2's 9,301 (the linear model cannot tell the 1x1-only changes
        # from standalone_pool's share). Then one-pixel tiles (acc_depth 1: a register
        # accumulator, constant n, no divider), the sequential pool writer with the
        # feeder's products in the freed blocks, the serial CRC, the size products on one
        # block, compact_post's clamp in the output stage: fitted to the 1x1's 5,196 and
        # the 2x2's 7,199 (hw 680b873 at the registry's 18 MHz; the same RTL counted
        # 5,271 at 24 MHz and 5,280 at 19.875: yosys's mapping moves by ~1 %), the steps
        # at 1x1 split as measured where they belong to one field
        lut_saved=(("narrow_program", 728), ("ram_delays", 943), ("serial_size", -4),
                   ("compact_link", 1_165), ("compact_feeder", 84),
                   ("standalone_pool", 1_421), ("one_pixel_tiles", 364)),
        lut_saved_per_lane=(("compact_post", 2_640), ("one_pixel_tiles", 488))),
}


@dataclass(frozen=True)
class MemoryUse:
    """Where one memory goes: block RAMs, or LUT RAM cells."""

    memory: MemoryShape
    brams: int
    lutrams: int


@dataclass(frozen=True)
class Estimate:
    """Resources `config` takes on `family`; `luts` is an estimate (±LUT_MARGIN)."""

    config: AcceleratorConfig
    family: Family
    dsps: int
    brams: int
    luts: int
    memories: tuple[MemoryUse, ...]


def _blocks(memory: MemoryShape, family: Family) -> int:
    """Blocks of the cheapest mode for one copy of `memory`."""
    return fewest_blocks(memory.width, memory.depth, 8 if memory.byte_writes else None,
                         family.bram_modes, family.byte_lane)


def place_memory(memory: MemoryShape, family: Family) -> MemoryUse:
    """Block RAMs or LUT RAM for `memory`, whichever yosys's cost model prefers (block RAM
    on a tie)."""
    byte = 8 if memory.byte_writes else None
    if memory.block_ram and family.name == "ecp5" and instantiates(
            memory.width, memory.depth, byte, q_hold=memory.q_hold):
        return MemoryUse(memory, blocks_needed(memory.width, memory.depth, byte,
                                               memory.copies, q_hold=memory.q_hold), 0)
    brams = _blocks(memory, family)
    if family.lutram is not None:
        depth, width, cost = family.lutram
        cells = ceil(memory.depth / depth) * ceil(memory.width / width)
        if cells * cost < brams * family.bram_cost:
            return MemoryUse(memory, 0, cells * memory.copies)
    return MemoryUse(memory, brams * memory.copies, 0)


def _reduced(config: AcceleratorConfig, name: str) -> bool:
    """Whether `config` has the reduction `name` of Family.lut_saved."""
    if name == "narrow_program":
        return config.program_beat_bytes < 32
    if name == "one_pixel_tiles":
        return config.acc_depth == 1
    return getattr(config, name)


def estimate(config: AcceleratorConfig, family: str | Family) -> Estimate:
    """The resources `config` takes on `family` ("ecp5" or "ice40")."""
    fam = FAMILIES[family] if isinstance(family, str) else family
    R, C = config.rows, config.cols
    uses = tuple(place_memory(memory, fam) for memory in memories(config))
    pes = R * C if fam.dsp_pe_max is None else min(R * C, fam.dsp_pe_max)
    dsps = (pes + fam.dsp_per_lane * C + fam.dsp_fixed + (fam.dsp_counter if R * C > 1 else 0)
            - (SIZE_MULTIPLIERS - 1 if config.serial_size else 0))
    if fam.name == "ice40":
        dsps = ice40_blocks(config)
    luts = (fam.lut_base + fam.lut_per_row * R + fam.lut_per_lane * C + fam.lut_per_pe * R * C
            + fam.luts_per_lutram * sum(use.lutrams for use in uses)
            - sum(saved for name, saved in fam.lut_saved if _reduced(config, name))
            - C * sum(saved for name, saved in fam.lut_saved_per_lane if _reduced(config, name)))
    return Estimate(config, fam, dsps, sum(use.brams for use in uses), luts, uses)
