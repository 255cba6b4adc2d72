"""PLL settings: the board oscillator to the accelerator's clock.

`ecp5_pll` searches EHXPLLL dividers (feedback from CLKOP, as Lattice's ecppll does):
f_out = f_in · CLKFB_DIV / CLKI_DIV, with the phase detector at 3.125–400 MHz and the
VCO (f_out · CLKOP_DIV) at 400–800 MHz. `ECP5PLL` instantiates the primitive with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Elaboratable, Instance, Module, Signal


@dataclass(frozen=True)
class PLLSettings:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    clk_in_mhz: float
    clk_out_mhz: float
    vco_mhz: float


def ecp5_pll(clk_in_mhz: float, target_mhz: float) -> PLLSettings:
    """The EHXPLLL dividers whose output is closest to `target_mhz` (ties: lower VCO)."""
    best = None
    for clki in range(1, 129):
        pfd = clk_in_mhz / clki
        if not 3.125 <= pfd <= 400:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            for clkop in range(1, 129):
                vco = out * clkop
                if not 400 <= vco <= 800:
                    continue
                key = (abs(out - target_mhz), vco)
                if best is None or key < best[0]:
                    best = (key, PLLSettings(clki, clkfb, clkop, clk_in_mhz, out, vco))
    if best is None or best[1].clk_out_mhz > 400 or best[0][0] > 0.05 * target_mhz:
        raise ValueError(f"no ECP5 PLL setting gives {target_mhz} MHz from {clk_in_mhz} MHz "
                         "within 5 %; pick another clock")
    return best[1]


class ECP5PLL(Elaboratable):
    """An EHXPLLL from `clk_in`: `clk` is its output, `locked` its lock. The caller
    defines the clock domain it drives (Amaranth 0.6 wants domains defined where they
    are used or above)."""

    def __init__(self, settings: PLLSettings, clk_in):
        self.settings = settings
        self.clk_in = clk_in
        self.clk = Signal()
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        s = self.settings
        clk_out = self.clk
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{s.clk_in_mhz:g}",
            a_FREQUENCY_PIN_CLKOP=f"{s.clk_out_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=s.clki_div, p_CLKFB_DIV=s.clkfb_div, p_CLKOP_DIV=s.clkop_div,
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_CPHASE=s.clkop_div - 1, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP",
            i_CLKI=self.clk_in, i_CLKFB=clk_out, i_RST=0, i_STDBY=0, i_PHASESEL0=0,
            i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0, i_PHASELOADREG=0, i_PLLWAKESYNC=0,
            i_ENCLKOP=0,
            o_CLKOP=clk_out, o_LOCK=self.locked)
        return m
