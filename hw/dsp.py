"""A multiplier with registered operands and a registered product: one DSP block.

``Multiplier`` computes ``p = a * b`` two clock edges after the operands are sampled:

- edge 0: ``a`` is latched when ``a_en`` is high, ``b`` when ``b_en`` is high (the
  operand registers; an operand whose enable is low keeps its old value);
- edge 1: the product of the two latched operands is latched into ``p``.

On an ECP5 platform it is one ``MULT18X18D`` with its A, B and output registers enabled
(``REG_INPUTA_CLK``, ``REG_INPUTB_CLK``, ``REG_OUTPUT_CLK`` = ``CLK0``). Yosys maps a
``$mul`` to the block with all its registers bypassed and does not absorb neighbouring
flip-flops, so a multiply between two fabric registers costs the route into the block,
its 3.9 ns combinational delay and the route out in one cycle (≈ 10 ns, 81–99 MHz for a
bare array). With the internal registers the multiply is a cycle of its own and each
route has a cycle to itself. Elsewhere (simulation, Verilog for Verilator/Icarus) it is
the same two register stages in plain Amaranth, so every simulation runs the behaviour
the FPGA gets.

Operands of up to 18 bits signed or 17 bits unsigned enter the block as signed 18-bit
values (``SIGNEDA = SIGNEDB = 1``); the registers have no reset. Wider operands get the
same two register stages around a plain ``*``, which yosys splits over several blocks
without their registers (correct, but not fast: keep hot multiplies DSP-sized).

On an iCE40 platform a product of at least :data:`ICE40_BLOCK_BITS` bits whose operands
fit 16 bits (signed or unsigned), or any such product made with ``block=True`` (the PE's
9x8), is one ``SB_MAC16`` in 16x16 mode with its A and B
registers (``AHOLD``/``BHOLD`` are the enables) and the product register after the
adder tree (``PIPELINE_16x16_MULT_REG2``); smaller products stay in the fabric, where
the build maps them to LUTs (``boards.build`` does not let yosys infer blocks: yosys
0.70's ``ice40_dsp`` absorbs this component's registers into a block and then removes
the block, leaving the product 0). The UP5K has 8 blocks: the iCEBreaker's 1x1 uses all 8.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Multiplier", "SerialMultiplier", "DSP_WIDTH", "MULT_LATENCY", "ICE40_BLOCK_BITS"]

DSP_WIDTH = 18        # signed operand bits of one MULT18X18D
MULT_LATENCY = 2      # operands sampled at edge 0, product on `p` after edge 1
ICE40_WIDTH = 16      # operand bits of one SB_MAC16 (signed or unsigned)
ICE40_BLOCK_BITS = 24  # the smallest product an iCE40 build puts in an SB_MAC16


def _operand_shape(what, shape):
    shape = Shape.cast(shape)
    if shape.width < 1:
        raise ValueError(f"multiplier operand {what} must have at least 1 bit, not "
                         f"{shape.width}")
    return shape


def _fits_dsp(shape):
    return shape.width <= (DSP_WIDTH if shape.signed else DSP_WIDTH - 1)


class Multiplier(wiring.Component):
    """``p = a * b`` with registered operands and product (:data:`MULT_LATENCY` = 2).

    Parameters
    ----------
    a_shape, b_shape : shape-castable
        Operand shapes; one DSP block takes up to 18 bits signed or 17 bits unsigned.
    block : bool
        On iCE40, a block even for a product under :data:`ICE40_BLOCK_BITS` bits.

    Ports
    -----
    a, b : In
        Operands, latched at the edge ending a cycle in which ``a_en`` / ``b_en`` is high.
    a_en, b_en : In(1), default high
        Clock enables of the operand registers (``b_en`` low holds a stationary weight).
    p : Out
        The product of the latched operands, one edge after they were latched: signed
        if either operand is signed, ``len(a) + len(b)`` bits (exact).
    """

    def __init__(self, a_shape, b_shape, *, block=False):
        a_shape = _operand_shape("a", a_shape)
        b_shape = _operand_shape("b", b_shape)
        width = a_shape.width + b_shape.width
        p_shape = signed(width) if a_shape.signed or b_shape.signed else unsigned(width)
        self.a_shape, self.b_shape, self.p_shape = a_shape, b_shape, p_shape
        self.block = bool(block)
        super().__init__({
            "a":    In(a_shape),
            "b":    In(b_shape),
            "a_en": In(1, init=1),
            "b_en": In(1, init=1),
            "p":    Out(p_shape),
        })

    def elaborate(self, platform):
        m = Module()
        if getattr(platform, "family", None) == "ecp5" and _fits_dsp(self.a_shape) \
                and _fits_dsp(self.b_shape):
            self._ecp5(m)
            return m
        if getattr(platform, "family", None) == "iCE40" and self._fits_ice40():
            self._ice40(m)
            return m
        a = Signal(self.a_shape, reset_less=True)
        b = Signal(self.b_shape, reset_less=True)
        p = Signal(self.p_shape, reset_less=True)
        with m.If(self.a_en):
            m.d.sync += a.eq(self.a)
        with m.If(self.b_en):
            m.d.sync += b.eq(self.b)
        m.d.sync += p.eq(a * b)
        m.d.comb += self.p.eq(p)
        return m

    def _fits_ice40(self):
        return (self.a_shape.width <= ICE40_WIDTH and self.b_shape.width <= ICE40_WIDTH
                and (self.block or self.p_shape.width >= ICE40_BLOCK_BITS))

    def _ice40(self, m):
        a = Signal(signed(ICE40_WIDTH) if self.a_shape.signed else unsigned(ICE40_WIDTH))
        b = Signal(signed(ICE40_WIDTH) if self.b_shape.signed else unsigned(ICE40_WIDTH))
        p = Signal(2 * ICE40_WIDTH)
        # Sign- or zero-extension to 16 bits, with A_SIGNED/B_SIGNED saying which: the
        # 32-bit product is exact either way.
        m.d.comb += [a.eq(self.a), b.eq(self.b), self.p.eq(p[:len(self.p)])]
        zero = Const(0, ICE40_WIDTH)
        m.submodules.mac = Instance(
            "SB_MAC16",
            p_A_REG=1, p_B_REG=1, p_C_REG=0, p_D_REG=0,
            p_TOP_8x8_MULT_REG=0, p_BOT_8x8_MULT_REG=0,
            p_PIPELINE_16x16_MULT_REG1=0, p_PIPELINE_16x16_MULT_REG2=1,
            p_TOPOUTPUT_SELECT=3, p_BOTOUTPUT_SELECT=3,
            p_TOPADDSUB_LOWERINPUT=0, p_TOPADDSUB_UPPERINPUT=0, p_TOPADDSUB_CARRYSELECT=0,
            p_BOTADDSUB_LOWERINPUT=0, p_BOTADDSUB_UPPERINPUT=0, p_BOTADDSUB_CARRYSELECT=0,
            p_MODE_8x8=0, p_NEG_TRIGGER=0,
            p_A_SIGNED=int(self.a_shape.signed), p_B_SIGNED=int(self.b_shape.signed),
            i_CLK=ClockSignal(), i_CE=Const(1), i_A=a, i_B=b, i_C=zero, i_D=zero,
            i_AHOLD=~self.a_en, i_BHOLD=~self.b_en, i_CHOLD=Const(0), i_DHOLD=Const(0),
            i_IRSTTOP=Const(0), i_IRSTBOT=Const(0), i_ORSTTOP=Const(0), i_ORSTBOT=Const(0),
            i_OLOADTOP=Const(0), i_OLOADBOT=Const(0), i_ADDSUBTOP=Const(0),
            i_ADDSUBBOT=Const(0), i_OHOLDTOP=Const(0), i_OHOLDBOT=Const(0),
            i_CI=Const(0), i_ACCUMCI=Const(0), i_SIGNEXTIN=Const(0),
            o_O=p)

    def _ecp5(self, m):
        a = Signal(signed(DSP_WIDTH))
        b = Signal(signed(DSP_WIDTH))
        p = Signal(signed(2 * DSP_WIDTH))
        # Sign- or zero-extension to 18 signed bits is exact for both operand kinds.
        m.d.comb += [a.eq(self.a), b.eq(self.b), self.p.eq(p[:len(self.p)])]
        ports = {f"i_A{i}": a[i] for i in range(DSP_WIDTH)}
        ports.update({f"i_B{i}": b[i] for i in range(DSP_WIDTH)})
        ports.update({f"i_C{i}": Const(0) for i in range(DSP_WIDTH)})
        ports.update({f"o_P{i}": p[i] for i in range(2 * DSP_WIDTH)})
        m.submodules.mult = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE1", p_REG_INPUTB_RST="RST0",
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE2", p_REG_OUTPUT_RST="RST0",
            p_CLK0_DIV="ENABLED", p_GSR="DISABLED", p_RESETMODE="SYNC",
            p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE",
            i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
            i_CLK0=ClockSignal(), i_CLK1=Const(0), i_CLK2=Const(0), i_CLK3=Const(0),
            i_CE0=self.a_en, i_CE1=self.b_en, i_CE2=Const(1), i_CE3=Const(0),
            i_RST0=Const(0), i_RST1=Const(0), i_RST2=Const(0), i_RST3=Const(0),
            **ports)


class SerialMultiplier(wiring.Component):
    """``p = a * b`` of unsigned operands by shift and add, one bit of ``a`` a cycle: no
    multiplier block, one adder (what ``AcceleratorConfig.serial_size`` used before it took
    one shared block instead).

    ``start`` samples ``a`` and ``b``; ``p`` holds the product and ``done`` is high from
    ``len(a)`` cycles after that (``len(a) + 1`` cycles counting the start's) until the
    next start.
    """

    def __init__(self, a_width: int, b_width: int):
        self.a_width, self.b_width = a_width, b_width
        super().__init__({
            "start": In(1),
            "a":     In(a_width),
            "b":     In(b_width),
            "p":     Out(a_width + b_width),
            "done":  Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        a = Signal(self.a_width, reset_less=True)
        b = Signal(self.a_width + self.b_width, reset_less=True)
        p = Signal(self.a_width + self.b_width, reset_less=True)
        left = Signal(range(self.a_width + 1))
        m.d.comb += [self.p.eq(p), self.done.eq(left == 0)]
        with m.If(self.start):
            m.d.sync += [a.eq(self.a), b.eq(self.b), p.eq(0), left.eq(self.a_width)]
        with m.Elif(left != 0):
            m.d.sync += [a.eq(a >> 1), b.eq(b << 1), left.eq(left - 1)]
            with m.If(a[0]):
                m.d.sync += p.eq(p + b)
        return m
