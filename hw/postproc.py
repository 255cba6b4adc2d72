"""Post-processing of accumulator lanes: bias, requantize, round half to even, clamp.

Per lane ``c`` of a pixel of ``cols`` int32 accumulators, exactly as
``sim.machine.requantize`` (``sim.reference.round_half_even_shift``)::

    x = acc + bias                                  (33 bits, exact)
    v = (x * mult + offset) mod 2**64               (int64, as NumPy computes it)
    y = clamp(round_half_even(v / 2**shift), lo, hi)   (2*y - 1 if bipolar)

or, in raw mode, ``y = x mod 2**32`` (the int32 ``acc + bias`` of an ``out_raw``
layer). ``docs/datapath.md`` is the full protocol; :data:`POST_LATENCY` the depth.

Pipeline (cycle t: the accumulators are on ``acc``; each line is one register stage,
valid in the cycle named)::

    t+1   x    = acc + bias                     fabric adder, 33 bits
    t+2   x and mult in the operand registers   of 4 MULT18X18D (``hw.dsp``)
    t+3   pp   = 4 partial products of x × mult  17×17, 17×14, 16×17, 16×14: the
                                                blocks' output registers
    t+4   pp copied into the fabric             the route out of the DSP row
    t+5   t1   = {pp_hh, pp_ll} + offset         64-bit add (pp_ll + pp_hh<<34 is a
          t2   = pp_lh + pp_hl                   concatenation, not an add)
    t+6   v    = t1 + (t2 << 17)                 64-bit add
    t+7   w    = ({v, 0} >>> 8·s[5:3])[:19]      8:1 muxes (s = shift); partial ORs of 8
          partial ORs of saturation, sticky     terms each, under masks of s decoded
                                                into registers as the swap stages s
    t+8   qs   = (w >>> s[2:0]) saturated to    8:1 muxes (the guard, q's low bits), ORs
          11 bits, round                        of the partial ORs, then a mux
    t+9   r    = qs + round (or 2r - 1)          12-bit adds side by side, and the clamp's
                                                two compares r < lo, r > hi made as
                                                qs < lo - round, qs > hi - round
    t+10  out  = lo, hi, r or raw                muxes only

Every stage is at most one carry chain or a few LUTs deep, and the multiplies use the
DSP blocks' own registers, so the block runs at the clock of the array's PEs (125 MHz
is the target on an LFE5U-85F). With ``compact`` t+7 is still one shifter and its ORs
(a slow clock has the time).

Parameters are per lane and double-buffered like the array's weights: ``param``
writes a *shadow* record, and ``swap`` (with the first pixel that needs the new
values, or in a gap before it) activates it. The activation travels with the
pixel, one field per stage, so pixels already in flight finish with the old
values; ``lo``, ``hi``, ``raw`` and ``bipolar`` are sampled at the swap as well.
Without ``compact`` a write lands an edge after it is accepted, from a register of the
payload, so that the records load on flip-flops rather than on the swap's logic; the
computation sees it in the same cycle as before (the swap's bias read bypasses it).

For small FPGAs at slow clocks (the iCEBreaker): ``compact`` adds the blocks' products
straight into t1 and t2 (no t+4 copy; the later stages come a cycle earlier and a last
register keeps :data:`POST_LATENCY`); ``static_mode`` reads the mode where it is (its
caller holds it still); ``held_params`` keeps no shadow registers (its caller holds the
records).
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .dsp import Multiplier
from .fanout import KEEP_PREFIX, copies
from .isa import PARAM

__all__ = ["PostProcessor", "POST_LATENCY", "PARAM_BLACKOUT", "mode_layout",
           "param_load_layout", "post_in_layout", "post_out_layout"]

POST_LATENCY = 10     # cycles from a pixel on `acc` to its result on `out`
PARAM_BLACKOUT = 3    # cycles T .. T+2 after a swap in T refuse parameter loads

# The swap wavefront: stage k (valid in t + k) computes in cycle t + k - 1, so a field
# it uses is copied at the edge ending T + k - 2, right after the last old pixel used
# it. A field needed later than T + PARAM_BLACKOUT is copied from the shadow at that
# edge (the first shadow write it accepts lands on the same edge, after the read, or an
# edge later without compact) and then staged one edge per cycle.
_COPY_BIAS = 0        # stage 1: comb in the swap cycle itself, registered at T
_COPY_MULT = 1        # stage 2: the DSP B registers
_COPY_OFFSET = 3      # stage 5
_COPY_SHIFT = 5       # stage 7, staged from T + 3
_COPY_FINE = 6        # stage 8: the shift's fine step (without compact)
_COPY_COMPARE = 7     # stage 9: lo, hi, bipolar (the compares and the rounding add)
_COPY_MODE = 8        # stage 10: lo, hi (their bipolar images), raw

# A 17-bit unsigned low half fits the 18-bit signed operand of an ECP5 MULT18X18D.
_SPLIT = 17
_OUT_BITS = 11        # lo/hi are signed(10); q saturated to 11 bits still clamps right
_PARTIAL = 8          # terms per partial OR in stage t+7: two LUT levels, as are stage t+8's


def mode_layout():
    """Descriptor-wide settings, sampled at ``swap``."""
    return data.StructLayout({
        "lo":      signed(10),
        "hi":      signed(10),
        "raw":     unsigned(1),    # out_raw: x mod 2**32, no requantization
        "bipolar": unsigned(1),    # map the clamped {0, 1} to {-1, +1}
    })


def param_load_layout(cols):
    """One shadow-parameter write: the lane and its PARAM record; `no_bias` takes its
    bias as 0 (the accelerator's max pools)."""
    return data.StructLayout({
        "lane":    unsigned(max(1, ceil_log2(cols))),
        "param":   PARAM,
        "no_bias": unsigned(1),
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
        ``lo``, ``hi``, ``raw``, ``bipolar`` of the next swap. With ``static_mode``
        it must hold still for the 8 cycles after a swap: each stage takes its copy
        from it directly instead of from a delayed copy of the swap cycle's.
    param : In(stream(param_load_layout))
        Writes the shadow record of ``lane`` (its bias 0 with ``no_bias``: each
        lane's register of it takes 0, rather than a choice in front of them all, a
        LUT between two routes from the PARAM memory's output). ``ready`` is low in the
        :data:`PARAM_BLACKOUT` cycles T..T+2 after a swap in T (the swap copies the
        shadow field by field over those cycles) and high otherwise.
        Without ``held_params`` only.
    shadow : In(ArrayLayout(PARAM, cols)), with ``held_params``
        The shadow records themselves, held by the caller (the accelerator's PARAM
        memory port): they must hold still from before a swap in T through T+3.
    (parameter ``sparse_raw``)
        With ``compact``: pixels in raw mode come at least 4 cycles apart (the
        accelerator's one-pixel tiles: raw outputs of one-pixel layers, max pools of
        2x2 or more), so the output stage reads a raw result from ``v``, which then
        changes only with a pixel, instead of from three more 32-bit registers.
    param_done : Out(1), with ``held_params``
        High in T+3 after a swap in T: the swap's last copy from ``shadow`` is taken
        at the end of this cycle, so the next records may arrive in T+4.
    out : Out(stream(post_out_layout), always_ready)
        The results of the pixel that entered :data:`POST_LATENCY` cycles earlier:
        int32 lanes (requantized values are sign-extended; the writer keeps 8 bits).
    out_next : Out(1)
        ``out.valid`` of the next cycle (for registers beside the output's readers).
    """

    def __init__(self, cols, acc_width=32, *, tag_width=0, compact=False, static_mode=False,
                 held_params=False, sparse_raw=False):
        _check_int("PostProcessor cols", cols, 1, 64, "use the array's column count")
        _check_int("PostProcessor acc_width", acc_width, 2, 32,
                   "the PARAM bias is int32 and the raw output int32")
        _check_int("PostProcessor tag_width", tag_width, 0, 64, "tags carry a pixel address")
        self.cols = cols
        self.acc_width = acc_width
        self.tag_width = tag_width
        self.compact = bool(compact)
        self.static_mode = bool(static_mode)
        self.held_params = bool(held_params)
        self.sparse_raw = bool(sparse_raw)
        if self.sparse_raw and not self.compact:
            raise ValueError("PostProcessor sparse_raw needs compact (its output stage reads "
                             "v five stages after it is set, not six)")
        params = ({"shadow": In(data.ArrayLayout(PARAM, cols)), "param_done": Out(1)}
                  if self.held_params else
                  {"param": In(stream.Signature(param_load_layout(cols)))})
        super().__init__({
            "acc":   In(stream.Signature(post_in_layout(cols, acc_width, tag_width),
                                         always_ready=True)),
            "swap":  In(1),
            "mode":  In(mode_layout()),
            **params,
            "out":   Out(stream.Signature(post_out_layout(cols, tag_width),
                                          always_ready=True)),
            "out_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        C = self.cols

        # The swap wavefront: swap_d[k] is high k cycles after the swap. A field
        # used by the computation at the edge ending cycle T + k is copied from the
        # shadow at the edge ending T + k - 1, right after the previous pixel used it.
        swap_d = [self.swap]
        for k in range(1, _COPY_MODE + 1):
            s = Signal(name=f"swap_d{k}")
            m.d.sync += s.eq(swap_d[-1])
            swap_d.append(s)
        # Mode travels with the wavefront so back-to-back swaps may change it; with
        # static_mode the caller holds it still while pixels are in flight (the
        # accelerator's mode is its descriptor's), so every stage reads it as it is.
        mode_d = [self.mode]
        for k in range(1, _COPY_MODE + 1):
            if self.static_mode:
                mode_d.append(self.mode)
                continue
            md = Signal(mode_layout(), name=f"mode_d{k}", reset_less=True)
            m.d.sync += md.eq(mode_d[-1])
            mode_d.append(md)

        if self.held_params:
            shadow = [self.shadow[c] for c in range(C)]
            m.d.comb += self.param_done.eq(swap_d[PARAM_BLACKOUT])
        elif self.compact:
            m.d.comb += self.param.ready.eq(~(swap_d[0] | swap_d[1] | swap_d[2]))

            shadow = [Signal(PARAM, name=f"shadow_{c}", reset_less=True) for c in range(C)]
            with m.If(self.param.valid & self.param.ready):
                with m.Switch(self.param.payload.lane):
                    for c in range(C):
                        with m.Case(c):
                            m.d.sync += shadow[c].eq(self.param.payload.param)
                            with m.If(self.param.payload.no_bias):
                                m.d.sync += shadow[c].bias.eq(0)
        else:
            shadow = self._late_shadow(m, platform, swap_d)

        valid = [self.acc.valid]
        tags = [self.acc.payload.tag]
        for k in range(1, POST_LATENCY + 1):
            v = Signal(name=f"valid_{k}")
            t = Signal(self.tag_width, name=f"tag_{k}", reset_less=True)
            m.d.sync += [v.eq(valid[-1]), t.eq(tags[-1])]
            valid.append(v)
            tags.append(t)

        for c in range(C):
            self._lane(m, platform, c, shadow[c], swap_d, mode_d, valid)

        m.d.comb += [
            self.out.valid.eq(valid[POST_LATENCY]),
            self.out_next.eq(valid[POST_LATENCY - 1]),
            self.out.payload.tag.eq(tags[POST_LATENCY]),
        ]
        return m

    def _late_shadow(self, m, platform, swap_d):
        """The shadow records without ``compact``: a write accepted in cycle a lands at the
        edge ending a + 1, from a register of the payload, so that the ~125 flip-flops of a
        lane's record load on enables that are flip-flops (copies, a few dozen loads
        each), not on the swap's logic. A swap in T copies mult at the edge ending T + 1
        and offset and shift at T + 3, which see the writes accepted before T either way
        and those of T + 3 neither way; its bias it reads in T itself, so while the
        write of T - 1 is on the way the bias comes from the payload register (what this
        returns as a record's bias)."""
        # swap_d1 | swap_d2 in one register: ready is one LUT from flip-flops
        blocked = Signal(name="param_blocked")
        m.d.sync += blocked.eq(swap_d[0] | swap_d[1])
        m.d.comb += self.param.ready.eq(~(swap_d[0] | blocked))
        accept = self.param.valid & self.param.ready
        payload = Signal(PARAM, name="param_q", reset_less=True)
        m.d.sync += payload.eq(self.param.payload.param)

        shadow = []
        for c in range(self.cols):
            # one enable for the bias, its bypass, mult, offset and shift each
            we = copies(m, platform, accept & (self.param.payload.lane == c), 5,
                        f"shadow_we_{c}", reset_less=True)
            # each lane's own register of the payload's bias: the bypass feeds the
            # lane's bias add, and one register for every lane was a route across them
            bias_q = Signal(signed(32), name=f"{KEEP_PREFIX}param_bias_{c}",
                            reset_less=True)
            m.d.sync += bias_q.eq(Mux(self.param.payload.no_bias, 0,
                                      self.param.payload.param.bias[:32]))
            # shifts of 64..255 are outside the contract
            rec = {name: Signal(shape, name=f"shadow_{name}_{c}", reset_less=True)
                   for name, shape in (("bias", signed(32)), ("mult", unsigned(31)),
                                       ("offset", signed(56)), ("shift", unsigned(6)))}
            for (name, field), en in zip(rec.items(), (we[0], we[2], we[3], we[4])):
                with m.If(en):
                    m.d.sync += field.eq(bias_q if name == "bias"
                                         else payload[name][:len(field)])
            # the bias as two values and the choice between them, so that the lane's
            # adds take each straight from a register (`_lane`)
            shadow.append(SimpleNamespace(**rec, bias_new=bias_q, bias_bypass=we[1]))
        return shadow

    def _lane(self, m, platform, c, shadow, swap_d, mode_d, valid):
        def reg(shape, name):
            return Signal(shape, name=f"{name}_{c}", reset_less=True)

        # compact has no copy stage between the blocks and the adds (t+4): the stages
        # from t+5 on come a cycle earlier, and a last register makes up the latency
        skip = 1 if self.compact else 0
        bias_a = reg(signed(32), "bias")
        offset_a = reg(signed(56), "offset")
        shift_d = [reg(unsigned(6), f"shift_s{k}")
                   for k in range(PARAM_BLACKOUT, _COPY_SHIFT - skip + 1)]
        shift_a = shift_d[-1]

        # Edge T: x uses the new bias in the swap cycle itself, hence the mux. A
        # `_late_shadow` record's bias is the write on its way (`bias_new`, while
        # `bias_bypass`) or the stored one.
        late = not self.compact and not self.held_params
        record_bias = (Mux(shadow.bias_bypass, shadow.bias_new, shadow.bias) if late
                       else shadow.bias)
        bias = Mux(swap_d[_COPY_BIAS], record_bias, bias_a)
        m.d.sync += bias_a.eq(bias)
        # Raw mode reuses the multiply path as x * 1 + 0 >> 0, so x needs no
        # separate delay line to reach the output.
        mult = Mux(mode_d[_COPY_MULT].raw, 1, shadow.mult)
        with m.If(swap_d[_COPY_OFFSET - skip]):
            m.d.sync += offset_a.eq(Mux(mode_d[_COPY_OFFSET - skip].raw, 0, shadow.offset))
        # Shifts of 64..255 are outside the contract (the compiler stops at 62).
        with m.If(swap_d[PARAM_BLACKOUT]):
            m.d.sync += shift_d[0].eq(Mux(mode_d[PARAM_BLACKOUT].raw, 0, shadow.shift[:6]))
        for k in range(1, len(shift_d)):
            with m.If(swap_d[PARAM_BLACKOUT + k]):
                m.d.sync += shift_d[k].eq(shift_d[k - 1])

        # t+1: both sums side by side and the swap picks one, so the swap (a late,
        # widely fanned-out signal) drives a mux in front of the register, not an adder.
        x = reg(signed(33), "x")
        acc = self.acc.payload.acc[c]
        if self.compact:
            # one adder after the mux bias_a's own input needs anyway (a slow clock)
            m.d.sync += x.eq(acc + bias)
        else:
            # one add for each bias the swap may pick (the bypass's choice in front of
            # an add was a LUT and a route more on the 8x8's slowest paths)
            swapped = (Mux(shadow.bias_bypass, acc + shadow.bias_new, acc + shadow.bias)
                       if late else acc + shadow.bias)
            m.d.sync += x.eq(Mux(swap_d[_COPY_BIAS], swapped, acc + bias_a))

        if self.compact:
            t1, t2, split = self._compact_products(m, c, reg, x, mult, offset_a, shadow,
                                                   swap_d, mode_d)
        else:
            t1, t2, split = self._products(m, c, reg, x, mult, offset_a, swap_d)

        # t+6: the product and offset modulo 2**64, as NumPy's int64 wraps.
        v = reg(signed(64), "v")
        v_next = (t1 + (t2 << split))[:64]
        if self.sparse_raw:
            # v changes only with a pixel, so a raw result (v itself) is still there
            # when the output stage reads it
            with m.If(valid[4]):
                m.d.sync += v.eq(v_next)
        else:
            m.d.sync += v.eq(v_next)

        # t+7, t+8: q = v >> s (arithmetic), the guard bit below it, the sticky OR of
        # the bits below the guard; qs = q saturated to 11 bits, and the rounding.
        qs = reg(signed(_OUT_BITS), "qs")
        up = reg(1, "up")
        q32_8 = reg(signed(32), "q32_8")
        if self.compact:
            self._compact_shift(m, c, reg, v, shift_a, qs, up, q32_8)
            qs_cmp, up_cmp = qs, up
        else:
            # the compares' own copies of qs and the rounding, next to their carry chains
            # (one register also feeding the adds was a 2.7 ns route into them)
            qs_cmp = Signal(signed(_OUT_BITS), name=f"{KEEP_PREFIX}qs_cmp_{c}",
                            reset_less=True)
            up_cmp = Signal(name=f"{KEEP_PREFIX}up_cmp_{c}", reset_less=True)
            self._shift(m, platform, c, reg, v, v_next, shift_d, swap_d, (qs, qs_cmp),
                        (up, up_cmp), q32_8)

        # Each lane keeps its own copy of the mode, so the compares and the output
        # muxes read registers next to them, not one register routed to every lane.
        # Stage 9's copy: lo and hi for the compares, lo - 1 and hi - 1 for when
        # rounding adds one, and lo > hi (then min(max(r, lo), hi) is hi). The compare
        # operands are `_key`s (unsigned order), a single carry chain each.
        cmp_mode = reg(data.StructLayout({
            "lo": unsigned(_OUT_BITS), "hi": unsigned(_OUT_BITS),
            "lo_1": unsigned(_OUT_BITS), "hi_1": unsigned(_OUT_BITS),
            "lo_above_hi": 1, "bipolar": 1}), "cmp_mode")
        with m.If(swap_d[_COPY_COMPARE - skip]):
            new = mode_d[_COPY_COMPARE - skip]
            m.d.sync += [cmp_mode.lo.eq(_key(new.lo)), cmp_mode.hi.eq(_key(new.hi)),
                         cmp_mode.lo_1.eq(_key(new.lo - 1)),
                         cmp_mode.hi_1.eq(_key(new.hi - 1)),
                         cmp_mode.lo_above_hi.eq(new.lo > new.hi),
                         cmp_mode.bipolar.eq(new.bipolar)]
        if self.static_mode:
            # the fields that are copies, read where they are
            cmp_mode = SimpleNamespace(lo=_key(self.mode.lo), hi=_key(self.mode.hi),
                                       lo_1=cmp_mode.lo_1, hi_1=cmp_mode.hi_1,
                                       lo_above_hi=cmp_mode.lo_above_hi,
                                       bipolar=self.mode.bipolar)
        # Stage 10's copy: the values a clamped lane takes (2lo - 1, 2hi - 1 if bipolar).
        out_mode = reg(data.StructLayout({"lo": signed(12), "hi": signed(12), "raw": 1}),
                       "out_mode")
        with m.If(swap_d[_COPY_MODE - skip]):
            new = mode_d[_COPY_MODE - skip]
            m.d.sync += [
                out_mode.lo.eq(Mux(new.bipolar, (new.lo << 1) - 1, new.lo)),
                out_mode.hi.eq(Mux(new.bipolar, (new.hi << 1) - 1, new.hi)),
                out_mode.raw.eq(new.raw),
            ]
        out_raw = self.mode.raw if self.static_mode else out_mode.raw

        # t+9: rounded (or its bipolar image 2r - 1 = 2qs + (round ? 1 : -1)), and
        # clamp(r) = min(max(r, lo), hi) decided from compares of qs made beside the
        # add: r < lo is qs < lo - round, r > hi is qs > hi - round.
        r = reg(signed(_OUT_BITS + 2), "rounded")
        to_lo = reg(1, "to_lo")
        to_hi = reg(1, "to_hi")
        q32_9 = reg(signed(32), "q32_9")
        key = _key(qs_cmp)
        below = Mux(up_cmp, _less(key, cmp_mode.lo_1), _less(key, cmp_mode.lo))
        above = Mux(up_cmp, _less(cmp_mode.hi_1, key), _less(cmp_mode.hi, key))
        hi_wins = Mux(below, cmp_mode.lo_above_hi, above)
        m.d.sync += [
            r.eq(Mux(cmp_mode.bipolar, (qs << 1) + Mux(up, 1, -1), qs + up)),
            to_lo.eq(below & ~hi_wins),
            to_hi.eq(hi_wins),
            q32_9.eq(q32_8),
        ]

        # t+10: muxes only.
        out = reg(signed(32), "out")
        raw_value = v[:32].as_signed() if self.sparse_raw else q32_9
        if self.compact:
            # the clamp's compares on r itself, against the values a clamped lane takes
            # (2lo - 1 < r exactly when lo < qs + round, and so on): a slow clock has the
            # time, and lo - 1, hi - 1 and the stage-9 flags need no registers
            r_lo = r < out_mode.lo
            hi_wins = Mux(r_lo, out_mode.lo > out_mode.hi, r > out_mode.hi)
            to_lo, to_hi = r_lo & ~hi_wins, hi_wins
        m.d.sync += out.eq(Mux(out_raw, raw_value,
                               Mux(to_lo, out_mode.lo, Mux(to_hi, out_mode.hi, r))))
        if skip:
            out_late = reg(signed(32), "out_late")
            m.d.sync += out_late.eq(out)
            out = out_late
        m.d.comb += self.out.payload.data[c].eq(out)

    def _products(self, m, c, reg, x, mult, offset_a, swap_d):
        """Stages t+2 .. t+5: x * mult in four DSP-sized partial products, summed to
        t1 + (t2 << split)."""
        # t+2, t+3: four DSP-sized partial products.
        products = _partial_products(m, c, x[:_SPLIT], x[_SPLIT:].as_signed(),
                                     mult[:_SPLIT], mult[_SPLIT:31], swap_d)
        # t+4: out of the DSP row into the fabric before the wide adds.
        parts = {}
        for name, p in products.items():
            parts[name] = reg(p.shape(), f"pp_{name}")
            m.d.sync += parts[name].eq(p)
        # t+5: pp_ll < 2**34, so pp_ll + (pp_hh << 34) is a concatenation.
        return (*_sum_parts(m, reg, parts, offset_a, signed(2 * _SPLIT + 1)), _SPLIT)

    def _compact_products(self, m, c, reg, x, mult, offset_a, shadow, swap_d, mode_d):
        """Stages t+2 .. t+5 with ``compact``: four unsigned 16x16 products, each one
        SB_MAC16 (a 17-bit operand takes a block and LUTs besides). With
        x = xl + xh * 2**16 - x[32] * 2**32, the sign's term -x[32] * mult * 2**32 is
        taken off the high product as it leaves the block (t+4), from a fabric copy of
        mult that changes one edge after the blocks' B registers."""
        split = 16
        products = _partial_products(m, c, x[:split], x[split:32], mult[:split],
                                     mult[split:31], swap_d)
        # x[32] rides beside the operands (t+2) and the products (t+3).
        sign2 = reg(1, "sign2")
        sign3 = reg(1, "sign3")
        mult_f = reg(unsigned(31), "mult_f")
        m.d.sync += [sign2.eq(x[32]), sign3.eq(sign2)]
        with m.If(swap_d[_COPY_MULT + 1]):
            m.d.sync += mult_f.eq(Mux(mode_d[_COPY_MULT + 1].raw, 1, shadow.mult))
        # The blocks' outputs straight into the adds (a slow clock has the time; the
        # flip-flops of a copy stage are most of an iCE40's cells here), the sign's term
        # off the high product on the way: t1, t2 valid in t+4.
        parts = {name: products[name] for name in ("ll", "lh", "hl")}
        parts["hh"] = Signal(signed(2 * split + 1), name=f"pp_hh_{c}")
        m.d.comb += parts["hh"].eq(products["hh"] - Mux(sign3, mult_f, 0))
        # pp_ll < 2**32, so pp_ll + (pp_hh << 32) is a concatenation.
        return (*_sum_parts(m, reg, parts, offset_a, unsigned(2 * split + 1)), split)

    def _shift(self, m, platform, c, reg, v, v_next, shift_d, swap_d, qs, up, q32_8):
        """Stages t+7 and t+8 without ``compact``: the shift in a coarse step (by 8s) and
        a fine one, and the saturation and sticky ORs split between them, each stage
        about two LUTs deep (one wide shifter and a 54- or 63-input OR were four).

        In {v, 0} >> s the guard is bit s and q bits s + 1 up; q leaves 11 bits exactly
        when some v[i], i >= s + 10, differs from the sign, and the sticky bit is set
        exactly when some v[i], i < s - 1, is. The shift is known cycles before the
        pixel (staged down ``shift_d``), so those masks are decoded into registers
        loaded beside stage 7's copy of it. `qs` and `up` are each a tuple of registers
        that take the same value (copies for their readers)."""
        shift_a = shift_d[-1]
        sat_bits = range(_OUT_BITS - 1, 63)      # v[63] is the sign
        sticky_bits = range(62)                  # below the guard: i <= s - 2 <= 61
        # The masks load the value shift_a loads at the same edge, decoded; on copies
        # of its enable, as they are 115 flip-flops a lane. (reset_less: a load in an
        # abort only decodes the shift again, and the next swap loads it anew; with the
        # clear, its route to every lane's copies was a slow path at 125 MHz)
        load = copies(m, platform, swap_d[_COPY_SHIFT - 1], 2, f"shift_load_{c}",
                      reset_less=True)
        sat_mask = reg(len(sat_bits), "sat_mask")
        sticky_mask = reg(len(sticky_bits), "sticky_mask")
        with m.If(load[0]):
            m.d.sync += sat_mask.eq(Cat(shift_d[-2] <= i - (_OUT_BITS - 1) for i in sat_bits))
        with m.If(load[1]):
            m.d.sync += sticky_mask.eq(Cat(shift_d[-2] > i + 1 for i in sticky_bits))
        # stage 8's copy of the fine step, a cycle after stage 7's
        fine = reg(3, "shift_fine")
        with m.If(swap_d[_COPY_FINE]):
            m.d.sync += fine.eq(shift_a[:3])

        # t+7: the 19 bits of {v, 0} >> 8 * s[3:] the fine step can reach (8:1 muxes),
        # and the two ORs as partial ORs of _PARTIAL terms; v's sign reaches the many
        # LUTs of the saturation's terms through copies, one for each partial OR.
        def partial_ors(terms):
            return Cat(Cat(terms[k:k + _PARTIAL]).any() for k in range(0, len(terms), _PARTIAL))

        sign = copies(m, platform, v_next[63], -(-len(sat_bits) // _PARTIAL) + 1,
                      f"v_sign_{c}", reset_less=True)
        coarse = reg(_OUT_BITS + 8, "coarse")
        # {v, 0}, sign-extended as far as the largest coarse step reads
        wide = Cat(Const(0, 1), v, sign[-1].replicate(56 + len(coarse) - 65))
        sat_parts = reg(len(sign) - 1, "sat_parts")
        sticky_parts = reg(-(-len(sticky_bits) // _PARTIAL), "sticky_parts")
        sign_7 = reg(1, "sign_7")
        q32_7 = reg(signed(32), "q32_7")
        m.d.sync += [
            coarse.eq(Array(wide[8 * h:8 * h + len(coarse)] for h in range(8))[shift_a[3:]]),
            sat_parts.eq(partial_ors([(v[i] ^ sign[k // _PARTIAL]) & sat_mask[k]
                                      for k, i in enumerate(sat_bits)])),
            sticky_parts.eq(partial_ors([v[i] & sticky_mask[i] for i in sticky_bits])),
            sign_7.eq(sign[-1]),
            # raw layers have shift 0, so their q[:32] is v[:32]
            q32_7.eq(v[:32]),
        ]

        # t+8: the fine step (8:1 muxes) gives the guard and q's low 11 bits; q saturated
        # to 11 bits (|q| >= 2**10 lies outside any lo/hi) and the round-half-to-even
        # increment, each after an OR of the partial ORs beside the muxes.
        window = coarse.bit_select(fine, _OUT_BITS + 1)
        q_low = window[1:]
        m.d.sync += [
            q.eq(Mux(sat_parts.any(), Mux(sign_7, -(1 << (_OUT_BITS - 1)),
                                          (1 << (_OUT_BITS - 1)) - 1),
                     q_low.as_signed()))
            for q in qs
        ]
        m.d.sync += [u.eq(window[0] & (sticky_parts.any() | q_low[0])) for u in up]
        m.d.sync += q32_8.eq(q32_7)

    def _compact_shift(self, m, c, reg, v, shift_a, qs, up, q32_8):
        """Stages t+7 and t+8 with ``compact``: of q = v >> s only what stage 9 uses.

        The low 11 bits and the guard come from a shifter that drops, stage by stage,
        the bits no later stage can reach into the window. What a stage drops at the top
        ends up in q above the window, so the saturation test is whether any of them
        differs from the sign; what a taken step shifts out at the bottom ends up below
        the guard, so the sticky bit is whether any of them is set."""
        # An arithmetic right shift of {v, 0} by s, largest steps first.
        win = list(Cat(Const(0, 1), v))
        sign = v[63]
        below, above = [], []
        for step in reversed(range(6)):
            amount = 1 << step
            keep = _OUT_BITS + 1 + amount - 1
            below.append(shift_a[step] & Cat(*win[:amount]).any())
            shifted = [Mux(shift_a[step], win[i + amount] if i + amount < len(win) else sign,
                           win[i])
                       for i in range(len(win))]
            above += [bit ^ sign for bit in shifted[keep:]]
            win = shifted[:keep]
        window = reg(unsigned(_OUT_BITS + 1), "window")
        sticky = reg(1, "sticky")
        beyond = reg(1, "beyond")      # q[11:] differs from the sign somewhere
        v_sign = reg(1, "v_sign")
        m.d.sync += [
            window.eq(Cat(*win)),
            sticky.eq(Cat(*below).any()),
            beyond.eq(Cat(*above).any()),
            v_sign.eq(sign),
        ]
        q32_7 = reg(signed(32), "q32_7")
        # Raw layers have shift 0, so their q[:32] is v[:32].
        m.d.sync += q32_7.eq(v[:32])

        # t+8: saturation (q[10:] not all the sign: q outside [-2**10, 2**10)) and the
        # round-half-to-even increment, as without compact.
        q_low = window[1:]
        saturate = beyond | (q_low[-1] ^ v_sign)
        m.d.sync += [
            qs.eq(Mux(saturate & ~v_sign, (1 << (_OUT_BITS - 1)) - 1,
                      Mux(saturate & v_sign, -(1 << (_OUT_BITS - 1)), q_low.as_signed()))),
            up.eq(window[0] & (sticky | q_low[0])),
            q32_8.eq(q32_7),
        ]


def _key(x):
    """A signed value of up to `_OUT_BITS` bits as an unsigned `_OUT_BITS`-bit integer in
    the same order (the sign bit inverted): an unsigned compare is one carry chain, where
    a signed one took its top bits through a second piece of chain."""
    x = Value.cast(x)
    wide = Cat(x, *[x[-1]] * (_OUT_BITS - len(x)))[:_OUT_BITS]
    return Cat(wide[:-1], ~wide[-1])


def _less(a, b):
    """a < b for unsigned a, b: the borrow of a - b, which yosys maps to a carry chain
    alone (a compare this short became LUTs around a piece of chain)."""
    return (Cat(a, 0) - Cat(b, 0))[-1]


def _partial_products(m, c, xl, xh, ml, mh, swap_d) -> dict:
    """Stages t+2, t+3 of lane `c`: the four DSP-sized products xl·ml, xl·mh, xh·ml and
    xh·mh ("ll", "lh", "hl", "hh"); the mult operands are the blocks' B registers, loaded
    by the swap wavefront."""
    products = {}
    for name, a, b in (("ll", xl, ml), ("lh", xl, mh), ("hl", xh, ml), ("hh", xh, mh)):
        mul = Multiplier(a.shape(), b.shape())
        m.submodules[f"mult_{name}_{c}"] = mul
        m.d.comb += [mul.a.eq(a), mul.b.eq(b), mul.b_en.eq(swap_d[_COPY_MULT])]
        products[name] = mul.p
    return products


def _sum_parts(m, reg, parts, offset_a, t2_shape):
    """Stage t+5: t1 = (pp_hh ‖ pp_ll) + offset (pp_ll fills its bits, so the shift is a
    concatenation) and t2 = pp_lh + pp_hl."""
    t1 = reg(signed(64), "t1")
    t2 = reg(t2_shape, "t2")
    m.d.sync += [
        t1.eq((Cat(parts["ll"], parts["hh"]).as_signed() + offset_a)[:64]),
        t2.eq(parts["lh"] + parts["hl"]),
    ]
    return t1, t2
