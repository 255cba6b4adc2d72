"""Im2col activation feeder: one pixel of a K-tile per cycle from the activation banks.

One command is one step of a CONV descriptor: a pixel tile of ``n`` output pixels
starting at output pixel (oh0, ow0), kernel tap (i, j) and K-tile ``k``. For output
pixel (oh, ow) the feeder reads input pixel

    ih = oh * stride + i - pad_t,   iw = ow * stride + j - pad_l

at word ``src + (ih * in_w + iw) * ceil(in_c / R) + k`` of the R banks (hw/layout.py),
and sends the R bytes, sign- or zero-extended to ``act_width`` bits, to the array; a
pixel in the padding (ih or iw outside the input) is sent as zeros without a read.
Output pixels advance in raster order, wrapping at ``conv_w``.

All R banks are read at one address (the layout puts a K-tile in one word), so the
banks are one R-byte-wide memory with byte write enables: one read port, one address
decoder, and synthesis splits it into block RAMs as it likes.

Pipeline: a command accepted in cycle a issues its first pixel in a + 1; each pixel
goes through (edges after issue) ih = oh * stride + i - pad_t and iw alike (two
adds, two edges), bounds check and ih * in_w (two edges, a DSP block with its
registers), + iw, * groups (two edges), + src + k, a register more (the address's
copies beside the memory's blocks), then the read, then the read data into a register, then the extended operands into fabric registers (the
block RAM's output register and the array's first multiplier are far apart on the die:
one route each, with the extension's LUT in the first); its activations are on ``act``
:data:`FEED_LATENCY` cycles after the command was accepted, one pixel per cycle.
``cmd.ready`` rises in the cycle a command issues its last pixel (or its last padding
cycle), so back-to-back commands stream without a bubble.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import Multiplier
from .poolwrite import reciprocal

__all__ = ["Feeder", "FEED_LATENCY", "feed_command_layout"]

FEED_LATENCY = 13     # command accepted in cycle a -> its first pixel on `act` in a + 13

DIM_BITS = 10         # descriptor in_h / in_w / out_w fields
CHAN_BITS = 12
COORD = signed(DIM_BITS + 3)   # ih, iw: -pad .. (in - 1) * stride + kernel


def feed_command_layout(addr_width):
    """One step of a CONV descriptor: descriptor fields plus the step's tile and tap."""
    return data.StructLayout({
        "src":       unsigned(addr_width),
        "in_h":      unsigned(DIM_BITS),
        "in_w":      unsigned(DIM_BITS),
        "in_c":      unsigned(CHAN_BITS),
        "stride":    unsigned(3),
        "pad_t":     unsigned(3),
        "pad_l":     unsigned(3),
        "in_signed": unsigned(1),
        "conv_w":    unsigned(DIM_BITS),   # convolution output width (before pooling)
        "oh0":       unsigned(DIM_BITS),   # first output pixel of the tile
        "ow0":       unsigned(DIM_BITS),
        "n":         unsigned(CHAN_BITS),  # pixels in the tile (tile_px field width)
        "i":         unsigned(4),          # kernel tap
        "j":         unsigned(4),
        "k":         unsigned(CHAN_BITS),  # K-tile: channels k*R .. k*R + R - 1
        "swap":      unsigned(1),          # raise the array's swap with the first pixel
    })


def _check_int(what, value, lo, hi, fix):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer from {lo} to {hi}, not {value!r}; {fix}")


