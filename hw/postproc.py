"""Post-processing of accumulator lanes: bias, requantize, round half to even, clamp.

Per lane ``c`` of a pixel of ``cols`` int32 accumulators, exactly as
``sim.machine.requantize`` (``sim.reference.round_half_even_shift``)::

    x = acc + bias                                  (33 bits, exact)
    v = (x * mult + offset) mod 2**64               (int64, as NumPy computes it)
    y = clamp(round_half_even(v / 2**shift), lo, hi)   (2*y - 1 if bipolar)

or, in raw mode, ``y = x mod 2**32`` (the int32 ``acc + bias`` of an ``out_raw``
layer). ``docs/datapath.md`` is the full protocol; :data:`POST_LATENCY` the depth.

Pipeline (cycle t: the accumulators are on ``acc``; each line is one register stage)::

    t+1  x    = acc + bias                      fabric adder, 33 bits
    t+2  pp   = 4 partial products of x × mult  17×17, 17×14, 16×17, 16×14: one
                                                ECP5 MULT18X18D each, inputs and
                                                output registered
    t+3  t1   = {pp_hh, pp_ll} + offset         64-bit add (pp_ll + pp_hh<<34 is a
         t2   = pp_lh + pp_hl                   concatenation, not an add)
    t+4  v    = t1 + (t2 << 17)                 64-bit add
    t+5  q, guard, sticky = v >>> shift         65-bit barrel shift, 63-input OR
    t+6  y    = clamp(q + round, lo, hi)        on 11 saturated bits, not 64

Every stage is at most one carry chain or one barrel shifter deep, and the multiply
has registered inputs and outputs, so the block is not the critical path next to
the array's PEs.

Parameters are per lane and double-buffered like the array's weights: ``param``
writes a *shadow* record, and ``swap`` (with the first pixel that needs the new
values, or in a gap before it) activates it. The activation travels with the
pixel, one field per stage, so pixels already in flight finish with the old
values; ``lo``, ``hi``, ``raw`` and ``bipolar`` are sampled at the swap as well.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .isa import PARAM

__all__ = ["PostProcessor", "POST_LATENCY", "PARAM_BLACKOUT", "mode_layout",
           "param_load_layout", "post_in_layout", "post_out_layout"]

POST_LATENCY = 6      # cycles from a pixel on `acc` to its result on `out`
PARAM_BLACKOUT = 3    # cycles T .. T+2 after a swap in T refuse parameter loads

# A 17-bit unsigned low half fits the 18-bit signed operand of an ECP5 MULT18X18D.
_SPLIT = 17
_OUT_BITS = 11        # lo/hi are signed(10); q saturated to 11 bits still clamps right


def mode_layout():
    """Descriptor-wide settings, sampled at ``swap``."""
    return data.StructLayout({
        "lo":      signed(10),
        "hi":      signed(10),
        "raw":     unsigned(1),    # out_raw: x mod 2**32, no requantization
        "bipolar": unsigned(1),    # map the clamped {0, 1} to {-1, +1}
    })


def param_load_layout(cols):
    """One shadow-parameter write: the lane and its PARAM record."""
    return data.StructLayout({
        "lane":  unsigned(max(1, ceil_log2(cols))),
        "param": PARAM,
    })


def post_in_layout(cols, acc_width, tag_width):
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_width), cols),
        "tag": unsigned(tag_width),
    })


def post_out_layout(cols, tag_width):
    return data.StructLayout({
        "data": data.ArrayLayout(signed(32), cols),
        "tag":  unsigned(tag_width),
    })


def _check_int(what, value, lo, hi, fix):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer from {lo} to {hi}, not {value!r}; {fix}")


class PostProcessor(wiring.Component):
    """Pipelined bias + requantize + clamp of ``cols`` accumulator lanes per pixel.

    Ports
    -----
    acc : In(stream(post_in_layout), always_ready)
        One pixel of ``cols`` accumulators per valid cycle, gaps anywhere. ``tag``
        rides along unchanged (the pixel's coordinates for the writer).
    swap : In(1)
        High in cycle T: pixels entering in cycles >= T use the shadow parameters
        and the ``mode`` sampled in T. Independent of ``acc.valid``.
    mode : In(mode_layout)
        ``lo``, ``hi``, ``raw``, ``bipolar`` of the next swap.
    param : In(stream(param_load_layout))
        Writes the shadow record of ``lane``. ``ready`` is low in the
        :data:`PARAM_BLACKOUT` cycles T..T+2 after a swap in T (the swap copies the
        shadow field by field over those cycles) and high otherwise.
    out : Out(stream(post_out_layout), always_ready)
        The results of the pixel that entered :data:`POST_LATENCY` cycles earlier:
        int32 lanes (requantized values are sign-extended; the writer keeps 8 bits).
    """

    def __init__(self, cols, acc_width=32, *, tag_width=0):
        _check_int("PostProcessor cols", cols, 1, 64, "use the array's column count")
        _check_int("PostProcessor acc_width", acc_width, 2, 32,
                   "the PARAM bias is int32 and the raw output int32")
        _check_int("PostProcessor tag_width", tag_width, 0, 64, "tags carry a pixel address")
        self.cols = cols
        self.acc_width = acc_width
        self.tag_width = tag_width
        super().__init__({
            "acc":   In(stream.Signature(post_in_layout(cols, acc_width, tag_width),
                                         always_ready=True)),
            "swap":  In(1),
            "mode":  In(mode_layout()),
            "param": In(stream.Signature(param_load_layout(cols))),
            "out":   Out(stream.Signature(post_out_layout(cols, tag_width),
                                          always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        C = self.cols

        # The swap wavefront: swap_d[k] is high k cycles after the swap. A field
        # used by the computation at the edge ending cycle T + k is copied from the
        # shadow at the edge ending T + k - 1, right after the previous pixel used it.
        swap_d = [self.swap]
        for k in range(1, 5):
            s = Signal(name=f"swap_d{k}")
            m.d.sync += s.eq(swap_d[-1])
            swap_d.append(s)
        # Mode travels with the wavefront so back-to-back swaps may change it.
        mode_d = [self.mode]
        for k in range(1, 5):
            md = Signal(mode_layout(), name=f"mode_d{k}", reset_less=True)
            m.d.sync += md.eq(mode_d[-1])
            mode_d.append(md)

        m.d.comb += self.param.ready.eq(~(swap_d[0] | swap_d[1] | swap_d[2]))

        shadow = [Signal(PARAM, name=f"shadow_{c}", reset_less=True) for c in range(C)]
        with m.If(self.param.valid & self.param.ready):
            with m.Switch(self.param.payload.lane):
                for c in range(C):
                    with m.Case(c):
                        m.d.sync += shadow[c].eq(self.param.payload.param)

        valid = [self.acc.valid]
        tags = [self.acc.payload.tag]
        for k in range(1, POST_LATENCY + 1):
            v = Signal(name=f"valid_{k}")
            t = Signal(self.tag_width, name=f"tag_{k}", reset_less=True)
            m.d.sync += [v.eq(valid[-1]), t.eq(tags[-1])]
            valid.append(v)
            tags.append(t)

        mode = Signal(mode_layout(), reset_less=True)        # the active mode (stage 6)
        with m.If(swap_d[4]):
            m.d.sync += mode.eq(mode_d[4])

        for c in range(C):
            self._lane(m, c, shadow[c], swap_d, mode_d, mode)

        m.d.comb += [
            self.out.valid.eq(valid[POST_LATENCY]),
            self.out.payload.tag.eq(tags[POST_LATENCY]),
        ]
        return m

    def _lane(self, m, c, shadow, swap_d, mode_d, mode):
        def reg(shape, name):
            return Signal(shape, name=f"{name}_{c}", reset_less=True)

        bias_a = reg(signed(32), "bias")
        mult_a = reg(unsigned(31), "mult")
        offset_a = reg(signed(56), "offset")
        shift_a = reg(unsigned(6), "shift")

        # Edge T: x uses the new bias in the swap cycle itself, hence the mux.
        bias = Mux(swap_d[0], shadow.bias, bias_a)
        m.d.sync += bias_a.eq(bias)
        # Raw mode reuses the multiply path as x * 1 + 0 >> 0, so x needs no
        # separate 5-stage delay line to reach the output.
        with m.If(swap_d[0]):
            m.d.sync += mult_a.eq(Mux(mode_d[0].raw, 1, shadow.mult))
        with m.If(swap_d[1]):
            m.d.sync += offset_a.eq(Mux(mode_d[1].raw, 0, shadow.offset))
        with m.If(swap_d[3]):
            # Shifts of 64..255 are outside the contract (the compiler stops at 62).
            m.d.sync += shift_a.eq(Mux(mode_d[3].raw, 0, shadow.shift[:6]))

        # t+1
        x = reg(signed(33), "x")
        m.d.sync += x.eq(self.acc.payload.acc[c] + bias)

        # t+2: four DSP-sized partial products.
        xl, xh = x[:_SPLIT], x[_SPLIT:].as_signed()
        ml, mh = mult_a[:_SPLIT], mult_a[_SPLIT:]
        pp_ll = reg(unsigned(2 * _SPLIT), "pp_ll")
        pp_lh = reg(unsigned(_SPLIT + 14), "pp_lh")
        pp_hl = reg(signed(16 + _SPLIT), "pp_hl")
        pp_hh = reg(signed(16 + 14), "pp_hh")
        m.d.sync += [
            pp_ll.eq(xl * ml),
            pp_lh.eq(xl * mh),
            pp_hl.eq(xh * ml),
            pp_hh.eq(xh * mh),
        ]

        # t+3: pp_ll < 2**34, so pp_ll + (pp_hh << 34) is a concatenation.
        t1 = reg(signed(64), "t1")
        t2 = reg(signed(2 * _SPLIT + 1), "t2")
        m.d.sync += [
            t1.eq((Cat(pp_ll, pp_hh).as_signed() + offset_a)[:64]),
            t2.eq(pp_lh + pp_hl),
        ]

        # t+4: the product and offset modulo 2**64, as NumPy's int64 wraps.
        v = reg(signed(64), "v")
        m.d.sync += v.eq((t1 + (t2 << _SPLIT))[:64])

        # t+5: shifting {v, 0} right by s leaves q = v >> s above the bit shifted
        # out last (v[s-1], the guard; 0 when s = 0, so shift 0 never rounds).
        shifted = (Cat(Const(0, 1), v).as_signed() >> shift_a)
        q = shifted[1:65].as_signed()
        sticky_mask = Cat(*(shift_a > i + 1 for i in range(63)))
        q32 = reg(signed(32), "q32")
        guard = reg(1, "guard")
        sticky = reg(1, "sticky")
        q_hi = reg(1, "q_hi")        # q >= 2**10: above any hi
        q_lo = reg(1, "q_lo")        # q < -2**10: below any lo
        top = q[_OUT_BITS - 1:64]
        m.d.sync += [
            q32.eq(q[:32]),
            guard.eq(shifted[0]),
            sticky.eq((v[:63] & sticky_mask).any()),
            q_hi.eq(~q[63] & top.any()),
            q_lo.eq(q[63] & ~top.all()),
        ]

        # t+6: round half to even, then clamp, on 11 bits.
        up = guard & (sticky | q32[0])
        qs = Mux(q_hi, (1 << (_OUT_BITS - 1)) - 1,
                 Mux(q_lo, -(1 << (_OUT_BITS - 1)), q32[:_OUT_BITS].as_signed()))
        r = Signal(signed(_OUT_BITS + 1), name=f"rounded_{c}")
        lo_cl = Signal(signed(_OUT_BITS + 1), name=f"above_lo_{c}")
        y = Signal(signed(_OUT_BITS + 1), name=f"clamped_{c}")
        m.d.comb += [
            r.eq(qs + up),
            lo_cl.eq(Mux(r < mode.lo, mode.lo, r)),
            y.eq(Mux(lo_cl > mode.hi, mode.hi, lo_cl)),
        ]
        out = reg(signed(32), "out")
        m.d.sync += out.eq(Mux(mode.raw, q32, Mux(mode.bipolar, (y << 1) - 1, y)))
        m.d.comb += self.out.payload.data[c].eq(out)
