"""ECP5 PLL divider search."""

import pytest

from boards.pll import ecp5_pll


@pytest.mark.parametrize("clk_in, target", [(25.0, 125.0), (25.0, 100.0), (100.0, 125.0),
                                            (48.0, 75.0), (25.0, 50.0)])
def test_settings_meet_the_pll_limits(clk_in, target):
    s = ecp5_pll(clk_in, target)
    assert s.clk_out_mhz == pytest.approx(clk_in * s.clkfb_div / s.clki_div)
    assert abs(s.clk_out_mhz - target) <= 0.01 * target
    assert 400 <= s.vco_mhz <= 800 and 3.125 <= clk_in / s.clki_div <= 400
    assert s.vco_mhz == pytest.approx(s.clk_out_mhz * s.clkop_div)


def test_exact_125_from_25():
    s = ecp5_pll(25.0, 125.0)
    assert s.clk_out_mhz == 125.0


def test_impossible_clock_is_refused():
    with pytest.raises(ValueError, match="no ECP5 PLL setting gives 900 MHz from 25.0 MHz"):
        ecp5_pll(25.0, 900)
