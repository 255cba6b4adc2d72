"""The accelerator top: host link, memories, sequencer and the CONV datapath.

``Accelerator(config)`` is what a board top instantiates and what the RTL tests drive:
two byte streams (``i_stream`` from the host, ``o_stream`` to it) speaking the framed
protocol of ``docs/protocol.md``, plus status outputs for LEDs. Inside::

    HostLink ──bus──► ACT / WGT / PRM / PRG memories (host side, while idle)
    Sequencer ─cmd─► Feeder ─act─► SystolicArray ─sums─► Accumulator ─► PostProcessor
        │  └─ weight tile per step (read 4 cycles after the command) ─┘        │
        └─ PARAM records ────────────────────────────────────────────────────► │
    ACT ◄── PoolWriter ◄── packer ◄─────────────────────────────────────────────┘

The sequencer executes descriptors (``hw/isa.py``) exactly as ``sim/machine.py`` walks
them: for every output-channel tile, pixel tile, kernel tap and K-tile it sends one
feeder command of ``n`` pixels; a new weight tile is swapped in with every command.
Everything behind the feeder has a fixed latency and never stalls, so the cycle model
of ``sim/cycles.py`` is the sum of the command lengths plus fixed fill and drain
times. ``docs/accelerator.md`` has the timing and the memory-port plan.

Limits of this implementation (refused at construction with :class:`hw.ConfigError`):
power-of-two rows and cols, ``cols <= rows`` (one activation word per post-processed
pixel), the whole-tile weight port. Programs may use ``CONV`` (with pool-on-write and
raw int32 outputs) and ``END``; ``host.rtl.check_program`` refuses the other opcodes
before anything is sent.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .accumulator import ACC_LATENCY, Accumulator
from .bram import BlockRAM
from .array import ArrayTiming, SystolicArray
from .config import AcceleratorConfig, ConfigError, derive
from .delay import DelayLine
from .dsp import Multiplier
from .fanout import KEEP_PREFIX, copies
from .feeder import FEED_LATENCY, Feeder
from .isa import DESCRIPTOR, DESCRIPTOR_BYTES, PARAM, PARAM_BYTES, Opcode, Space
from .link import HostLink
from .poolwrite import POOL_WRITE_LATENCY, PoolWriter, reciprocal
from .postproc import PARAM_BLACKOUT, POST_LATENCY, PostProcessor

__all__ = ["Accelerator", "check_config", "conv_cycles", "WEIGHT_LEAD", "DRAIN_CYCLES",
           "OT_GAP", "SETUP_CYCLES", "DIVIDE_CYCLES", "RAW_BEATS", "fetch_beats",
           "extra_setup_cycles", "SERIAL_SIZE_CYCLES", "held_params", "whole_descriptor"]

PACK_LATENCY = 1
RAW_BEATS = 4                     # an int32 lane is written as 4 byte words
# Weight read issued this long after a command is accepted: read, the read data into a
# register, loaded into the array the cycle before the command's first pixel arrives.
WEIGHT_LEAD = FEED_LATENCY - 3


def OT_GAP(cols: int) -> int:
    """Fewest cycles between the first commands of two output-channel tiles: the next
    tile's C PARAM records load one per cycle after the previous swap's 3-cycle blackout,
    and a raw layer's packer needs 4 cycles per pixel."""
    return max(cols + 6, RAW_BEATS)


def DRAIN_CYCLES(rows: int, cols: int) -> int:
    """Cycles after a descriptor's last pixel is issued until its last write is done."""
    return (FEED_LATENCY + ArrayTiming(rows, cols).latency + ACC_LATENCY + POST_LATENCY
            + PACK_LATENCY + (RAW_BEATS - 1) + POOL_WRITE_LATENCY + 1)


# FETCH, FETCH_WAIT, LATCH, DECODE, SIZE, SIZE_WAIT, CONV_HW, PIXELS, PIXELS_WAIT,
# PIXELS_LATCH, PIXELS_CHECK, TILE
SETUP_CYCLES = 12
DIVIDE_CYCLES = 14      # tile_px / conv_w (13 quotient bits + remainder), several tiles only
# serial_size: SIZE, MUL_H, MUL_W, CONV_W, PIXELS, MUL_HW, HW_LATCH (the three products
# in turn on one multiplier) in place of SIZE .. PIXELS_CHECK (7 cycles)
SERIAL_SIZE_CYCLES = 7 - 7


def fetch_beats(config: AcceleratorConfig) -> int:
    """Program memory reads per descriptor."""
    return DESCRIPTOR_BYTES // config.program_beat_bytes


def whole_descriptor(config: AcceleratorConfig) -> bool:
    """Whether the program memory's word is a whole descriptor: then it is an
    hw.bram.BlockRAM, read in FETCH and registered twice (FETCH_WAIT) before LATCH;
    narrower words land a beat at a time from an amaranth Memory."""
    return fetch_beats(config) == 1


def held_params(config: AcceleratorConfig) -> bool:
    """Whether the PARAM memory's read port holds the post-processor's record itself
    (compact_post at 1x1): then it is an amaranth Memory, not an hw.bram.BlockRAM."""
    return config.compact_post and config.cols == 1


def _act_write_ahead(config: AcceleratorConfig) -> int:
    """Activation blocks for each copy of the write address and enables (hw.bram's
    `write_ahead`), or 0: without compact_link the host's and the pool writer's writes
    come from registers, so the memory registers their address and enables a cycle
    ahead, beside its blocks (one mux's output reaching all 32 blocks of the 8x8 was
    a 6 ns route)."""
    return 0 if config.compact_link else 4


def _act_read_ahead(config: AcceleratorConfig) -> int:
    """The same for the read port the feeder and the host share (hw.bram's
    `read_ahead`), or 0: where the host's read address is a register (not ram_delays)
    and the feeder can give its address a cycle early. One mux of the two reaching the
    8x8's 16 blocks was a 6-7.5 ns route; one copy for four blocks, an 8.1 ns route
    from the copy to the farthest of them (blocks of a group are not placed together),
    so a copy a block."""
    return 0 if config.compact_link or config.ram_delays else 1


def _wgt_read_ahead(config: AcceleratorConfig) -> int:
    """Weight blocks for each copy of the weight port's address register (hw.bram's
    `read_ahead`: the tile address or the host's, chosen a cycle ahead), or 0
    (ram_delays: the address comes out of a delay line, its port's own)."""
    return 0 if config.ram_delays else 1


def _acc_read_ahead(config: AcceleratorConfig) -> int:
    """Accumulator blocks for each copy of its read address (hw.bram's `read_ahead`),
    or 0 (ram_delays: the small FPGAs' tags come out of a RAM, not out of registers a
    cycle ahead). One choice by `is_conv` of the array's and the bypass's tag reaching
    the 8x8's blocks was a 7.7 ns route."""
    return 0 if config.ram_delays else 1


def extra_setup_cycles(config: AcceleratorConfig) -> tuple[int, int]:
    """Cycles `config`'s reductions add to every descriptor: (to its fetch, END
    included; to the setup of the others). A descriptor of several beats takes a cycle
    each in FETCH, and the last lands in LATCH, without FETCH_WAIT."""
    beats = fetch_beats(config)
    return (0 if beats == 1 else beats - 2,
            SERIAL_SIZE_CYCLES if config.serial_size else 0)


def conv_cycles(rows: int, cols: int, ot_cycles: int, oc_tiles: int, several_tiles: bool
                ) -> int:
    """Cycles of one CONV descriptor, from its fetch to its last write, when every
    output-channel tile issues commands for `ot_cycles` cycles (the sum of its commands'
    pixel counts). The sequencer's exact count: setup, the commands back to back (tiles
    start at least OT_GAP apart), one cycle to leave ISSUE, then the drain."""
    setup = SETUP_CYCLES + (DIVIDE_CYCLES if several_tiles else 0)
    issue = (oc_tiles - 1) * max(ot_cycles, OT_GAP(cols)) + ot_cycles
    return setup + issue + 1 + DRAIN_CYCLES(rows, cols) + 1


def check_config(config: AcceleratorConfig) -> None:
    """Raise ConfigError if this RTL cannot be built for `config`."""
    R, C = config.rows, config.cols
    for name, value in (("rows", R), ("cols", C)):
        if value & (value - 1):
            raise ConfigError(f"hw.Accelerator needs a power-of-two {name}, not {value}; "
                              f"use {1 << (value.bit_length() - 1)} or {1 << value.bit_length()}"
                              " (the program simulator runs any size)")
    if C > R:
        raise ConfigError(f"hw.Accelerator needs cols <= rows (one activation word per "
                          f"pixel), not {R}x{C}; use {C}x{C} or {R}x{R}")
    if config.load_rows != R:
        raise ConfigError(f"hw.Accelerator loads whole weight tiles; weight_load_rows="
                          f"{config.weight_load_rows} is only modelled; use None")
    if config.weight_depth % R:
        raise ConfigError(f"weight_depth={config.weight_depth} must be a multiple of rows={R}")
    if config.data_bits != 8 or config.acc_bits != 32:
        raise ConfigError(f"hw.Accelerator is built for 8-bit data and 32-bit accumulators, "
                          f"not data_bits={config.data_bits}, acc_bits={config.acc_bits}")


def _delay(m, value, cycles, name):
    """`value` delayed by `cycles` registers."""
    for stage in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{stage}", reset_less=False)
        m.d.sync += reg.eq(value)
        value = reg
    return value


class _HostPort:
    """One memory as the host link sees it: byte writes and byte reads."""

    def __init__(self, space, word_bytes):
        self.space = space
        self.word_bytes = word_bytes
        self.shift = exact_log2(word_bytes)


