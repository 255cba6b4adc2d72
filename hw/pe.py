"""One processing element of the weight-stationary systolic array.

A PE holds two weights: the *active* one it multiplies with, and a *shadow* one
that the weight loader writes while the array computes. A ``swap`` flag travels
with the activation wavefront; when it reaches the PE, the shadow weight is
copied into the active register in the same edge that latches the activation, so
the pixel carrying the flag is the first one multiplied by the new weight. The
copy reads the shadow before that edge's ``load``, so the array may write the
next weight in the same cycle (tiles swapped every cycle).

Pipeline (one PE, cycles relative to the activation arriving on ``west``):

- edge 0: the activation and, on swap, the shadow weight latch into the
  multiplier's operand registers (the A/B registers of an ECP5 MULT18X18D, the B
  register enabled by ``swap`` so it *is* the active weight); ``act`` latches too;
- edge 1: ``act * active`` latches — the multiplier's output register;
- edge 2: that product is copied into a fabric register beside the adder (the route
  out of the DSP row has a cycle of its own, not shared with the 32-bit add);
- edge 3: ``psum_out = psum_in + product`` latches.

``east`` is the ``act``/``swap`` register pair, so neighbouring PEs form a
one-cycle-per-column shift chain, and ``psum_out`` is registered, so partial sums
move one row per cycle. ``act`` is a fabric copy of the A register: the block's own
shift outputs would tie neighbouring PEs to neighbouring DSP sites. See
``docs/array.md`` for the whole-array timing and :mod:`hw.dsp` for the multiplier.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dsp import Multiplier

__all__ = ["ProcessingElement", "activation_link", "weight_load", "check_widths"]


def _check_positive_int(what, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")


def check_widths(act_width, weight_width, acc_width):
    """Validate operand and accumulator widths; raise ``ValueError`` naming the bad one."""
    _check_positive_int("activation width", act_width)
    _check_positive_int("weight width", weight_width)
    _check_positive_int("accumulator width", acc_width)
    if acc_width < act_width + weight_width:
        raise ValueError(
            f"accumulator width {acc_width} cannot hold a {act_width}×{weight_width}-bit "
            f"product; use at least {act_width + weight_width}")


def activation_link(act_width):
    """Signature of the activation path between horizontally adjacent PEs.

    ``data`` is the signed activation; ``swap`` marks the pixel that is the first
    one to use the next weight tile.
    """
    return wiring.Signature({
        "data": Out(signed(act_width)),
        "swap": Out(1),
    })


def weight_load(weight_width):
    """Signature of a shadow-weight write port: ``data`` is written when ``en`` is high."""
    return wiring.Signature({
        "en":   Out(1),
        "data": Out(signed(weight_width)),
    })


class ProcessingElement(wiring.Component):
    """Signed multiply-accumulate cell with a double-buffered stationary weight.

    Parameters
    ----------
    act_width, weight_width : int
        Signed operand widths (8 for int8; narrower quantized values are
        sign-extended by whoever produces them, so they need no special case).
    acc_width : int
        Partial-sum width; sums wrap modulo ``2**acc_width`` (the compiler proves
        they do not overflow).

    Ports
    -----
    west : In(activation_link)
        Activation and swap flag from the left neighbour (or the row skew).
    east : Out(activation_link)
        The same, one cycle later, to the right neighbour.
    load : In(weight_load)
        Writes the shadow weight.
    psum_in : In(signed(acc_width))
        Partial sum from the PE above (0 for the top row).
    psum_out : Out(signed(acc_width))
        ``psum_in + act * active_weight``, three cycles after ``act`` latched.
    """

    def __init__(self, *, act_width=8, weight_width=8, acc_width=32):
        check_widths(act_width, weight_width, acc_width)
        self.act_width = act_width
        self.weight_width = weight_width
        self.acc_width = acc_width
        super().__init__({
            "west":     In(activation_link(act_width)),
            "east":     Out(activation_link(act_width)),
            "load":     In(weight_load(weight_width)),
            "psum_in":  In(signed(acc_width)),
            "psum_out": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()

        # Datapath registers need no reset: every value they hold is either
        # overwritten before it is observed or qualified by the array's valid
        # pipeline. Leaving them reset-less keeps the reset net small and lets
        # the multiplier registers be the DSP block's own.
        shadow  = Signal(signed(self.weight_width), reset_less=True)
        act     = Signal(signed(self.act_width), reset_less=True)
        psum    = Signal(signed(self.acc_width), reset_less=True)
        product = Signal(signed(self.act_width + self.weight_width), reset_less=True)
        # The swap flag is control: a stale flag after reset would activate a
        # half-loaded tile, so it does reset.
        swap    = Signal()

        # Operand A: the activation, every cycle; operand B: the active weight, loaded
        # from the shadow by the swap (it reads the shadow before this edge's load).
        # (on iCE40 a block although the product has only 17 bits: it is the array)
        m.submodules.mult = mult = Multiplier(signed(self.act_width),
                                              signed(self.weight_width), block=True)
        m.d.comb += [
            mult.a.eq(self.west.data),
            mult.b.eq(shadow),
            mult.b_en.eq(self.west.swap),
        ]
        with m.If(self.load.en):
            m.d.sync += shadow.eq(self.load.data)
        m.d.sync += [
            act.eq(self.west.data),
            swap.eq(self.west.swap),
            product.eq(mult.p),
            psum.eq(self.psum_in + product),
        ]
        m.d.comb += [
            self.east.data.eq(act),
            self.east.swap.eq(swap),
            self.psum_out.eq(psum),
        ]
        return m
