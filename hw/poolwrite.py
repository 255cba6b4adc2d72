"""Pool-on-write: the writer of post-processed pixels into the activation banks.

A CONV descriptor's outputs arrive in raster order of the convolution's output
(oh, ow), one activation word (R byte lanes with byte enables) per beat. With a
pool window ``k`` (window == stride, floor mode; ``k`` <= 1: no pool) the pixel
belongs to pooled cell (ph, pw) = (oh // k, ow // k), and the writer

- drops it when the cell is outside the pooled tensor (``ph >= out_h`` or
  ``pw >= out_w``: the rows and columns a floor-mode pool leaves out);
- writes it when it is the cell's first contributor (``oh % k == 0`` and
  ``ow % k == 0``: raster order makes it the first to arrive);
- otherwise reads the stored word and writes the lane-wise max (int8 or uint8).

The word is ``dst + (ph * out_w + pw) * groups + group`` (``hw/layout.py``), or for a
raw int32 tensor ``dst + ((oh * out_w + ow) * groups + group) * 4 + byte``.

Pipeline (beat on ``pixels`` in cycle t; every multiply is a DSP block with its operand
and product registers, ``hw.dsp.Multiplier``, and every block RAM output lands in a
register before any logic)::

    t+1, t+2  ph, pw by multiplying with a reciprocal of k (no divider)
    t+3, t+4  first/keep flags; ph * out_w * groups and pw * groups
    t+5       row part + dst + word in group, column part
    t+6       address; the read is issued in this cycle (one-cycle read port)
    t+7       the read data into a register
    t+8       the stored word, or a newer one still in flight, into a register
    t+9       merge with it (or with the word merged the cycle before) into the write
              register
    t+10      the write is issued (from registers only)

Hazard: a beat's read (cycle t+6) comes before the writes of the four beats ahead of
it land, and consecutive beats of one window row hit the same word. The last merged
words are kept (the write register and two older copies) and forwarded, newest first,
byte by byte, in place of the read data when the addresses match (compared stages
early, between registers), so the memory's read port need not be transparent. Older
writes are in the memory by the time of the read.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import Multiplier

__all__ = ["PoolWriter", "POOL_WRITE_LATENCY", "host_write_signature", "pool_config_layout",
           "pool_beat_layout", "reciprocal"]

POOL_WRITE_LATENCY = 10  # beat in cycle t -> memory written at the edge ending t + 10

DIM_BITS = 10            # descriptor out_h / out_w / in_h / in_w fields
MAX_POOL = 7             # pool_k is a 3-bit field


def reciprocal(divisor, width, shift=None):
    """(multiplier, shift) with ``(x * multiplier) >> shift == x // divisor`` for every
    ``0 <= x < 2**width`` (the round-up reciprocal; exact since shift >= width + log2).

    With ``multiplier * divisor = 2**shift + e`` (0 <= e < divisor), ``x = q*divisor + r``
    gives ``x * multiplier = q << shift | (q*e + r*multiplier)``, and the low part is
    below ``multiplier`` exactly when ``r == 0`` (q*e < 2**width <= multiplier).
    """
    least = width + max(1, (divisor - 1).bit_length())
    shift = least if shift is None else shift
    assert shift >= least, f"shift {shift} is too small for x < 2**{width} / {divisor}"
    return -(-(1 << shift) // divisor), shift


def pool_config_layout(addr_width):
    """Descriptor-wide settings; held stable while a descriptor's beats are in flight."""
    return data.StructLayout({
        "dst":    unsigned(addr_width),
        "out_h":  unsigned(DIM_BITS),     # pooled tensor size
        "out_w":  unsigned(DIM_BITS),
        "groups": unsigned(12),           # ceil(out_c / R): words per pixel
        "pool_k": unsigned(3),            # window and stride; 0 or 1: no pool
        "signed": unsigned(1),            # max over int8 (else uint8)
        "raw":    unsigned(1),            # int32 tensor, 4 words per group; no pool
    })


def host_write_signature(rows, addr_width):
    """The host's byte writes into the writer's port (`PoolWriter`'s ``host_write``)."""
    return wiring.Signature({
        "valid": Out(1),
        "addr":  Out(addr_width),
        "data":  Out(8),
        "en":    Out(rows),
    })


def pool_beat_layout(rows):
    """One activation word to write: where it comes from and its byte lanes."""
    return data.StructLayout({
        "oh":    unsigned(DIM_BITS),      # conv output pixel, before pooling
        "ow":    unsigned(DIM_BITS),
        "group": unsigned(12),            # channel group c // R of the word
        "byte":  unsigned(2),             # raw only: which byte of the int32 lanes
        "data":  data.ArrayLayout(unsigned(8), rows),
        "en":    unsigned(rows),          # bank write enables (partial words)
    })