class Accelerator(wiring.Component):
    """The whole accelerator behind a framed byte-stream host link.

    Parameters
    ----------
    config : AcceleratorConfig
    link_timeout : int
        The host link's inter-byte timeout in cycles (see :class:`hw.link.HostLink`).
    image : hw.layout.MemoryImage or None
        Initial memory contents (simulation and preloaded bitstreams); None: zeros.

    Ports
    -----
    i_stream : In(stream.Signature(8))   bytes from the host
    o_stream : Out(stream.Signature(8))  bytes to the host
    running : Out(1)                     a program is executing
    done : Out(1)                        one-cycle pulse when it finishes
    """

    def __init__(self, config: AcceleratorConfig | None = None, *, link_timeout=1 << 16,
                 image=None):
        config = config or AcceleratorConfig()
        check_config(config)
        self.config = config
        self.derived = derive(config)
        self.link_timeout = link_timeout
        self.image = image
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "o_stream": Out(stream.Signature(8)),
            "running": Out(1),
            "done": Out(1),
            "descriptor": Out(range(config.program_depth)),
        })

    # ------------------------------------------------------------------ memories
    def _memories(self, m):
        """One memory per space. hw.bram.BlockRAMs (reads registered twice, in the block)
        for all but a narrow program memory, whose data lands in the descriptor a beat
        at a time (`whole_descriptor`), and the PARAM memory of `held_params`, whose port
        holds the record."""
        cfg, R, C = self.config, self.config.rows, self.config.cols
        img = self.image

        def init(name, words, word_bytes):
            if img is None:
                return []
            raw = getattr(img, name).reshape(-1).tobytes()
            raw = raw[:words * word_bytes]
            return [[raw[i * word_bytes + b] if i * word_bytes + b < len(raw) else 0
                     for b in range(word_bytes)]
                    for i in range((len(raw) + word_bytes - 1) // word_bytes)]

        mems = {}
        for space, name, depth, word_bytes in (
                (Space.ACTIVATIONS, "act", cfg.act_depth, R),
                (Space.WEIGHTS, "wgt", cfg.weight_depth // R, R * C),
                (Space.PARAMS, "prm", cfg.param_depth, PARAM_BYTES),
                (Space.PROGRAM, "prg", cfg.program_depth * fetch_beats(cfg),
                 cfg.program_beat_bytes)):
            shape = data.ArrayLayout(unsigned(8), word_bytes)
            if space in (Space.ACTIVATIONS, Space.WEIGHTS) or (
                    space == Space.PARAMS and not held_params(cfg)) or (
                    space == Space.PROGRAM and whole_descriptor(cfg)):
                # hw.bram: the read data out of the block's own output register
                mem = BlockRAM(shape, depth, granularity=8,
                               # the pool writer reads the activations (no pools
                               # on write: it does not)
                               read_ports=2 if space == Space.ACTIVATIONS
                               and not cfg.standalone_pool else 1,
                               init=init(name, depth, word_bytes),
                               # the PARAM loader holds its record (q_en) in a stall
                               q_hold=space == Space.PARAMS,
                               write_ahead=_act_write_ahead(cfg)
                               if space == Space.ACTIVATIONS else 0,
                               read_ahead=_act_read_ahead(cfg)
                               if space == Space.ACTIVATIONS else
                               _wgt_read_ahead(cfg) if space == Space.WEIGHTS else 0)
            else:
                mem = Memory(shape=shape, depth=depth, init=init(name, depth, word_bytes))
            m.submodules[f"{name}_mem"] = mem
            mems[space] = (mem, word_bytes)
        return mems

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        lR, lC = exact_log2(R), exact_log2(C)
        timing = ArrayTiming(R, C)
        A = max(1, ceil_log2(cfg.act_depth))

        m.submodules.link = link = HostLink(self.link_timeout,
                                            space_sizes=self.derived.space_sizes,
                                            shape=(R, C), compact_status=cfg.compact_link,
                                            group_writes=cfg.group_writes)
        wiring.connect(m, wiring.flipped(self.i_stream), link.i_stream)
        wiring.connect(m, link.o_stream, wiring.flipped(self.o_stream))
        bus = link.bus

        mems = self._memories(m)
        act_mem, _ = mems[Space.ACTIVATIONS]
        wgt_mem, _ = mems[Space.WEIGHTS]
        prm_mem, _ = mems[Space.PARAMS]
        prg_mem, _ = mems[Space.PROGRAM]

        running = Signal()
        # RUN, RESET and the watchdog act a cycle later, from registers: the link's
        # decision takes most of a cycle, and the clear reaches every block.
        abort = Signal()
        start = Signal()
        m.d.sync += [abort.eq(bus.reset), start.eq(bus.start)]
        # The host's reads and writes see `running` through copies of a register that
        # falls with it and rises a cycle after it (`running` only rises on `start`):
        # `running` reaches every block, and its route into the link's read handshake
        # was the 8x8's slowest path (that handshake is a register of its own, below).
        # (compact_link: `running`, saving the cells)
        # (what host_idle will be next cycle)
        host_idle_next = ~running & ~start
        if cfg.compact_link:
            host_idle = [~running] * 2
        else:
            host_idle = copies(m, platform, host_idle_next, 2, "host_idle")

        # --- ports. The host uses one read and one write port per memory while idle;
        # during a run the datapath owns them (ACT: feeder read + writer read/write).
        act_rd = act_mem.read[0]               # feeder / host
        act_rd_pool = act_mem.read[-1]         # pool writer (not with standalone_pool)
        act_wr = act_mem.write
        wgt_rd, = wgt_mem.read
        wgt_wr = wgt_mem.write
        # held_params: the PARAM port's own data register holds the post-processor's
        # shadow record, and the host reads it there (its address holds still)
        held = held_params(cfg)
        if held:
            prm_rd = prm_mem.read_port()
            prm_wr = prm_mem.write_port(granularity=1)
        else:
            prm_rd, = prm_mem.read
            prm_wr = prm_mem.write
        if whole_descriptor(cfg):
            prg_rd, = prg_mem.read
            prg_wr = prg_mem.write
        else:
            prg_rd = prg_mem.read_port()
            prg_wr = prg_mem.write_port(granularity=1)
        rd_ports = {Space.ACTIVATIONS: act_rd, Space.WEIGHTS: wgt_rd, Space.PARAMS: prm_rd,
                    Space.PROGRAM: prg_rd}
        wr_ports = {Space.ACTIVATIONS: act_wr, Space.WEIGHTS: wgt_wr, Space.PARAMS: prm_wr,
                    Space.PROGRAM: prg_wr}

        # --- host bus: byte writes (idle only; the link NAKs BUSY otherwise). The
        # address, the byte and each memory's lane enables are decoded into registers,
        # which drive the blocks' write ports: the link's decision is not a route to the
        # block-RAM columns in the same cycle. The byte lands two cycles later (one with
        # compact_link; three for the activations, below). The activations' write port
        # is the pool writer's: the host's bytes go through its write stage
        # (hw.poolwrite's host_write), or with compact_link it is the writer's while
        # running: `act_wsel`, running a cycle late (the writer's first write comes many
        # cycles after RUN, its last before DONE, and no host write is accepted within
        # two cycles of either: a frame's answer comes between), selects.
        # (compact_link: no register, as the iCE40's slow clock needs none and its cells
        # are few)
        m.d.comb += bus.write.ready.eq(host_idle[0])
        host_d = m.d.comb if cfg.compact_link else m.d.sync
        accepted = bus.write.valid & host_idle[0]
        act_wsel = Signal()
        host_d += act_wsel.eq(running)
        for space, (mem, word_bytes) in mems.items():
            shift = exact_log2(word_bytes)
            name = space.name.lower()
            if cfg.compact_link:
                p, p_valid = bus.write.payload, accepted & (bus.write.payload.addr.space
                                                            == space)
                w = p
            else:
                # the link's write into registers here first, a set for each memory, so
                # each memory's decode sits beside it: one set reaching all four memories'
                # decoders was a route across the die (KEEP_PREFIX: copies yosys keeps)
                p = Signal.like(bus.write.payload, reset_less=True,
                                name=f"{KEEP_PREFIX}host_p_{name}")
                p_valid = Signal(name=f"host_valid_{name}")
                m.d.sync += [p.eq(bus.write.payload),
                             p_valid.eq(accepted & (bus.write.payload.addr.space == space))]
                w = Signal.like(bus.write.payload, reset_less=True,
                                name=f"{KEEP_PREFIX}host_w_{name}")
                m.d.sync += w.eq(p)
            # the byte's lane of the word
            lane = Const(1, word_bytes) << p.addr.offset[:shift] if shift else 1
            # (reset_less: as a reset register, yosys made the reset and p_valid one
            # LUT into every enable's synchronous reset, a route from the reset more)
            en = Signal(word_bytes, name=f"host_en_{name}",
                        reset_less=space == Space.WEIGHTS)
            host_d += en.eq(Mux(p_valid, lane, 0))
            port = wr_ports[space]
            if space == Space.ACTIVATIONS and _act_write_ahead(cfg):
                # through the pool writer's write stage (hw.poolwrite's host_write): the
                # port is the writer's alone
                host_act = dict(valid=p_valid, addr=p.addr.offset >> shift, data=p.data,
                                en=lane)
                continue
            with m.If(~act_wsel if space == Space.ACTIVATIONS else 1):
                m.d.comb += [
                    port.addr.eq(w.addr.offset >> shift),
                    port.data.eq(Cat(*([w.data] * word_bytes))),
                    port.en.eq(en),
                ]

        # host byte reads: one request at a time, answered a few cycles later (each step
        # below is a register: the link waits for read_data.valid). Every memory's read
        # data goes into a register before any logic (a block RAM's output
        # arrives 5.6 ns after the clock on an ECP5); WGT and PRM share theirs with the
        # weight and PARAM loaders (below), which own those ports while running. The
        # byte is picked in two steps, a 64-bit slice of the word, then the byte of the
        # slice: a 512-bit weight word's 64-way byte mux in one cycle was the 8x8
        # build's worst path.
        r_pending = Signal()
        r_wait = Signal()
        r_copy = Signal()            # (not compact_link: the wide words copied)
        r_select = Signal()
        r_fours = Signal()           # (not narrow_read: the slice a stage more)
        r_sliced = Signal()
        r_picked = Signal()          # (not narrow_read: the byte a stage more)
        r_have = Signal()
        # compact_link: words of at most 16 bytes (1x1, 2x2) pick their byte at once
        narrow_read = cfg.compact_link and max(w for _, w in mems.values()) <= 16
        r_slice = Signal(8)          # narrow_read: the byte
        r_lo = Signal(3)             # the byte within the slice
        r_space = Signal(Space)
        r_byte = Signal(16)          # byte index within the word
        r_data = Signal(8)
        m.d.comb += [
            bus.read_data.valid.eq(r_have),
            bus.read_data.payload.eq(r_data),
        ]
        r_taken = bus.read_addr.valid & bus.read_addr.ready
        if cfg.compact_link:
            m.d.comb += bus.read_addr.ready.eq(host_idle[0] & ~r_pending & ~r_wait
                                               & ~r_select & ~r_fours & ~r_sliced & ~r_picked
                                               & ~r_have)
        else:
            # ready as a register: idle and no read in any stage next cycle (a read moves
            # from stage to stage without a gap, from the request until the byte is
            # taken). As a decode of the stages it was two LUT levels in front of the
            # link's handshake and the enables of r_byte and r_space.
            r_ready = Signal()
            m.d.comb += bus.read_addr.ready.eq(r_ready)
            r_busy = (r_pending | r_wait | r_copy | r_select | r_fours | r_sliced | r_picked
                      | r_have)
            m.d.sync += r_ready.eq(host_idle_next & ~r_taken
                                   & ~(r_busy & ~(r_have & bus.read_data.ready)))
        ra = bus.read_addr.payload
        with m.If(r_taken):
            m.d.sync += [r_pending.eq(1), r_space.eq(ra.space), r_byte.eq(ra.offset[:16])]
        # the host's word address in each memory
        host_word = {space: ra.offset >> exact_log2(word_bytes)
                     for space, (mem, word_bytes) in mems.items()}
        # (not ram_delays: the weight and PARAM ports' addresses are registers, below)
        addr_registered = not cfg.ram_delays
        registered_ports = set()
        if addr_registered:
            registered_ports = {Space.WEIGHTS} if held else {Space.WEIGHTS, Space.PARAMS}
        for space in mems:
            if space == Space.ACTIVATIONS and _act_read_ahead(cfg):
                # the memory registers the address (read_ahead) beside its blocks: the
                # host's goes in when the port will be the host's next cycle
                with m.If(host_idle_next):
                    m.d.comb += [act_rd.addr.eq(host_word[space]), act_rd.en.eq(1)]
            elif space not in registered_ports:
                word = host_word[space]
                if addr_registered:
                    # the other ports wait the same cycle: the host's address from a
                    # register beside the memory, not from the link's across the die
                    word = Signal.like(
                        rd_ports[space].addr, reset_less=True,
                        name=f"{KEEP_PREFIX}host_word_{space.name.lower()}")
                    m.d.sync += word.eq(host_word[space])
                with m.If(host_idle[1]):
                    m.d.comb += [rd_ports[space].addr.eq(word), rd_ports[space].en.eq(1)]
        # the BlockRAMs' q are those registers (in the block on an ECP5)
        act_q, wgt_q = act_rd.q, wgt_rd.q
        if whole_descriptor(cfg):
            prg_q = prg_rd.q
        else:
            prg_q = Signal.like(prg_rd.data, reset_less=True)
            m.d.sync += prg_q.eq(prg_rd.data)
        prm_q = prm_rd.data if held else prm_rd.q
        read_q = {Space.ACTIVATIONS: act_q, Space.WEIGHTS: wgt_q, Space.PARAMS: prm_q,
                  Space.PROGRAM: prg_q}
        # (not compact_link) the words wider than a slice (the weights', PARAMs' and
        # descriptors') into plain registers first, a cycle more: their slice's 4-way
        # pick took bits of four blocks far apart on the die (the host's address holds
        # still until its byte is back)
        copy_words = not cfg.compact_link
        if copy_words:
            for space in (space for space, (_, word_bytes) in mems.items()
                          if word_bytes > 8):
                word = Signal.like(read_q[space], reset_less=True,
                                   name=f"r_word_{space.name.lower()}")
                m.d.sync += word.eq(read_q[space])
                read_q[space] = word
        to_select = r_copy if copy_words else r_select
        # (the weight and PARAM ports' addresses registered: a cycle more)
        with m.If(r_pending):
            m.d.sync += r_pending.eq(0)
            if not addr_registered:
                m.d.sync += to_select.eq(1)
            else:
                m.d.sync += r_wait.eq(1)
        with m.If(r_wait):
            m.d.sync += [r_wait.eq(0), to_select.eq(1)]
        with m.If(r_copy):
            m.d.sync += [r_copy.eq(0), r_select.eq(1)]
        if narrow_read:
            with m.If(r_select):
                m.d.sync += [r_select.eq(0), r_sliced.eq(1)]
            with m.If(r_select):
                with m.Switch(r_space):
                    for space, (mem, word_bytes) in mems.items():
                        with m.Case(space):
                            word = read_q[space].as_value()
                            shift = exact_log2(word_bytes)
                            m.d.sync += r_slice.eq(word.word_select(r_byte[:shift], 8)
                                                   if shift else word)
            with m.If(r_sliced):
                m.d.sync += [r_sliced.eq(0), r_have.eq(1), r_data.eq(r_slice)]
        else:
            # every memory's slice beside it: the space's choice is not a route from the
            # registers to all four memories. A slice in two steps: one of each four
            # (a LUT and its PFUMX, one level), then of those (the weight word's eight
            # 64-bit slices, an 8-way pick of block outputs from across the die, was
            # the 8x8's worst path asking 100 MHz).
            slices = {}
            for space, (mem, word_bytes) in mems.items():
                word = read_q[space].as_value()
                shift = exact_log2(word_bytes)
                width = min(64, 8 * word_bytes)
                quarters = [word[lo:lo + 4 * 64] for lo in range(0, len(word), 4 * 64)]
                fours = [Signal(width, name=f"r_four_{space.name.lower()}_{k}")
                         for k in range(len(quarters))]
                with m.If(r_select):
                    for four, quarter in zip(fours, quarters):
                        m.d.sync += four.eq(quarter.word_select(r_byte[3:min(shift, 5)], 64)
                                            if shift > 3 else quarter)
                slices[space] = Signal(width, name=f"r_slice_{space.name.lower()}")
                picked_four = (Cat(*fours).word_select(r_byte[5:shift], width) if shift > 5
                               else fours[0])
                with m.If(r_fours):
                    m.d.sync += slices[space].eq(picked_four)
            with m.If(r_select):
                m.d.sync += [r_select.eq(0), r_fours.eq(1)]
            with m.If(r_fours):
                m.d.sync += [r_fours.eq(0), r_sliced.eq(1), r_lo.eq(r_byte[:3])]
            # then each memory's byte of its slice, then the space's byte: a cycle each
            picked = {}
            for space, (mem, word_bytes) in mems.items():
                lo = r_lo[:min(exact_log2(word_bytes), 3)]
                picked[space] = Signal(8, name=f"r_byte_{space.name.lower()}")
                with m.If(r_sliced):
                    m.d.sync += picked[space].eq(slices[space].word_select(lo, 8)
                                                 if len(lo) else slices[space])
            with m.If(r_sliced):
                m.d.sync += [r_sliced.eq(0), r_picked.eq(1)]
            with m.If(r_picked):
                m.d.sync += [r_picked.eq(0), r_have.eq(1)]
                with m.Switch(r_space):
                    for space in mems:
                        with m.Case(space):
                            m.d.sync += r_data.eq(picked[space])
        with m.If(r_have & bus.read_data.ready):
            m.d.sync += r_have.eq(0)

        # --- datapath blocks (cleared by RESET / watchdog)
        def block(name, component):
            # each block its own copy of the clear (but on the small ram_delays
            # configs): one register reaching every block's flip-flops was a route
            # across the die
            clear = abort if cfg.ram_delays else copies(m, platform, bus.reset, 1,
                                                         f"abort_{name}")[0]
            m.submodules[name] = ResetInserter(clear)(component)
            return component

        tag_layout = data.StructLayout({"oh": 10, "ow": 10, "ot": 12})
        if cfg.standalone_pool:
            # the pool writer needs only whether a pixel is its tile's first, (0, 0)
            tag_layout = data.StructLayout({"first": 1, "ot": 12})
        feeder = block("feeder", Feeder(R, act_width=9, addr_width=A,
                                         min_cycles=timing.min_swap_interval,
                                         compact=cfg.compact_feeder,
                                         # the pool writer's blocks are free
                                         block_products=cfg.standalone_pool,
                                         registered_read=True,
                                         read_ahead=bool(_act_read_ahead(cfg))))
        array = block("array", SystolicArray(R, C, act_width=9, weight_width=8, acc_width=32))
        # max mode compares the feeder's activations only (MAXPOOL bypasses the array)
        acc = block("acc", Accumulator(C, cfg.acc_depth, max_bits=feeder.act_width,
                                       read_ahead=_acc_read_ahead(cfg)))
        post = block("post", PostProcessor(C, tag_width=0 if cfg.ram_delays
                                             else tag_layout.size, compact=cfg.compact_post,
                                           static_mode=cfg.compact_post,
                                           held_params=held,
                                           # one-pixel tiles (host.rtl.check_program)
                                           sparse_raw=cfg.compact_post
                                           and cfg.acc_depth == 1))
        writer = block("writer", PoolWriter(R, addr_width=A, pool=not cfg.standalone_pool,
                                            registered_read=True,
                                            write_ahead=bool(_act_write_ahead(cfg)),
                                            host_write=bool(_act_write_ahead(cfg))))

        wiring.connect(m, feeder.act, array.act)
        m.d.comb += array.swap.eq(feeder.swap)
        with m.If(running):
            m.d.comb += [act_rd.addr.eq(feeder.rd.addr), act_rd.en.eq(feeder.rd.en)]
        if _act_write_ahead(cfg):
            # the host's writes go through the writer (host_write)
            m.d.comb += [getattr(writer.host, k).eq(v) for k, v in host_act.items()]
            m.d.comb += [act_wr.addr.eq(writer.wr.addr), act_wr.en.eq(writer.wr.en),
                         act_wr.data.eq(writer.wr.data)]
        else:
            with m.If(act_wsel):
                m.d.comb += [act_wr.addr.eq(writer.wr.addr), act_wr.en.eq(writer.wr.en),
                             act_wr.data.eq(writer.wr.data)]
        m.d.comb += feeder.rd.data.eq(act_rd.q)
        if not cfg.standalone_pool:           # (otherwise the writer reads nothing)
            m.d.comb += [act_rd_pool.addr.eq(writer.rd.addr),
                         act_rd_pool.en.eq(writer.rd.en),
                         writer.rd.data.eq(act_rd_pool.q)]

        # --- descriptor registers and derived values. A narrow program memory
        # (program_beat_bytes) brings the descriptor in one read at a time, each into
        # its own place (not shifted along, so the bits of fields nothing reads are
        # left out).
        beats = fetch_beats(cfg)
        beat_bits = 8 * cfg.program_beat_bytes
        if beats == 1:
            d = Signal(DESCRIPTOR)
        else:
            d_words = Signal(beats * beat_bits, reset_less=True)
            d = DESCRIPTOR(d_words[:DESCRIPTOR.size])
            beat = Signal(range(beats))
            landing = Signal(range(beats))    # the word the read data belongs in
        is_conv = Signal()
        is_max = Signal()
        is_add = Signal()
        # registers, a cycle behind the descriptor (it changes in LATCH; the first reader
        # is SIZE's): a decode of `op` read all over the die is a route from one LUT
        m.d.sync += [is_conv.eq(d.op == Opcode.CONV), is_max.eq(d.op == Opcode.MAXPOOL),
                     is_add.eq(d.op == Opcode.ADD)]
        bypass = ~is_conv            # MAXPOOL / AVGPOOL / ADD: feeder -> accumulators
        loop_h = Signal(4)           # taps per pixel: kernel (CONV), window (MAXPOOL),
        loop_w = Signal(4)           # the whole input (AVGPOOL), the two inputs (ADD: 1x2)
        kt = Signal(12)              # K-tiles: ceil(in_c / R); 1 for the other ops
        oct_ = Signal(12)            # output-channel tiles: ceil(out_c / C)
        groups = Signal(12)          # ceil(out_c / R)
        num_h = Signal(11)
        num_w = Signal(11)
        conv_h = Signal(11)
        conv_w = Signal(11)
        pixels = Signal(21)
        tp = Signal(13)              # pixels per tile
        tp_h = Signal(13)            # tp // conv_w, tp % conv_w
        tp_w = Signal(11)
        div_rem = Signal(13)
        div_i = Signal(range(14))
        div_num = Signal(13)

        # loops
        ot = Signal(12)
        ki = Signal(4)
        kj = Signal(4)
        kk = Signal(12)
        oh0 = Signal(11)
        ow0 = Signal(11)
        tile_first = Signal()        # the pixel tile is the output-channel tile's first
        more = Signal()              # another pixel tile follows this one
        left = Signal(21)            # pixels after this pixel tile
        first_n = Signal(13)         # n, more, left of an output-channel tile's first
        first_more = Signal()        # pixel tile (set in TILE)
        first_left = Signal(21)
        n = Signal(13)
        if cfg.acc_depth == 1:
            # one-pixel tiles (host.rtl.check_program): every command has n = 1
            tp = first_n = n = Const(1, 13)

        def eq(target, value):
            """`target.eq(value)`, or nothing for a constant (one-pixel tiles)."""
            return [] if isinstance(target, Const) else [target.eq(value)]
        wtile = Signal(20)
        wbase = Signal(20)
        since_ot = Signal(range(OT_GAP(C) + 1))
        drain = Signal(range(4096 + DRAIN_CYCLES(R, C) + 1))
        pc = Signal(range(cfg.program_depth))
        swaps = Signal(12)           # post-processor swaps in this descriptor
        conv_active = Signal()

        counters = [Signal(32, name=f"counter_{i}") for i in range(4)]
        stall = Signal()
        m.d.comb += [bus.counters[i].eq(counters[i]) for i in range(4)]
        m.d.comb += bus.counters[4].eq(pc)
        m.d.comb += [self.running.eq(running), self.descriptor.eq(pc)]

        # --- feeder commands
        cmd = feeder.cmd.payload
        second = is_add & (kj == 1)      # ADD's second tap reads the second tensor
        m.d.comb += [
            cmd.src.eq(Mux(second, d.src2, d.src)), cmd.in_h.eq(d.in_h), cmd.in_w.eq(d.in_w),
            cmd.in_c.eq(d.in_c),
            cmd.stride.eq(Mux(is_max, d.pool_s, Mux(is_conv, d.stride, 1))),
            cmd.pad_t.eq(d.pad_t), cmd.pad_l.eq(d.pad_l),
            cmd.in_signed.eq(Mux(second, d.in2_signed, d.in_signed)), cmd.conv_w.eq(conv_w),
            cmd.oh0.eq(oh0), cmd.ow0.eq(ow0), cmd.n.eq(n),
            cmd.i.eq(Mux(is_add, 0, ki)), cmd.j.eq(Mux(is_add, 0, kj)),
            cmd.k.eq(Mux(is_conv, kk, ot)),
            cmd.swap.eq(1),
        ]
        accept = Signal()
        m.d.comb += accept.eq(feeder.cmd.valid & feeder.cmd.ready)
        # Loop ends as registers (the counts hold still from DECODE on), so the ISSUE
        # state's loop updates compare registers instead of adding first.
        kt_last = Signal(12)
        loop_w_last = Signal(4)
        loop_h_last = Signal(4)
        oct_last = Signal(12)
        m.d.sync += [kt_last.eq(kt - 1), loop_w_last.eq(loop_w - 1),
                     loop_h_last.eq(loop_h - 1), oct_last.eq(oct_ - 1)]
        # a loop of one step: its end flag as the loop starts over
        kk_one, kj_one, ki_one = kt_last == 0, loop_w_last == 0, loop_h_last == 0

        def ends_next(count, last):
            """`count + 1 == last`, for a count below `last`. (Not ram_delays: `count`
            compared with a register holding `last - 1`, so the flag is one compare
            after the counter, with no add in front of it; the small FPGAs' slow
            clocks keep the cells.)"""
            if cfg.ram_delays:
                return count + 1 == last
            before = Signal.like(last, name=f"{last.name}_pen")
            m.d.sync += before.eq(last - 1)
            return count == before
        kk_ends, kj_ends, ki_ends, ot_ends = (
            ends_next(count, last) for count, last in ((kk, kt_last), (kj, loop_w_last),
                                                       (ki, loop_h_last), (ot, oct_last)))
        # Where the loops stand, as flags that move with the counters (set in TILE, then
        # on every accepted command from compares of the counters' next values): ISSUE
        # decides from these registers, not from three 12-bit compares in a row, and its
        # decision enables most of the sequencer's registers.
        kk_end = Signal()            # kk == kt_last
        kj_end = Signal()            # kj == loop_w_last
        ki_end = Signal()            # ki == loop_h_last
        ot_end = Signal()            # ot == oct_last
        ot_nonzero = Signal()        # ot != 0
        at_first = Signal()          # ki == kj == kk == 0
        step_first = at_first
        # The step is the pixel tile's last (ki_end & kj_end & kk_end). Not ram_delays:
        # a flag of its own, set with the three (below), so that the tile step's loads
        # of ow0, oh0, n and left are enabled by the accept and two registers: with the
        # three flags and `more` after the accept, abc9 made them five LUT levels, the
        # slowest paths asked 125 MHz.
        if cfg.ram_delays:
            step_last = ki_end & kj_end & kk_end
        else:
            step_last = Signal()
        # The step is an output-channel tile's first but for the descriptor's first
        # (at_first & tile_first & ot_nonzero), as a flag too: it waits for gap_done,
        # and the command's handshake is then one LUT from registers.
        ot_wait = Signal()

        # --- output size: free-running DSP multiplies of registers that hold still
        # from DECODE on (hw.dsp: operands and product registered, two edges)
        # (one shift for every stride, so the quotient is a slice of the product, not a
        # shifter after the block)
        size_shift = max(reciprocal(stride, 11)[1] for stride in range(1, 8))
        size_mult = Signal(range(1 << size_shift + 1))
        with m.Switch(d.stride):
            for stride in range(1, 8):
                with m.Case(stride):
                    m.d.sync += size_mult.eq(reciprocal(stride, 11, size_shift)[0])
        if cfg.serial_size:
            # one multiplier block for the three products, in turn (operands 0 between)
            m.submodules.size_mul = size_mul = Multiplier(unsigned(11), size_mult.shape(),
                                                          block=True)
        else:
            m.submodules.size_h = size_h = Multiplier(unsigned(11), size_mult.shape())
            m.submodules.size_w = size_w = Multiplier(unsigned(11), size_mult.shape())
            m.submodules.size_hw = size_hw = Multiplier(unsigned(11), unsigned(11))
            m.d.comb += [size_h.a.eq(num_h), size_h.b.eq(size_mult),
                         size_w.a.eq(num_w), size_w.b.eq(size_mult),
                         size_hw.a.eq(conv_h), size_hw.b.eq(conv_w)]

        # --- the next pixel tile's start: ow0 + tp_w wraps past conv_w at most once
        # (tp_w < conv_w); tp_w - conv_w and tp_h + 1 are set in REMAINDER.
        tp_w_minus = Signal(signed(12))
        tp_h1 = Signal(14)
        ow_wrapped = Signal(signed(12))
        m.d.comb += ow_wrapped.eq(ow0 + tp_w_minus)
        wraps = ~ow_wrapped[-1]
        left_minus_tp = Signal(signed(22))
        m.d.comb += left_minus_tp.eq(left - tp)
        # Whether the next pixel tile is the output-channel tile's last (left <= tp,
        # whereupon it has `left` pixels). Not ram_delays: a register beside `left`
        # (set in REMAINDER; then left <= 2 tp as `left` steps down by tp, or the first
        # tile's again), so the tile step's choices wait for no subtract.
        if cfg.ram_delays:
            left_le_tp = left_minus_tp[-1] | (left_minus_tp == 0)
        else:
            left_le_tp = Signal()
            first_le_tp = Signal()

        # --- sequencer
        gap_done = Signal()          # since_ot == OT_GAP(C), a flag that moves with it
        issuing = Signal()           # the state is ISSUE
        # ot_wait's and gap_done's next values (assigned below where they change), so
        # that whether a command may go (ok = ~ot_wait | gap_done) is a register too:
        # as a LUT of the two in front of the accept, it was the slowest path of 125 MHz
        # builds into the loop registers the accept enables (8.1-8.4 ns)
        ot_wait_next = Signal()
        gap_done_next = Signal()
        ok = Signal(init=1)
        m.d.comb += [ot_wait_next.eq(ot_wait), gap_done_next.eq(gap_done)]
        m.d.sync += [ot_wait.eq(ot_wait_next), gap_done.eq(gap_done_next),
                     ok.eq(~ot_wait_next | gap_done_next)]
        with m.If(running & ~gap_done):
            m.d.sync += since_ot.eq(since_ot + 1)
            m.d.comb += gap_done_next.eq(since_ot + 1 == OT_GAP(C))
        def leave_on_abort():
            with m.If(abort):
                m.d.sync += [running.eq(0), conv_active.eq(0)]
                if beats > 1:
                    m.d.sync += [beat.eq(0), landing.eq(0)]
                m.next = "IDLE"

        # The output size and the tile size land together; whether one tile holds the
        # layer is a register beside them, so TILE is a choice between registers. It
        # is decided from the DSP block's output, a long route away: a compare of the
        # tile's 12 bits and a test of the bits above, beside a flag for tile_px == 0
        # that settled long before. (ram_delays, small FPGAs at slow clocks: in TILE
        # itself, saving the registers.) The pixels after the first tile are not needed
        # before DIVIDE.
        if cfg.ram_delays:
            after_first = pixels - tp
        else:
            # a register (pixels and tp hold still from PIXELS_LATCH, over DIVIDE's 13
            # cycles, to ISSUE): as a subtract beside `left - tp`, yosys shared one
            # subtractor between them with a choice of `left` or `pixels` in front of
            # it, so the command's accept came before the carry chain
            after_first = Signal(21, name="after_first")
            m.d.sync += after_first.eq(pixels - tp)
        if cfg.ram_delays:
            one_tile = (tp == 0) | (tp >= pixels)
        else:
            one_tile = Signal()
            tile = tp if isinstance(tp, Const) else d.tile_px
            tile_zero = Signal()
            m.d.sync += tile_zero.eq(tile == 0)

        def latch_size(product, check=True):
            """`pixels` and `tp`; with `check`, one_tile from `product` too (or later,
            `check_size`)."""
            product = product[:len(pixels)]
            m.d.sync += [pixels.eq(product), *eq(tp, d.tile_px)]
            if check:
                check_size(product)

        def check_size(size):
            if not cfg.ram_delays:
                lo, hi = size[:len(tile)], size[len(tile):]
                m.d.sync += one_tile.eq(tile_zero | ((hi == 0) & (tile >= lo)))

        # DONE's one cycle as a register (set in DECODE), so the link's run control
        # starts from a flip-flop, not from a decode of the state
        done = Signal()
        m.d.sync += done.eq(0)
        m.d.comb += [bus.done.eq(done), self.done.eq(done)]
        # RUN clears the counters (none counts before it: `running` is low in IDLE)
        with m.If(start):
            m.d.sync += [c.eq(0) for c in counters]
        if beats == 1:
            # pc holds still from FETCH to LATCH, and nothing writes the program while
            # running: the read data in LATCH is the descriptor at pc
            with m.If(running):
                m.d.comb += [prg_rd.addr.eq(pc), prg_rd.en.eq(1)]
        with m.FSM(name="seq"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [running.eq(1), pc.eq(bus.program >> exact_log2(DESCRIPTOR_BYTES))]
                    m.next = "FETCH"
            with m.State("FETCH"):
                if beats == 1:
                    # (the read is issued in every running cycle, before the FSM: the
                    # block's address and enable are not a decode of the state)
                    m.next = "FETCH_WAIT"
                else:
                    words = DESCRIPTOR_BYTES // cfg.program_beat_bytes
                    m.d.comb += [prg_rd.addr.eq(pc * words + beat), prg_rd.en.eq(1)]
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat != 0):
                        m.d.sync += [d_words.word_select(landing, beat_bits).eq(prg_rd.data),
                                     landing.eq(landing + 1)]
                    with m.If(beat == beats - 1):
                        m.d.sync += beat.eq(0)
                        m.next = "LATCH"
                leave_on_abort()
            with m.State("FETCH_WAIT"):
                # the word into the block's output register (hw.bram), so that LATCH
                # starts from a flip-flop; a narrow memory's beats skip this state
                m.next = "LATCH"
                leave_on_abort()
            with m.State("LATCH"):
                if beats == 1:
                    m.d.sync += d.eq(prg_rd.q.as_value()[:DESCRIPTOR.size])
                else:
                    m.d.sync += [d_words.word_select(landing, beat_bits).eq(prg_rd.data),
                                 landing.eq(0)]
                m.next = "DECODE"
                leave_on_abort()
            with m.State("DECODE"):
                m.d.sync += [
                    kt.eq((d.in_c + R - 1) >> lR),
                    oct_.eq((d.out_c + C - 1) >> lC),
                    groups.eq((d.out_c + R - 1) >> lR),
                    num_h.eq(d.in_h + d.pad_t + d.pad_b - d.kh),
                    num_w.eq(d.in_w + d.pad_l + d.pad_r - d.kw),
                    swaps.eq(0),
                ]
                with m.Switch(d.op):
                    with m.Case(Opcode.END):
                        m.d.sync += done.eq(~abort)
                        m.next = "DONE"
                    with m.Case(Opcode.CONV):
                        m.d.sync += [loop_h.eq(d.kh), loop_w.eq(d.kw)]
                        m.next = "SIZE"
                    with m.Case(Opcode.MAXPOOL, Opcode.AVGPOOL, Opcode.ADD):
                        # One channel group (= output tile, C == R) at a time, no K loop.
                        m.d.sync += [kt.eq(1), oct_.eq((d.in_c + R - 1) >> lR)]
                        with m.Switch(d.op):
                            with m.Case(Opcode.MAXPOOL):
                                m.d.sync += [loop_h.eq(d.pool_k), loop_w.eq(d.pool_k),
                                             conv_h.eq(d.out_h), conv_w.eq(d.out_w)]
                            with m.Case(Opcode.AVGPOOL):
                                m.d.sync += [loop_h.eq(d.in_h), loop_w.eq(d.in_w),
                                             conv_h.eq(1), conv_w.eq(1)]
                            with m.Case(Opcode.ADD):
                                m.d.sync += [loop_h.eq(1), loop_w.eq(2),
                                             conv_h.eq(d.in_h), conv_w.eq(d.in_w)]
                        m.next = "SIZE"
                    with m.Default():
                        m.next = "HANG"          # an unknown opcode: the watchdog ends it
                leave_on_abort()
            if cfg.serial_size:
                # the same products one after the other on one multiplier (two edges
                # each, SERIAL_SIZE_CYCLES): num_h, num_w times the reciprocal, then
                # conv_h x conv_w
                size_p = size_mul.p >> size_shift
                with m.State("SIZE"):
                    m.d.sync += conv_active.eq(1)
                    m.d.comb += [size_mul.a.eq(num_h), size_mul.b.eq(size_mult)]
                    m.next = "MUL_H"
                    leave_on_abort()
                with m.State("MUL_H"):
                    m.d.comb += [size_mul.a.eq(num_w), size_mul.b.eq(size_mult)]
                    m.next = "MUL_W"
                    leave_on_abort()
                with m.State("MUL_W"):
                    with m.If(is_conv):
                        m.d.sync += conv_h.eq(size_p + 1)
                    m.next = "CONV_W"
                    leave_on_abort()
                with m.State("CONV_W"):
                    with m.If(is_conv):
                        m.d.sync += conv_w.eq(size_p + 1)
                    m.next = "PIXELS"
                    leave_on_abort()
                with m.State("PIXELS"):
                    m.d.comb += [size_mul.a.eq(conv_h), size_mul.b.eq(conv_w)]
                    m.next = "MUL_HW"
                    leave_on_abort()
                with m.State("MUL_HW"):
                    m.next = "HW_LATCH"
                    leave_on_abort()
                with m.State("HW_LATCH"):
                    latch_size(size_mul.p)
                    m.next = "TILE"
                    leave_on_abort()
            else:
                with m.State("SIZE"):
                    # conv_h, conv_w = num // stride + 1 (stride 1..7: reciprocal multiply, the
                    # DSP blocks' two edges in SIZE and SIZE_WAIT); cycles the other ops spend
                    # as well, so every descriptor has the same setup
                    m.d.sync += conv_active.eq(1)
                    m.next = "SIZE_WAIT"
                    leave_on_abort()
                with m.State("SIZE_WAIT"):
                    m.next = "CONV_HW"
                    leave_on_abort()
                with m.State("CONV_HW"):
                    with m.If(is_conv):
                        m.d.sync += [conv_h.eq((size_h.p >> size_shift) + 1),
                                     conv_w.eq((size_w.p >> size_shift) + 1)]
                    m.next = "PIXELS"
                    leave_on_abort()
                with m.State("PIXELS"):
                    # conv_h * conv_w: two edges in the DSP block, then into `pixels`
                    m.next = "PIXELS_WAIT"
                    leave_on_abort()
                with m.State("PIXELS_WAIT"):
                    m.next = "PIXELS_LATCH"
                    leave_on_abort()
                with m.State("PIXELS_LATCH"):
                    latch_size(size_hw.p, check=False)
                    m.next = "PIXELS_CHECK"
                    leave_on_abort()
                with m.State("PIXELS_CHECK"):
                    # one_tile from `pixels`, not from the DSP block's output: the
                    # compare after its route was 8.2 ns at 125 MHz
                    check_size(pixels)
                    m.next = "TILE"
                    leave_on_abort()
            with m.State("TILE"):
                m.d.sync += [kk_end.eq(kk_one), kj_end.eq(kj_one), ki_end.eq(ki_one),
                             ot_end.eq(oct_last == 0),
                             ot_nonzero.eq(0), at_first.eq(1)]
                m.d.comb += [ot_wait_next.eq(0), gap_done_next.eq(1)]
                if not cfg.ram_delays:
                    m.d.sync += step_last.eq(kk_one & kj_one & ki_one)
                m.d.sync += [ot.eq(0), ki.eq(0), kj.eq(0), kk.eq(0), oh0.eq(0), ow0.eq(0),
                             tile_first.eq(1), wtile.eq(d.wgt >> lR), wbase.eq(d.wgt >> lR),
                             since_ot.eq(OT_GAP(C)), tp_h.eq(0),
                             div_rem.eq(0), div_i.eq(0)]
                with m.If(one_tile):
                    m.d.sync += [*eq(tp, pixels), *eq(n, pixels), more.eq(0),
                                 *eq(first_n, pixels), first_more.eq(0), issuing.eq(1)]
                    m.next = "ISSUE"
                with m.Else():
                    m.d.sync += [*eq(n, tp), div_num.eq(tp), more.eq(1),
                                 *eq(first_n, tp), first_more.eq(1)]
                    m.next = "DIVIDE"
                leave_on_abort()
            with m.State("DIVIDE"):
                # restoring division tp / conv_w, one quotient bit per cycle (13 cycles,
                # only for layers split into several pixel tiles); the pixels after the
                # first tile meanwhile (below)
                if cfg.acc_depth == 1:
                    # tiles of one pixel (host.rtl.check_program): 1 // conv_w and
                    # 1 % conv_w, in the same cycles
                    m.d.sync += [tp_h.eq(conv_w == 1), div_rem.eq(conv_w != 1)]
                else:
                    trial = Cat(div_num[12], div_rem)
                    m.d.sync += div_num.eq(div_num << 1)
                    with m.If(trial >= conv_w):
                        m.d.sync += [div_rem.eq(trial - conv_w), tp_h.eq(Cat(1, tp_h))]
                    with m.Else():
                        m.d.sync += [div_rem.eq(trial), tp_h.eq(Cat(0, tp_h))]
                m.d.sync += div_i.eq(div_i + 1)
                with m.If(div_i == 12):
                    m.next = "REMAINDER"
                leave_on_abort()
            with m.State("REMAINDER"):
                m.d.sync += [tp_w.eq(div_rem), tp_w_minus.eq(div_rem - conv_w),
                             tp_h1.eq(tp_h + 1), issuing.eq(1)]
                if not cfg.ram_delays:
                    m.d.sync += [left_le_tp.eq(left <= tp), first_le_tp.eq(left <= tp)]
                m.next = "ISSUE"
                leave_on_abort()
            with m.State("ISSUE"):
                # the loops' updates are below, outside the FSM: `issuing` holds ISSUE as
                # a register, so the commands' handshake needs no decode of the state
                with m.If(accept & step_last & ~more & ot_end):
                    m.next = "DRAIN"
                leave_on_abort()
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 0):
                    m.d.sync += [pc.eq(pc + 1), conv_active.eq(0)]
                    m.next = "FETCH"
                leave_on_abort()
            with m.State("HANG"):
                pass
                leave_on_abort()
            with m.State("DONE"):
                m.d.sync += running.eq(0)
                m.next = "IDLE"

        # The pixels after the first tile, for DIVIDE and REMAINDER: loaded in every
        # cycle outside ISSUE, where nothing else loads them (loaded in DIVIDE, the
        # state's decode was in front of their 21 bits). A layer of one tile (more = 0)
        # never reads them.
        with m.If(~issuing):
            m.d.sync += [left.eq(after_first), first_left.eq(after_first)]
        m.d.comb += [feeder.cmd.valid.eq(issuing & ok), stall.eq(issuing & ~ok)]
        with m.If(accept):
            with m.If(step_first & tile_first):
                m.d.sync += since_ot.eq(1)
                m.d.comb += gap_done_next.eq(OT_GAP(C) == 1)
            # (at_first, tile_first and ot_nonzero as they will be: the next step is an
            # output-channel tile's first after this tile's last)
            m.d.sync += [wtile.eq(wtile + 1), at_first.eq(step_last)]
            m.d.comb += ot_wait_next.eq(step_last & ~more
                                        & (~ot_end | (tile_first & ot_nonzero)))
            # step_last as it will be: the three flags' next values (the flag register)
            def next_last(kk_next, kj_next, ki_next):
                return [] if cfg.ram_delays else [step_last.eq(kk_next & kj_next & ki_next)]
            with m.If(~kk_end):
                m.d.sync += [kk.eq(kk + 1), kk_end.eq(kk_ends),
                             *next_last(kk_ends, kj_end, ki_end)]
            with m.Else():
                m.d.sync += [kk.eq(0), kk_end.eq(kk_one)]
                with m.If(~kj_end):
                    m.d.sync += [kj.eq(kj + 1), kj_end.eq(kj_ends),
                                 *next_last(kk_one, kj_ends, ki_end)]
                with m.Else():
                    m.d.sync += [kj.eq(0), kj_end.eq(kj_one)]
                    with m.If(~ki_end):
                        m.d.sync += [ki.eq(ki + 1), ki_end.eq(ki_ends),
                                     *next_last(kk_one, kj_one, ki_ends)]
                    with m.Else():
                        m.d.sync += [ki.eq(0), ki_end.eq(ki_one),
                                     *next_last(kk_one, kj_one, ki_one)]
            # pixel tile done (after the loops' updates: wtile's load wins): every tile
            # but the last has tp pixels, so the next one's size and what follows it are
            # one subtract and one compare from registers
            with m.If(step_last):
                with m.If(more):
                    m.d.sync += [oh0.eq(Mux(wraps, oh0 + tp_h1, oh0 + tp_h)),
                                 ow0.eq(Mux(wraps, ow_wrapped, ow0 + tp_w)),
                                 tile_first.eq(0), wtile.eq(wbase),
                                 *eq(n, Mux(left_le_tp, left, tp)),
                                 left.eq(Mux(left_le_tp, 0, left_minus_tp)),
                                 more.eq(~left_le_tp)]
                    if not cfg.ram_delays:
                        m.d.sync += left_le_tp.eq(left <= (tp << 1))
                with m.Elif(~ot_end):
                    m.d.sync += [ot.eq(ot + 1), ot_end.eq(ot_ends),
                                 ot_nonzero.eq(1), tile_first.eq(1), oh0.eq(0),
                                 ow0.eq(0), wbase.eq(wtile + 1),
                                 *eq(n, first_n), more.eq(first_more),
                                 left.eq(first_left)]
                    if not cfg.ram_delays:
                        m.d.sync += left_le_tp.eq(first_le_tp)
                with m.Else():
                    m.d.sync += [drain.eq(n + DRAIN_CYCLES(R, C)),
                                 issuing.eq(0)]
        with m.If(abort):
            m.d.sync += issuing.eq(0)

        # --- weight tiles: read WEIGHT_LEAD cycles after the command, loaded the cycle
        # before the command's first pixel (and its swap) reaches the array.
        w_valid = _delay(m, accept, WEIGHT_LEAD, "wload")
        if cfg.ram_delays:
            m.submodules.waddr_line = waddr_line = DelayLine(len(wgt_rd.addr), WEIGHT_LEAD)
            m.d.comb += waddr_line.i.eq(wtile)
            w_addr = waddr_line.o
            with m.If(running):
                m.d.comb += [wgt_rd.addr.eq(w_addr), wgt_rd.en.eq(1)]
        if addr_registered:
            # the weight port's address is a register, the tile address or the host's:
            # the choice is not a route to every block of the 512-bit word in the same
            # cycle (host reads wait a cycle for it: r_wait). The memory keeps it, a
            # copy beside each block (`_wgt_read_ahead`): one register for all the 8x8's
            # blocks was a 7.2 ns route to the farthest.
            w_early = _delay(m, wtile, WEIGHT_LEAD - 1, "waddr")
            m.d.comb += [wgt_rd.addr.eq(Mux(running, w_early, host_word[Space.WEIGHTS])),
                         wgt_rd.en.eq(1)]
        w_valid_q = Signal()
        w_valid_qq = Signal()
        m.d.sync += [w_valid_q.eq(w_valid & ~abort), w_valid_qq.eq(w_valid_q & ~abort)]
        m.d.comb += [array.load.valid.eq(w_valid_qq),
                     array.load.payload.weights.eq(wgt_q.as_value())]

        # --- per-pixel tags mirroring the feeder's issue order: pixel q of a command
        # accepted in cycle a is issued in a + 1 + q and reaches the array in a + FEED_LATENCY + q.
        if cfg.acc_depth == 1:
            # one pixel a command: its tag is the command's, for the one cycle after it
            mir_active = Signal()
            mir = Signal(data.StructLayout({
                "first": 1, "last": 1, "tile_first": 1, "origin": 1, "oh": 10, "ow": 10,
                "ot": 12}))
            mir_q = Const(0, 12)
            m.d.sync += mir_active.eq(accept & ~abort)
            with m.If(accept):
                m.d.sync += [mir.first.eq(step_first), mir.last.eq(step_last),
                             mir.tile_first.eq(tile_first),
                             mir.origin.eq((oh0 == 0) & (ow0 == 0)),
                             mir.oh.eq(oh0), mir.ow.eq(ow0), mir.ot.eq(ot)]
            origin = mir.origin
        else:
            # (the last pixel and the row's end compared with n - 1 and conv_w - 1 from
            # registers: no add in front of the compares that enable the tags)
            mir_active = Signal()
            mir = Signal(data.StructLayout({
                "q": 12, "n_last": 13, "first": 1, "last": 1, "tile_first": 1,
                "oh": 10, "ow": 10, "ot": 12}))
            conv_w_last = Signal.like(conv_w)
            m.d.sync += conv_w_last.eq(conv_w - 1)
            with m.If(mir_active):
                m.d.sync += mir.q.eq(mir.q + 1)
                with m.If(mir.ow == conv_w_last):
                    m.d.sync += [mir.ow.eq(0), mir.oh.eq(mir.oh + 1)]
                with m.Else():
                    m.d.sync += mir.ow.eq(mir.ow + 1)
                with m.If(mir.q == mir.n_last):
                    m.d.sync += mir_active.eq(0)
            with m.If(accept):
                m.d.sync += [mir_active.eq(1), mir.q.eq(0), mir.n_last.eq(n - 1),
                             mir.first.eq(step_first), mir.last.eq(step_last),
                             mir.tile_first.eq(tile_first),
                             mir.oh.eq(oh0), mir.ow.eq(ow0), mir.ot.eq(ot)]
            with m.If(abort):
                m.d.sync += mir_active.eq(0)
            mir_q = mir.q
            origin = (mir.oh == 0) & (mir.ow == 0)

        issued = Signal(data.StructLayout({
            "valid": 1, "q": 12, "first": 1, "last": 1, "ot_first": 1, "tag": tag_layout}))
        m.d.comb += [
            issued.valid.eq(mir_active), issued.q.eq(mir_q), issued.first.eq(mir.first),
            issued.last.eq(mir.last), issued.ot_first.eq(mir.tile_first & (mir_q == 0)),
            *([issued.tag.first.eq(origin)] if cfg.standalone_pool
              else [issued.tag.oh.eq(mir.oh), issued.tag.ow.eq(mir.ow)]),
            issued.tag.ot.eq(mir.ot),
        ]
        # CONV: the array's sums; the other ops: the feeder's activations themselves
        # (ADD and AVGPOOL sum them, MAXPOOL keeps their maximum), C == R lanes.
        at_acc = Signal.like(issued)
        if cfg.ram_delays:
            to_acc = Mux(bypass, FEED_LATENCY - 1, FEED_LATENCY - 1 + timing.latency)
            # what the accumulator needs in one RAM; the pixel's tag straight to the
            # post-processor's output in another (the post-processor carries none)
            if cfg.acc_depth == 1:
                # one-pixel tiles need no pixel index: three flags in flip-flops cost
                # less than a RAM's pointers
                flags = Cat(issued.first, issued.last, issued.ot_first)
                at_feed = _delay(m, flags, FEED_LATENCY - 1, "ftag")
                at_sums = _delay(m, at_feed, timing.latency, "tag")
                m.d.comb += Cat(at_acc.first, at_acc.last, at_acc.ot_first).eq(
                    Mux(bypass, at_feed, at_sums))
            else:
                m.submodules.acc_line = acc_line = DelayLine(
                    15, FEED_LATENCY - 1 + timing.latency, variable=True)
            m.submodules.tag_line = tag_line = DelayLine(
                tag_layout.size, FEED_LATENCY - 1 + timing.latency + acc.latency
                + POST_LATENCY, variable=True)
            if cfg.acc_depth > 1:
                m.d.comb += [
                    acc_line.i.eq(Cat(issued.q, issued.first, issued.last,
                                      issued.ot_first)),
                    acc_line.cycles.eq(to_acc),
                    Cat(at_acc.q, at_acc.first, at_acc.last, at_acc.ot_first).eq(
                        acc_line.o),
                ]
            m.d.comb += [
                tag_line.i.eq(issued.tag),
                tag_line.cycles.eq(to_acc + acc.latency + POST_LATENCY),
            ]
        else:
            at_feed = _delay(m, issued, FEED_LATENCY - 1, "ftag")
            before_sums = _delay(m, at_feed, timing.latency - 1, "tag")
            at_sums = _delay(m, before_sums, 1, "tag_last")
            # the bypass a cycle in registers (below), so the tag too
            at_bypass = _delay(m, at_feed, 1, "btag")
            m.d.comb += at_acc.eq(Mux(bypass, at_bypass.as_value(), at_sums.as_value()))
            if acc.read_ahead:
                # the pixel's address a cycle early: the accumulator registers it beside
                # its blocks (the choice by is_conv reaching them was a 7.7 ns route)
                m.d.comb += acc.addr_ahead.eq(Mux(bypass, at_feed.q, before_sums.q))
        if cfg.ram_delays:
            by_valid, by_pad, by_act = feeder.act.valid, feeder.pad, feeder.act.payload
        else:
            # the feeder's output into registers before the accumulator's: its
            # activations come out of the block RAM's register through the padding
            # logic, too far for the bypass mux and the accumulator's input in one cycle
            # (the array's sums come cycles later anyway)
            by_valid = Signal()
            by_pad = Signal()
            by_act = Signal.like(feeder.act.payload, reset_less=True)
            m.d.sync += [by_valid.eq(feeder.act.valid & ~abort), by_pad.eq(feeder.pad),
                         by_act.eq(feeder.act.payload)]
        with m.If(bypass):
            m.d.comb += [acc.beat.valid.eq(by_valid),
                         acc.beat.payload.skip.eq(by_pad)]
            for c in range(C):
                m.d.comb += acc.beat.payload.sums[c].eq(by_act[c])
        with m.Else():
            m.d.comb += [acc.beat.valid.eq(array.sums.valid),
                         acc.beat.payload.sums.eq(array.sums.payload)]
        m.d.comb += [
            acc.max.eq(is_max),
            acc.beat.payload.addr.eq(at_acc.q),
            acc.beat.payload.first.eq(at_acc.first),
            acc.beat.payload.last.eq(at_acc.last),
        ]
        if cfg.ram_delays:
            post_ot_first = _delay(m, at_acc.ot_first, acc.latency, "ptag")
            post_tag = []
            swap = acc.out.valid & post_ot_first
        else:
            # the swap as a register, from the accumulator's valid and the tag a cycle
            # ahead: it reaches ~500 of the post-processor's flip-flops
            at_pre = _delay(m, at_acc, acc.latency - 1, "ptag")
            at_post = _delay(m, at_pre, 1, "ptag_last")
            post_tag = [post.acc.payload.tag.eq(at_post.tag)]
            swap = Signal()
            swap_next = acc.out_next & at_pre.ot_first & ~abort
            m.d.sync += swap.eq(swap_next)
        m.d.comb += [
            post.acc.valid.eq(acc.out.valid),
            post.acc.payload.acc.eq(acc.out.payload),
            *post_tag,
            post.swap.eq(swap),
            post.mode.lo.eq(d.lo), post.mode.hi.eq(d.hi),
            # MAXPOOL passes its maxima through as raw values with bias 0 (below)
            post.mode.raw.eq(d.out_raw | is_max), post.mode.bipolar.eq(d.bipolar),
        ]
        with m.If(post.swap):
            m.d.sync += swaps.eq(swaps + 1)

        if held:
            self._held_params(m, post, prm_rd, running, conv_active, is_max, d)
        else:
            pl_ready = None
            if not cfg.ram_delays:
                # post.param.ready as registers beside the loader: low in the
                # PARAM_BLACKOUT cycles from a swap, set from the swap's next value and
                # the swaps before it (post.param.ready, a LUT of the post-processor's
                # registers, was routes across the die into the PARAM blocks' enables:
                # 9.10 ns at 125 MHz). (Not cleared by RESET, unlike the post-processor's:
                # never ready where it is not.)
                recent = [swap_next, swap]
                for k in range(PARAM_BLACKOUT - 2):
                    late = Signal(name=f"swap_late{k}")
                    m.d.sync += late.eq(recent[-1])
                    recent.append(late)
                pl_ready = [Signal(init=1, name=f"{KEEP_PREFIX}pl_ready_{k}")
                            for k in range(2)]
                m.d.sync += [r.eq(~Cat(*recent[:PARAM_BLACKOUT]).any()) for r in pl_ready]
            self._param_loader(m, post, prm_rd, prm_q, running, conv_active, is_max, d,
                               oct_, swaps, abort,
                               host_addr=(host_word[Space.PARAMS]
                                          if Space.PARAMS in registered_ports else None),
                               ready=pl_ready)

        # --- packer: C post-processed lanes -> one activation word (4 for raw int32)
        beat = writer.pixels.payload
        out = post.out.payload
        out_tag = Signal(tag_layout)
        m.d.comb += out_tag.eq(tag_line.o if cfg.ram_delays else out.tag)
        # Which lanes hold a real output channel (ot * C + j < out_c). Pipelined, it is
        # decided as the pixel enters the post-processor and carried beside it: the
        # compare would otherwise sit between the post-processor's output and the
        # packer's muxes. With ram_delays (small FPGAs, slow clocks) the tag comes out of
        # its RAM with the output and is compared there.
        in_range = Signal(C)
        tag = out_tag if cfg.ram_delays else at_post.tag
        for j in range(C):
            m.d.comb += in_range[j].eq(tag.ot * C + j < d.out_c)
        in_range_out = in_range if cfg.ram_delays else _delay(m, in_range, POST_LATENCY,
                                                               "in_range")
        lanes = Signal(data.ArrayLayout(signed(32), C))
        for j in range(C):
            m.d.comb += lanes[j].eq(Mux(in_range_out[j], out.data[j], 0))
        p_valid = Signal()
        p_beat = Signal.like(beat)
        raw_buf = Signal(data.ArrayLayout(signed(32), C))
        raw_cnt = Signal(2)
        raw_busy = Signal()
        raw_tag = Signal(tag_layout)

        def put_word(tag, values, byte, into=p_beat):
            group = (tag.ot << lC) >> lR
            word = Cat(*[Value.cast(v).word_select(byte, 8) for v in values])
            ofs = (tag.ot << lC)[:lR] if C < R else 0
            oh, ow = (~tag.first, 0) if cfg.standalone_pool else (tag.oh, tag.ow)
            return [into.oh.eq(oh), into.ow.eq(ow), into.group.eq(group),
                    into.byte.eq(byte), into.data.eq(word << (ofs * 8) if C < R else word),
                    into.en.eq(Const((1 << C) - 1, R) << ofs if C < R else (1 << C) - 1)]

        # the packed word into a register, or (standalone_pool) straight to the pool
        # writer, which registers it first thing
        pack = m.d.comb if cfg.standalone_pool else m.d.sync
        pack += p_valid.eq(0)
        if not cfg.standalone_pool:
            # the register takes the new pixel's first word or a raw pixel's next byte
            # every cycle (read only with p_valid), chosen by copies of the new pixel's
            # valid set a cycle ahead (post.out_next), a copy for each 16 bits: the
            # post-processor's valid reaching every bit's choice and enable was the
            # slowest path of a 125 MHz build (8.3 ns)
            fresh = Signal.like(p_beat)
            raw_word = Signal.like(p_beat)
            m.d.comb += put_word(out_tag, [lanes[j] for j in range(C)], 0, into=fresh)
            m.d.comb += put_word(raw_tag, [raw_buf[j] for j in range(C)], raw_cnt,
                                 into=raw_word)
            bits = len(Value.cast(p_beat))
            sel = copies(m, platform, post.out_next, -(-bits // 16), "pack_fresh",
                         reset_less=True)
            m.d.sync += Value.cast(p_beat).eq(Cat(
                Mux(sel[i // 16], Value.cast(fresh)[i], Value.cast(raw_word)[i])
                for i in range(bits)))
        with m.If(post.out.valid):
            pack += p_valid.eq(1)
            if cfg.standalone_pool:
                pack += put_word(out_tag, [lanes[j] for j in range(C)], 0)
            with m.If(d.out_raw):
                m.d.sync += [raw_cnt.eq(1), raw_busy.eq(1)]
        with m.Elif(raw_busy):
            pack += p_valid.eq(1)
            if cfg.standalone_pool:
                with m.Switch(raw_cnt):
                    for byte in (1, 2, 3):
                        with m.Case(byte):
                            pack += put_word(raw_tag, [raw_buf[j] for j in range(C)], byte)
            m.d.sync += raw_cnt.eq(raw_cnt + 1)
            with m.If(raw_cnt == 3):
                m.d.sync += raw_busy.eq(0)
        # the raw pixel's buffer follows the output until a raw pixel stops it: its
        # ~300 flip-flops load on a register, not on the post-processor's valid
        with m.If(~raw_busy):
            m.d.sync += [raw_buf.eq(lanes), raw_tag.eq(out_tag)]
        with m.If(abort):
            if cfg.standalone_pool:
                m.d.comb += p_valid.eq(0)
                m.d.sync += raw_busy.eq(0)
            else:
                m.d.sync += [p_valid.eq(0), raw_busy.eq(0)]
        m.d.comb += [writer.pixels.valid.eq(p_valid), beat.eq(p_beat)]
        m.d.comb += [
            writer.cfg.dst.eq(d.dst), writer.cfg.out_h.eq(d.out_h),
            writer.cfg.out_w.eq(d.out_w), writer.cfg.groups.eq(groups),
            writer.cfg.pool_k.eq(Mux(is_conv, d.pool_k, 1)), writer.cfg.raw.eq(d.out_raw),
            # (as a register a cycle behind the descriptor, yosys 0.70's abc9 failed an
            # assertion in reintegrating the 8x8's netlist)
            writer.cfg.signed.eq((d.lo < 0) | d.bipolar),
        ]

        # --- performance counters: cycles, busy (array fed), MACs, sequencer stalls
        # Pipelined (it was the design's critical path as one expression): the command's
        # n and rows x cols into registers, then a register more each; then
        # n x (rows x cols) in a DSP block with its registers. The count lands 5 cycles
        # after the command, long before the descriptor's drain ends.
        mac_n = Signal(13)
        if R * C == 1:
            # one PE: a K-tile has one row (kk < kt = in_c) and an output tile one
            # column, so a command's MACs are its n
            m.d.sync += mac_n.eq(Mux(accept & is_conv, n, 0))
            mac_step = mac_n
        else:
            # A CONV command uses R rows but in the last K-tile (kk_end) and C columns but
            # in the last output tile (ot_end), where it uses what is left of in_c and
            # out_c: registers that settle from the descriptor long before its first
            # command, so a command's rows and columns are each a choice by a flag (from
            # the loop counters, they were two adds and compares deep).
            def last_tile(count, full, bits):
                return Mux(count[:bits] == 0, full, count[:bits]) if bits else full
            rows_last = Signal(range(R + 1))
            cols_last = Signal(range(C + 1))
            m.d.sync += [rows_last.eq(last_tile(d.in_c, R, lR)),
                         cols_last.eq(last_tile(d.out_c, C, lC))]
            mac_rows = Signal.like(rows_last)
            mac_cols = Signal.like(cols_last)
            mac_n2 = Signal(13)
            mac_n3 = Signal(13)
            mac_rc = Signal(range(R * C + 1))
            # rows x cols as shifted rows, two terms added a stage, then the pairs (all
            # of its adds in one stage were a chain, a LUT and a chain: 8.2 ns at 125 MHz)
            terms = [Mux(mac_cols[i], mac_rows << i, 0) for i in range(len(mac_cols))]
            pairs = [Signal(range(R * C + 1), name=f"mac_pair{k}")
                     for k in range(-(-len(terms) // 2))]
            m.d.sync += [pair.eq(sum(terms[2 * k:2 * k + 2])) for k, pair in enumerate(pairs)]
            m.d.sync += [mac_n.eq(Mux(accept & is_conv, n, 0)),
                         mac_rows.eq(Mux(kk_end, rows_last, R)),
                         mac_cols.eq(Mux(ot_end, cols_last, C)),
                         mac_n2.eq(mac_n), mac_n3.eq(mac_n2), mac_rc.eq(sum(pairs))]
            m.submodules.mac_mul = mac_mul = Multiplier(unsigned(13), mac_rc.shape())
            m.d.comb += [mac_mul.a.eq(mac_n3), mac_mul.b.eq(mac_rc)]
            mac_step = mac_mul.p
        # The counters sit by the link, far from the sequencer, feeder and DSP block that
        # drive them: each increment crosses into a register first, so the route and the
        # 32-bit add are separate cycles. Counts arrive a cycle late but none is lost
        # (a stall, a fed pixel or a command's MACs come cycles before `running` falls).
        busy_q = Signal()
        stall_q = Signal()
        mac_q = Signal.like(mac_step)
        m.d.sync += [busy_q.eq(feeder.act.valid), stall_q.eq(stall), mac_q.eq(mac_step)]
        with m.If(running):
            m.d.sync += [counters[0].eq(counters[0] + 1),
                         counters[1].eq(counters[1] + busy_q),
                         counters[2].eq(counters[2] + mac_q),
                         counters[3].eq(counters[3] + stall_q)]
        return m

    def _param_loader(self, m, post, prm_rd, prm_q, running, conv_active, is_max, d, oct_,
                      swaps, abort, host_addr=None, ready=None):
        """PARAM records: tile t loads after the post-processor swapped tile t - 1 in.
        Two stages that stall together: the read (pl_rvalid, its data on the port) and
        the record in prm_q (pl_valid), offered to the post-processor. With `host_addr`
        the port's address is always `pl_addr`, which holds the host's read address
        (registered) while idle. `ready`: two registers that are never high where
        post.param.ready is low, for the memory's enables and the loader's (the record
        is offered only where they are high)."""
        C = self.config.cols
        pl_active = Signal()
        pl_tile = Signal(12)
        pl_lane = Signal(range(C))
        pl_addr = Signal(14)
        pl_rvalid = Signal()
        pl_rlane = Signal(range(C))
        pl_valid = Signal()
        pl_out_lane = Signal(range(C))
        if ready is None:
            advance = mem_advance = ~pl_valid | post.param.ready
            offer = pl_valid
        else:
            advance, mem_advance = ~pl_valid | ready[0], ~pl_valid | ready[1]
            offer = pl_valid & ready[0]
        if host_addr is None:
            with m.If(running):
                m.d.comb += [prm_rd.addr.eq(pl_addr), prm_rd.en.eq(mem_advance)]
        else:
            m.d.comb += prm_rd.addr.eq(pl_addr)
            with m.If(running):
                m.d.comb += prm_rd.en.eq(mem_advance)
        m.d.comb += [
            post.param.valid.eq(offer),
            post.param.payload.lane.eq(pl_out_lane),
            post.param.payload.param.eq(prm_q.as_value()),
            post.param.payload.no_bias.eq(is_max),
        ]
        m.d.comb += prm_rd.q_en.eq(mem_advance)        # prm_q is the port's q
        with m.If(advance):
            m.d.sync += [pl_valid.eq(pl_rvalid),
                         pl_out_lane.eq(pl_rlane), pl_rvalid.eq(0)]
            with m.If(pl_active):
                m.d.sync += [pl_rvalid.eq(1), pl_rlane.eq(pl_lane), pl_addr.eq(pl_addr + 1),
                             pl_lane.eq(pl_lane + 1)]
                with m.If(pl_lane == C - 1):
                    m.d.sync += [pl_active.eq(0), pl_tile.eq(pl_tile + 1), pl_lane.eq(0)]
        with m.If(conv_active & ~pl_active & (pl_tile < oct_) & (swaps >= pl_tile)):
            m.d.sync += pl_active.eq(1)
        with m.If(~conv_active):
            m.d.sync += [pl_tile.eq(0), pl_lane.eq(0), pl_addr.eq(d.prm), pl_active.eq(0)]
        if host_addr is not None:
            with m.If(~running):
                m.d.sync += pl_addr.eq(host_addr)
        with m.If(abort):
            m.d.sync += [pl_active.eq(0), pl_rvalid.eq(0), pl_valid.eq(0)]

    def _held_params(self, m, post, prm_rd, running, conv_active, is_max, d):
        """held_params (1x1, compact_post): the PARAM port's data register is the
        post-processor's shadow record. A descriptor reads its first record as it
        starts, and every swap's last copy (``param_done``) reads the next; the read
        beyond the last tile is never used."""
        pl_first = Signal()
        pl_addr = Signal(14)
        load = Signal()
        m.d.comb += load.eq(conv_active & (pl_first | post.param_done))
        with m.If(running):
            m.d.comb += [prm_rd.addr.eq(pl_addr), prm_rd.en.eq(load)]
        with m.If(load):
            m.d.sync += [pl_first.eq(0), pl_addr.eq(pl_addr + 1)]
        with m.If(~conv_active):
            m.d.sync += [pl_first.eq(1), pl_addr.eq(d.prm)]
        m.d.comb += post.shadow[0].eq(prm_rd.data.as_value())
        with m.If(is_max):
            m.d.comb += post.shadow[0].bias.eq(0)