class Feeder(wiring.Component):
    """Im2col address generator and bank reader feeding the systolic array.

    Parameters
    ----------
    rows : int
        R, the array's rows and the number of byte banks.
    act_width : int
        Width of the array's activation operands, at least 9 so that unsigned
        8-bit activations (0..255) stay exact.
    min_cycles : int
        Fewest cycles a command occupies (``ArrayTiming.min_swap_interval``): a tile
        of fewer pixels is followed by idle cycles, so swaps keep their spacing.
    compact : bool
        ``in_h``, ``in_w`` and ``in_c`` are read from the latest command instead of
        riding along the pipeline with each pixel (``AcceleratorConfig.compact_feeder``):
        they must hold still while pixels are in flight, as they do within a descriptor
        (the sequencer drains the pipeline between descriptors).
    block_products : bool
        On an iCE40, ``ih * in_w`` and ``pix * groups`` are SB_MAC16s although they are
        under 24 bits (``AcceleratorConfig.standalone_pool`` frees the pool writer's).
    registered_read : bool
        ``rd.data`` comes two cycles after the address, out of a register (the block
        RAM's own, ``hw.bram``): the feeder does not register it again.
    read_ahead : bool
        ``rd.addr`` and ``rd.en`` a cycle ahead, for a memory that registers them
        itself (``hw.bram.BlockRAM``'s ``read_ahead``: copies beside its blocks). The
        data arrives when it would without: the pipeline is unchanged.

    Ports
    -----
    cmd : In(stream(feed_command_layout))
        Steps, one after the other; ``ready`` as described in the module docstring.
    rd : Out(flipped memory.ReadPort.Signature)
        Read port of the R-byte-wide activation memory, one cycle latency (two with
        ``registered_read``: an ``hw.bram.BlockRAM`` port, whose data is registered).
    act : Out(stream(ArrayLayout(signed(act_width), rows)), always_ready)
        The array's ``act`` input: one pixel per valid cycle.
    swap : Out(1)
        The array's ``swap``, high with the first pixel of a command that asks for it.
    pad : Out(1)
        High with a pixel that lies in the padding (sent as zeros, nothing read): a max
        pool must ignore it rather than take 0.
    busy : Out(1)
        A command is being issued or a pixel is still in the pipeline.
    """

    def __init__(self, rows, *, act_width=9, addr_width=20, min_cycles=1, compact=False,
                 block_products=False, registered_read=False, read_ahead=False):
        _check_int("Feeder rows", rows, 1, 64, "use the array's row count")
        _check_int("Feeder act_width", act_width, 9, 32,
                   "unsigned 8-bit activations (0..255) need 9 signed bits")
        _check_int("Feeder addr_width", addr_width, 1, 20,
                   "the descriptor's src field has 20 bits")
        _check_int("Feeder min_cycles", min_cycles, 1, 4095,
                   "pass ArrayTiming(rows, cols).min_swap_interval")
        self.rows = rows
        self.act_width = act_width
        self.addr_width = addr_width
        self.min_cycles = min_cycles
        self.compact = bool(compact)
        self.block_products = bool(block_products)
        self.registered_read = bool(registered_read)
        self.read_ahead = bool(read_ahead)
        super().__init__({
            "cmd":  In(stream.Signature(feed_command_layout(addr_width))),
            "rd":   Out(memory.ReadPort.Signature(
                addr_width=addr_width, shape=data.ArrayLayout(unsigned(8), rows)).flip()),
            "act":  Out(stream.Signature(data.ArrayLayout(signed(act_width), rows),
                                         always_ready=True)),
            "swap": Out(1),
            "pad":  Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        R, A = self.rows, self.addr_width
        cmd = self.cmd.payload

        # --- issue: walk the tile's output pixels in raster order -----------------
        active = Signal()
        cycles_left = Signal(CHAN_BITS)       # cycles of this command, this one included
        px_left = Signal(CHAN_BITS)
        first = Signal()
        cur = Signal(feed_command_layout(A), reset_less=True)
        oh = Signal(DIM_BITS, reset_less=True)
        ow = Signal(DIM_BITS, reset_less=True)
        i_off = Signal(signed(5), reset_less=True)     # i - pad_t
        j_off = Signal(signed(5), reset_less=True)     # j - pad_l
        groups = Signal(CHAN_BITS, reset_less=True)
        w_last = Signal(DIM_BITS, reset_less=True)     # conv_w - 1: ow wraps after it

        last_cycle = active & (cycles_left == 1)
        # ready = ~active | last_cycle, as a register set a cycle ahead: the sequencer's
        # accept enables most of its registers, so it starts from a flip-flop
        ready = Signal(init=1)
        m.d.comb += self.cmd.ready.eq(ready)
        issue = active & (px_left != 0)
        with m.If(active):
            m.d.sync += ready.eq(last_cycle | (cycles_left == 2))

        # The issue counters are the output pixel (oh, ow) only: set from the command
        # without arithmetic, so accepting a command is no longer than a register load;
        # ih and iw follow in the pipeline (s0, s0b).
        with m.If(active):
            m.d.sync += [cycles_left.eq(cycles_left - 1), first.eq(0)]
            with m.If(last_cycle):
                m.d.sync += active.eq(0)
            with m.If(issue):
                m.d.sync += px_left.eq(px_left - 1)
                with m.If(ow == w_last):
                    m.d.sync += [ow.eq(0), oh.eq(oh + 1)]
                with m.Else():
                    m.d.sync += ow.eq(ow + 1)

        # ceil(in_c / R) without a divider; in_c + R - 1 < 2**13 for every R <= 64.
        g_mult, g_shift = reciprocal(R, CHAN_BITS + 1)
        with m.If(self.cmd.valid & self.cmd.ready):
            cycles = Mux(cmd.n > self.min_cycles, cmd.n, self.min_cycles)
            m.d.sync += [
                active.eq(1),
                ready.eq(cycles == 1),
                cycles_left.eq(cycles),
                px_left.eq(cmd.n),
                first.eq(1),
                cur.eq(cmd),
                oh.eq(cmd.oh0),
                ow.eq(cmd.ow0),
                w_last.eq(cmd.conv_w - 1),
                i_off.eq(cmd.i - cmd.pad_t),
                j_off.eq(cmd.j - cmd.pad_l),
                groups.eq(((cmd.in_c + R - 1) * g_mult) >> g_shift),
            ]

        # --- address pipeline: every stage carries what the later ones need, so the
        # next command may be accepted while this one's pixels are in flight. --------
        def stage(name, fields):
            return Signal(data.StructLayout(fields), name=name, reset_less=True)

        v0, v0b, v1, v1b, v2, v3, v3b, v4, v4b, v5 = (
            Signal(name=f"valid_{s}")
            for s in ("0", "0b", "1", "1b", "2", "3", "3b", "4", "4b", "5"))
        carried = {"swap": 1, "sgn": 1, "in_h": DIM_BITS, "in_w": DIM_BITS,
                   "base": unsigned(A), "groups": CHAN_BITS}
        if self.compact:
            carried = {"swap": 1, "sgn": 1, "base": unsigned(A)}
        # s0, s0b: ih = oh * stride + i - pad_t (stride 1..7: three shifted terms), the
        # same for iw; one add per stage.
        def split_product(x, factor, offset):
            return (Mux(factor[0], x, 0) + Mux(factor[1], x << 1, 0),
                    Mux(factor[2], x << 2, 0) + offset)
        s0 = stage("s0", {"h0": COORD, "h1": COORD, "w0": COORD, "w1": COORD, **carried})
        h0, h1 = split_product(oh, cur.stride, i_off)
        w0, w1 = split_product(ow, cur.stride, j_off)
        m.d.sync += [
            v0.eq(issue),
            s0.h0.eq(h0), s0.h1.eq(h1), s0.w0.eq(w0), s0.w1.eq(w1),
            s0.swap.eq(first & cur.swap),
            s0.sgn.eq(cur.in_signed),
            *([] if self.compact else [s0.in_h.eq(cur.in_h), s0.in_w.eq(cur.in_w)]),
            s0.base.eq(cur.src + cur.k),
            *([] if self.compact else [s0.groups.eq(groups)]),
        ]
        s0b = stage("s0b", {"ih": COORD, "iw": COORD, **carried})
        m.d.sync += [v0b.eq(v0), s0b.ih.eq(s0.h0 + s0.h1), s0b.iw.eq(s0.w0 + s0.w1)]
        m.d.sync += [getattr(s0b, name).eq(getattr(s0, name)) for name in carried]
        ih, iw = s0b.ih, s0b.iw

        # ih * in_w and pix * groups are DSP blocks with their own operand and product
        # registers (hw.dsp): each takes two edges, and the fields that ride along wait
        # one extra stage (s1b, s3b) beside the product.
        # (block_products: one iCE40 SB_MAC16 each even under 24 bits, where blocks
        # are free: hw.dsp.Multiplier's `block`)
        m.submodules.row_mul = row_mul = Multiplier(unsigned(DIM_BITS), unsigned(DIM_BITS),
                                                    block=self.block_products)
        m.submodules.word_mul = word_mul = Multiplier(unsigned(A), unsigned(CHAN_BITS),
                                                      block=self.block_products)
        riding = {} if self.compact else {"groups": CHAN_BITS}
        s1 = stage("s1", {"zero": 1, "swap": 1, "sgn": 1,
                          "iw": unsigned(A), "base": unsigned(A), **riding})
        in_h, in_w = (cur.in_h, cur.in_w) if self.compact else (s0b.in_h, s0b.in_w)
        inside = (ih >= 0) & (ih < in_h) & (iw >= 0) & (iw < in_w)
        m.d.comb += [row_mul.a.eq(ih[:DIM_BITS]), row_mul.b.eq(in_w)]
        m.d.sync += [
            v1.eq(v0b),
            s1.zero.eq(~inside),
            s1.swap.eq(s0b.swap),
            s1.sgn.eq(s0b.sgn),
            s1.iw.eq(iw[:DIM_BITS]),
            s1.base.eq(s0b.base),
            *([] if self.compact else [s1.groups.eq(s0b.groups)]),
        ]
        s1b = stage("s1b", s1.shape().members)
        m.d.sync += [v1b.eq(v1), s1b.eq(s1)]
        s2 = stage("s2", {"zero": 1, "swap": 1, "sgn": 1, "pix": unsigned(A),
                          "base": unsigned(A), **riding})
        m.d.sync += [
            v2.eq(v1b),
            s2.zero.eq(s1b.zero), s2.swap.eq(s1b.swap), s2.sgn.eq(s1b.sgn),
            s2.pix.eq(row_mul.p + s1b.iw),
            s2.base.eq(s1b.base), *([] if self.compact else [s2.groups.eq(s1b.groups)]),
        ]
        s3 = stage("s3", {"zero": 1, "swap": 1, "sgn": 1, "base": unsigned(A)})
        m.d.comb += [word_mul.a.eq(s2.pix), word_mul.b.eq(groups if self.compact else s2.groups)]
        m.d.sync += [
            v3.eq(v2),
            s3.zero.eq(s2.zero), s3.swap.eq(s2.swap), s3.sgn.eq(s2.sgn),
            s3.base.eq(s2.base),
        ]
        s3b = stage("s3b", s3.shape().members)
        m.d.sync += [v3b.eq(v3), s3b.eq(s3)]
        s4 = stage("s4", {"zero": 1, "swap": 1, "sgn": 1, "addr": unsigned(A)})
        addr3 = s3b.base + word_mul.p
        m.d.sync += [
            v4.eq(v3b),
            s4.zero.eq(s3b.zero), s4.swap.eq(s3b.swap), s4.sgn.eq(s3b.sgn),
            s4.addr.eq(addr3),
        ]
        # the read in s4b (padding needs none); read_ahead: what s4b will hold, s4 a
        # register: the product's route from its DSP (3.6 ns at fad210d) and the add
        # into s4, the memory's choice of the host's address and its copies beside the
        # blocks after it (into the copies straight from the DSP, 8.3 ns asked 125)
        s4b = stage("s4b", s4.shape().members)
        m.d.sync += [v4b.eq(v4), s4b.eq(s4)]
        if self.read_ahead:
            m.d.comb += [self.rd.addr.eq(s4.addr), self.rd.en.eq(v4 & ~s4.zero)]
        else:
            m.d.comb += [self.rd.addr.eq(s4b.addr), self.rd.en.eq(v4b & ~s4b.zero)]
        s5 = stage("s5", {"zero": 1, "swap": 1, "sgn": 1})
        m.d.sync += [v5.eq(v4b), s5.zero.eq(s4b.zero), s5.swap.eq(s4b.swap),
                     s5.sgn.eq(s4b.sgn)]
        # The block RAM's output goes straight into a register (it arrives late in the
        # cycle: 5.6 ns after the clock on an ECP5), and only then into logic.
        v6 = Signal(name="valid_6")
        # (`ext`: the sign bit extends, a signed operand that is not padding: one LUT
        # level between the block's output and the array's first multiplier)
        s6 = stage("s6", {"zero": 1, "swap": 1, "ext": 1})
        m.d.sync += [v6.eq(v5), s6.zero.eq(s5.zero), s6.swap.eq(s5.swap),
                     s6.ext.eq(s5.sgn & ~s5.zero)]
        if self.registered_read:
            # the port's data is already a register: the block's own (hw.bram)
            s6_data = self.rd.data
        else:
            s6_data = Signal(data.ArrayLayout(unsigned(8), R), name="s6_data",
                             reset_less=True)
            m.d.sync += s6_data.eq(self.rd.data)

        # --- extension: the bank bytes as act_width-bit signed operands, into a fabric
        # register (s7) so the block's output reaches the array in two routes ----------
        v7 = Signal(name="valid_7")
        s7 = stage("s7", {"zero": 1, "swap": 1})
        act7 = Signal(data.ArrayLayout(signed(self.act_width), R), name="s7_act",
                      reset_less=True)
        m.d.sync += [v7.eq(v6), s7.zero.eq(s6.zero), s7.swap.eq(s6.swap)]
        for r in range(R):
            byte = s6_data[r]
            m.d.sync += act7[r].eq(Cat(Mux(s6.zero, 0, byte), s6.ext & byte[-1]).as_signed())
        m.d.comb += [
            self.act.payload.eq(act7),
            self.act.valid.eq(v7),
            self.swap.eq(v7 & s7.swap),
            self.pad.eq(v7 & s7.zero),
            self.busy.eq(active | v0 | v0b | v1 | v1b | v2 | v3 | v3b | v4 | v4b | v5 | v6
                         | v7),
        ]
        return m