class PoolWriter(wiring.Component):
    """Writes post-processed words into the activation banks, max-pooling on write.

    Ports
    -----
    cfg : In(pool_config_layout)
        The descriptor's output tensor and pool window.
    pixels : In(stream(pool_beat_layout), always_ready)
        One word per valid cycle, raster order of (oh, ow) per group sequence;
        gaps anywhere. Never stalls (its producer is the post-processing pipeline).
    rd : Out(flipped memory.ReadPort.Signature)
        Read port of the banks, one cycle latency (two with ``registered_read``: an
        ``hw.bram.BlockRAM`` port, whose data is registered); need not be transparent:
        a read of the word written at the same edge is never used.
    wr : Out(flipped memory.WritePort.Signature, one enable per bank)
        Write port of the banks. With ``write_ahead``, ``wr.addr`` and ``wr.en`` come a
        cycle before ``wr.data`` (an ``hw.bram.BlockRAM`` of ``write_ahead`` registers
        them beside its blocks).
    host : In(host_write_signature), with ``host_write``
        A byte the host writes while no beat is in flight (``valid``: the word
        ``addr``, ``data`` into the banks of ``en``), from registers. It enters the
        write stage as a window's first beat would (without a pool, the write
        register) and lands through the same port, at the edge ending the cycle two
        after it is valid (one without a pool): the banks' write data is then
        the writer's register, with no choice of the host's or the writer's byte in
        front of every block (one LUT and a 5.6-6.2 ns route to the 8x8's 32 blocks,
        a slow path of the 125 MHz builds).
    """

    def __init__(self, rows, *, addr_width=20, pool=True, registered_read=False,
                 write_ahead=False, host_write=False):
        for what, value, lo, hi in (("PoolWriter rows", rows, 1, 64),
                                    ("PoolWriter addr_width", addr_width, 1, 20)):
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"{what} must be an integer from {lo} to {hi}, not {value!r}"
                                 + ("; use the array's row count" if "rows" in what else
                                    "; the descriptor's dst field has 20 bits"))
        self.rows = rows
        self.addr_width = addr_width
        self.pool = bool(pool)
        self.registered_read = bool(registered_read)
        self.write_ahead = bool(write_ahead)
        self.host_write = bool(host_write)
        word = data.ArrayLayout(unsigned(8), rows)
        host = {"host": In(host_write_signature(rows, addr_width))} if host_write else {}
        super().__init__({
            **host,
            "cfg":    In(pool_config_layout(addr_width)),
            "pixels": In(stream.Signature(pool_beat_layout(rows), always_ready=True)),
            "rd":     Out(memory.ReadPort.Signature(addr_width=addr_width, shape=word).flip()),
            "wr":     Out(memory.WritePort.Signature(addr_width=addr_width, shape=word,
                                                     granularity=1).flip()),
        })

    @property
    def latency(self) -> int:
        """Cycles from a beat to its write landing: :data:`POOL_WRITE_LATENCY`, or 2
        without pooling (the sequencer's drain still waits the longer)."""
        return POOL_WRITE_LATENCY if self.pool else 2

    def elaborate(self, platform):
        m = Module()
        if not self.pool:
            return self._sequential(m)
        R, A = self.rows, self.addr_width
        cfg = self.cfg
        word = data.ArrayLayout(unsigned(8), R)

        def delayed(value, name):
            reg = Signal.like(value, name=name, reset_less=True)
            m.d.sync += reg.eq(value)
            return reg

        # The pool window and tensor shape never change inside a descriptor (set up
        # several cycles before its first beat), so their reciprocal and the row stride
        # are registered: the multiplies below then start from flops.
        recip = Signal(16)
        col_words = Signal(14)
        _, shift = reciprocal(MAX_POOL, DIM_BITS)
        with m.Switch(cfg.pool_k):
            for kk in range(MAX_POOL + 1):
                with m.Case(kk):
                    m.d.sync += recip.eq(reciprocal(max(kk, 1), DIM_BITS, shift)[0])
        scale = Mux(cfg.raw, 2, 0)
        m.submodules.row_stride = row_stride = Multiplier(unsigned(DIM_BITS), unsigned(12))
        row_words = Signal(A + 2)
        m.d.comb += [row_stride.a.eq(cfg.out_w), row_stride.b.eq(cfg.groups)]
        m.d.sync += [row_words.eq(row_stride.p << scale), col_words.eq(cfg.groups << scale)]

        def pipe(valid, beat, name):
            return delayed(valid, f"v{name}"), delayed(beat, f"b{name}")

        beat = self.pixels.payload
        # t+1, t+2: pooled coordinates.
        # x * recip = (x // k) << shift | frac, and frac < recip exactly when k divides
        # x (see `reciprocal`), so the remainder needs no multiply back.
        m.submodules.div_h = div_h = Multiplier(unsigned(DIM_BITS), unsigned(16))
        m.submodules.div_w = div_w = Multiplier(unsigned(DIM_BITS), unsigned(16))
        m.d.comb += [div_h.a.eq(beat.oh), div_h.b.eq(recip),
                     div_w.a.eq(beat.ow), div_w.b.eq(recip)]
        v1, b1 = pipe(self.pixels.valid, beat, "1")
        v2, b2 = pipe(v1, b1, "2")
        prod_h, prod_w = div_h.p, div_w.p
        ph = prod_h >> shift
        pw = prod_w >> shift

        # t+3, t+4: decision and the two address products.
        m.submodules.row_mul = row_mul = Multiplier(unsigned(DIM_BITS), unsigned(A + 2))
        m.submodules.col_mul = col_mul = Multiplier(unsigned(DIM_BITS), unsigned(14))
        m.d.comb += [row_mul.a.eq(ph), row_mul.b.eq(row_words),
                     col_mul.a.eq(pw), col_mul.b.eq(col_words)]
        word_in_group = Mux(cfg.raw, (b2.group << 2) | b2.byte, b2.group)
        v3 = delayed(v2 & (ph < cfg.out_h) & (pw < cfg.out_w), "v3")
        b3 = delayed(b2, "b3")
        first3 = delayed((prod_h[:shift] < recip) & (prod_w[:shift] < recip), "first3")
        base3 = delayed((cfg.dst + word_in_group)[:A], "base3")
        v4, b4 = pipe(v3, b3, "4")
        first4 = delayed(first3, "first4")
        base4 = delayed(base3, "base4")

        # t+5, t+6: the address, one add per stage.
        v5, b5 = pipe(v4, b4, "5")
        first5 = delayed(first4, "first5")
        row5 = delayed((row_mul.p + base4)[:A], "row5")
        col5 = delayed(col_mul.p[:A], "col5")
        v6, b6 = pipe(v5, b5, "6")
        first6 = delayed(first5, "first6")
        addr6 = delayed((row5 + col5)[:A], "addr6")
        # Read the stored word unless this beat is its window's first.
        m.d.comb += [
            self.rd.addr.eq(addr6),
            self.rd.en.eq(v6 & ~first6),
        ]

        # t+7: the read data into a register (the block's own with registered_read);
        # which of the writes ahead the beat needs.
        v7, b7 = pipe(v6, b6, "7")
        first7 = delayed(first6, "first7")
        addr7 = delayed(addr6, "addr7")
        stored = self.rd.data if self.registered_read else delayed(self.rd.data, "stored")
        v8, b8 = pipe(v7, b7, "8")
        first8 = delayed(first7, "first8")
        addr8 = delayed(addr7, "addr8")
        # (host_write: the host's byte as a window's first beat, the writer idle)
        host = self.host if self.host_write else None
        inject = host.valid if host else 0
        v9 = delayed(v8 | inject, "v9")
        b9 = delayed(b8, "b9")
        if host:
            with m.If(inject):
                m.d.sync += [b9.data.eq(Cat(*[host.data] * R)), b9.en.eq(host.en)]
        first9 = delayed(first8 | inject, "first9")
        addr9 = delayed(Mux(inject, host.addr, addr8) if host else addr8, "addr9")
        # fwd[0] is the write register (its write lands at the edge ending this cycle),
        # fwd[1], fwd[2] the writes that landed one and two edges ago.
        fwd_en = [Signal(R, name=f"fwd{k}_en") for k in range(3)]
        fwd_addr = [Signal(A, name=f"fwd{k}_addr", reset_less=True) for k in range(3)]
        fwd_data = [Signal(word, name=f"fwd{k}_data", reset_less=True) for k in range(3)]
        merge_en = Mux(v9, b9.en, 0)
        # The beat merging in t+9 needs what the four beats ahead of it wrote, in the
        # lanes they wrote: the newest (merging in t+8, fwd[0] in t+9) is chosen at the
        # merge; the other three are picked in t+8, where they are fwd[0], fwd[1] and
        # fwd[2], from flags compared in t+7 (the beat merging then, fwd[0], fwd[1]).
        hits = [(addr7 == addr9, merge_en), (addr7 == fwd_addr[0], fwd_en[0]),
                (addr7 == fwd_addr[1], fwd_en[1])]
        picks = [Signal(R, name=f"pick{k}") for k in range(3)]
        picked = Signal(R, name="picked")    # any of them
        for r in range(R):
            taken = 0
            for k, (hit, en) in enumerate(hits):
                m.d.sync += picks[k][r].eq(hit & en[r] & ~taken)
                taken = taken | (hit & en[r])
            m.d.sync += picked[r].eq(taken)
        # t+8: the stored word, or a newer one in flight, lane by lane, into a register;
        # the stored word (a long route from the block) meets only the last mux.
        other = Signal(word, name="other", reset_less=True)
        for r in range(R):
            in_flight = Mux(picks[0][r], fwd_data[0][r],
                            Mux(picks[1][r], fwd_data[1][r], fwd_data[2][r]))
            m.d.sync += other[r].eq(Mux(picked[r], in_flight, stored[r]))
        # the newest write (fwd[0] in t+9) by lane: the beat merging now, if it has the
        # address, in the lanes it writes (a register in front of the merge's mux, not a
        # gate of two)
        newest = Signal(R, name="newest")
        m.d.sync += newest.eq(Mux(addr8 == addr9, merge_en, 0))

        # t+9: merge into the write register; t+10: the write lands.
        flip = Mux(cfg.signed, 0x80, 0)      # int8 order as uint8 order
        merged = Signal(word)
        for r in range(R):
            old = Mux(newest[r], fwd_data[0][r], other[r])
            new = b9.data[r]
            # (as a subtraction's borrow: one carry chain)
            larger = (Cat(old ^ flip, 0) - Cat(new ^ flip, 0))[-1]
            m.d.comb += merged[r].eq(Mux(first9 | larger, new, old))
        m.d.sync += [
            fwd_en[0].eq(merge_en), fwd_addr[0].eq(addr9), fwd_data[0].eq(merged),
            fwd_en[1].eq(fwd_en[0]), fwd_addr[1].eq(fwd_addr[0]), fwd_data[1].eq(fwd_data[0]),
            fwd_en[2].eq(fwd_en[1]), fwd_addr[2].eq(fwd_addr[1]), fwd_data[2].eq(fwd_data[1]),
        ]
        m.d.comb += self.wr.data.eq(fwd_data[0])
        if self.write_ahead:
            m.d.comb += [self.wr.addr.eq(addr9), self.wr.en.eq(merge_en)]
        else:
            m.d.comb += [self.wr.addr.eq(fwd_addr[0]), self.wr.en.eq(fwd_en[0])]
        return m

    def _sequential(self, m):
        """``pool=False`` (``AcceleratorConfig.standalone_pool``): no pool, so no divides,
        reads or merges, and no address products either. The accelerator sends an output
        tile's pixels in raster order from (0, 0), so a pixel's word is the previous
        pixel's plus ``groups`` (4 ``groups`` for raw int32 words, whose 4 bytes come one
        after another), and a tile's first pixel's is ``dst`` plus its word in the group.
        The write lands two cycles after the beat."""
        A, cfg = self.addr_width, self.cfg
        beat = Signal.like(self.pixels.payload, reset_less=True)
        valid = Signal()
        m.d.sync += [beat.eq(self.pixels.payload), valid.eq(self.pixels.valid)]
        scale = Mux(cfg.raw, 2, 0)
        step = Signal(A, reset_less=True)             # words from one pixel to the next
        m.d.sync += step.eq(cfg.groups << scale)
        pixel = Signal(A, reset_less=True)            # the latest pixel's first word
        first = (beat.oh == 0) & (beat.ow == 0)
        here = Mux(first, cfg.dst + (beat.group << scale), pixel + step)[:A]
        new_pixel = beat.byte == 0
        with m.If(valid & new_pixel):
            m.d.sync += pixel.eq(here)
        addr = Signal(A, reset_less=True)
        data_q = Signal.like(beat.data, reset_less=True)
        en = Signal(self.rows)
        addr_next = Mux(new_pixel, here, pixel + beat.byte)
        en_next = Mux(valid, beat.en, 0)
        data_next = beat.data
        if self.host_write:     # the host's byte, the writer idle
            host = self.host
            addr_next = Mux(host.valid, host.addr, addr_next)
            en_next = Mux(host.valid, host.en, en_next)
            data_next = Mux(host.valid, Cat(*[host.data] * self.rows), beat.data)
        m.d.sync += [addr.eq(addr_next), data_q.eq(data_next), en.eq(en_next)]
        m.d.comb += self.wr.data.eq(data_q)
        if self.write_ahead:
            m.d.comb += [self.wr.addr.eq(addr_next), self.wr.en.eq(en_next)]
        else:
            m.d.comb += [self.wr.addr.eq(addr), self.wr.en.eq(en)]
        return m
