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

Pipeline (beat on ``pixels`` in cycle t):

    t+1  ph, pw by multiplying with a reciprocal of k (no divider)
    t+2  first/keep flags, ph * out_w * groups and pw * groups + group
    t+3  address; the read is issued in this cycle (one-cycle read port)
    t+4  merge with the read data; the write is issued in this cycle

Hazard: two consecutive beats of one window row hit the same word, so the later
one's read (cycle t+3) can coincide with the earlier one's write (also in that
cycle) and return the stale word. The write of the previous cycle is kept and
forwarded, byte by byte, in place of the read data when the addresses match, so
the memory's read port need not be transparent. Writes older than one cycle are in
the memory by the time of the read.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PoolWriter", "POOL_WRITE_LATENCY", "pool_config_layout", "pool_beat_layout",
           "reciprocal"]

POOL_WRITE_LATENCY = 4   # beat in cycle t -> memory written at the edge ending t + 4

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
        Read port of the banks, one cycle latency; need not be transparent.
    wr : Out(flipped memory.WritePort.Signature, one enable per bank)
        Write port of the banks.
    """

    def __init__(self, rows, *, addr_width=20):
        for what, value, lo, hi in (("PoolWriter rows", rows, 1, 64),
                                    ("PoolWriter addr_width", addr_width, 1, 20)):
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"{what} must be an integer from {lo} to {hi}, not {value!r}"
                                 + ("; use the array's row count" if "rows" in what else
                                    "; the descriptor's dst field has 20 bits"))
        self.rows = rows
        self.addr_width = addr_width
        word = data.ArrayLayout(unsigned(8), rows)
        super().__init__({
            "cfg":    In(pool_config_layout(addr_width)),
            "pixels": In(stream.Signature(pool_beat_layout(rows), always_ready=True)),
            "rd":     Out(memory.ReadPort.Signature(addr_width=addr_width, shape=word).flip()),
            "wr":     Out(memory.WritePort.Signature(addr_width=addr_width, shape=word,
                                                     granularity=1).flip()),
        })

    def elaborate(self, platform):
        m = Module()
        R, A = self.rows, self.addr_width
        cfg = self.cfg

        # The pool window never changes inside a descriptor, so its reciprocal and the
        # row stride are registered: the multiplies below then start from flops.
        recip = Signal(16)
        row_words = Signal(A + 2)
        col_words = Signal(14)
        _, shift = reciprocal(MAX_POOL, DIM_BITS)
        with m.Switch(cfg.pool_k):
            for kk in range(MAX_POOL + 1):
                with m.Case(kk):
                    m.d.sync += recip.eq(reciprocal(max(kk, 1), DIM_BITS, shift)[0])
        scale = Mux(cfg.raw, 2, 0)
        m.d.sync += [
            row_words.eq((cfg.out_w * cfg.groups) << scale),
            col_words.eq(cfg.groups << scale),
        ]

        beat = self.pixels.payload
        # Stage 1: pooled coordinates.
        # x * recip = (x // k) << shift | frac, and frac < recip exactly when k divides
        # x (see `reciprocal`), so the remainder needs no multiply back.
        v1 = Signal()
        b1 = Signal(pool_beat_layout(R), reset_less=True)
        ph1 = Signal(DIM_BITS, reset_less=True)
        pw1 = Signal(DIM_BITS, reset_less=True)
        first1 = Signal(reset_less=True)
        prod_h, prod_w = beat.oh * recip, beat.ow * recip
        m.d.sync += [
            v1.eq(self.pixels.valid),
            b1.eq(beat),
            ph1.eq(prod_h >> shift),
            pw1.eq(prod_w >> shift),
            first1.eq((prod_h[:shift] < recip) & (prod_w[:shift] < recip)),
        ]

        # Stage 2: decision and the two address products.
        v2 = Signal()
        first2 = Signal(reset_less=True)
        keep2 = Signal(reset_less=True)
        row2 = Signal(A, reset_less=True)
        col2 = Signal(A, reset_less=True)
        b2 = Signal(pool_beat_layout(R), reset_less=True)
        word_in_group = Mux(cfg.raw, (b1.group << 2) | b1.byte, b1.group)
        m.d.sync += [
            v2.eq(v1),
            b2.eq(b1),
            first2.eq(first1),
            keep2.eq((ph1 < cfg.out_h) & (pw1 < cfg.out_w)),
            row2.eq(ph1 * row_words),
            col2.eq(pw1 * col_words + word_in_group),
        ]

        # Stage 3: address; read the stored word unless this beat is first.
        v3 = Signal()
        first3 = Signal(reset_less=True)
        addr3 = Signal(A, reset_less=True)
        b3 = Signal(pool_beat_layout(R), reset_less=True)
        m.d.sync += [
            v3.eq(v2 & keep2),
            first3.eq(first2),
            addr3.eq(cfg.dst + row2 + col2),
            b3.eq(b2),
        ]
        m.d.comb += [
            self.rd.addr.eq(addr3),
            self.rd.en.eq(v3 & ~first3),
        ]

        # Stage 4: merge and write.
        v4 = Signal()
        first4 = Signal(reset_less=True)
        addr4 = Signal(A, reset_less=True)
        b4 = Signal(pool_beat_layout(R), reset_less=True)
        m.d.sync += [v4.eq(v3), first4.eq(first3), addr4.eq(addr3), b4.eq(b3)]

        # The write issued in the cycle this beat's read was issued.
        fwd_en = Signal(R)
        fwd_addr = Signal(A, reset_less=True)
        fwd_data = Signal(data.ArrayLayout(unsigned(8), R), reset_less=True)
        m.d.sync += [
            fwd_en.eq(self.wr.en),
            fwd_addr.eq(self.wr.addr),
            fwd_data.eq(self.wr.data),
        ]

        flip = Mux(cfg.signed, 0x80, 0)      # int8 order as uint8 order
        hit = fwd_addr == addr4
        for r in range(R):
            old = Mux(hit & fwd_en[r], fwd_data[r], self.rd.data[r])
            new = b4.data[r]
            larger = (new ^ flip) > (old ^ flip)
            m.d.comb += self.wr.data[r].eq(Mux(first4 | larger, new, old))
        m.d.comb += [
            self.wr.addr.eq(addr4),
            self.wr.en.eq(Mux(v4, b4.en, 0)),
        ]
        return m
