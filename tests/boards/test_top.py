"""The board top: it elaborates to RTLIL on every registered board with that board's
default config; PLL, baud rate and config problems are refused with BoardError."""

import re

import pytest

import boards
from boards.registry import BoardError
from boards.top import AcceleratorTop, ice40_pll, link_timeout, pick_baud, platform_for
from hw import AcceleratorConfig


def _prepare(board, top):
    return platform_for(board).prepare(top, name="top", debug_verilog=False)


@pytest.mark.parametrize("name", boards.names())
def test_top_elaborates_for_every_board(name):
    board = boards.get(name)
    top = AcceleratorTop(board)
    plan = _prepare(board, top)
    rtlil = plan.files["top.il"]
    pll = "EHXPLLL" if board.family == "ecp5" else "SB_PLL40_PAD"
    assert f"cell \\{pll} " in rtlil
    assert "module \\top.accelerator" in rtlil and "module \\top.uart" in rtlil
    pins = plan.files["top.lpf" if board.family == "ecp5" else "top.pcf"]
    assert "uart_0__rx__io" in pins and "uart_0__tx__io" in pins
    assert top.config.rows == board.config.rows and top.config.clock_mhz == top.clock_mhz
    assert abs(top.clock_mhz - board.config.clock_mhz) <= 0.05 * board.config.clock_mhz


def test_ulx3s_top_at_125_mhz():
    board = boards.get("ulx3s-85f")
    top = AcceleratorTop(board, clock_mhz=125.0)
    assert (top.clock_mhz, top.baud) == (125.0, 1_000_000)
    # 16 byte times of 10 bits at 125 cycles per bit
    assert top.link_timeout == 16 * 10 * 125
    plan = _prepare(board, top)
    rtlil = plan.files["top.il"]
    assert re.search(r"parameter \\CLKFB_DIV 5\n", rtlil)
    assert 'attribute \\FREQUENCY_PIN_CLKOP "125"' in rtlil
    # three status LEDs: lock, running, done toggle
    assert len(re.findall(r"LOCATE COMP \"led_\d__io\"", plan.files["top.lpf"])) == 3


def test_icebreaker_runs_from_its_board_clock_without_pll():
    board = boards.get("icebreaker")
    top = AcceleratorTop(board, clock_mhz=12.0)
    assert top.pll is None and top.clock_mhz == 12.0
    assert "SB_PLL40" not in _prepare(board, top).files["top.il"]


def test_orangecrab_uart_on_the_feather_header():
    board = boards.get("orangecrab-25f")
    pins = _prepare(board, AcceleratorTop(board)).files["top.lpf"]
    assert 'LOCATE COMP "uart_0__rx__io" SITE "N17"' in pins
    assert 'LOCATE COMP "uart_0__tx__io" SITE "M18"' in pins


@pytest.mark.parametrize("rows, cols, message", [
    (4, 8, "cannot build config 4x8 for ulx3s-85f: hw.Accelerator needs cols <= rows"),
    (6, 6, "cannot build config 6x6 for ulx3s-85f: hw.Accelerator needs a power-of-two rows, "
           "not 6; use 4 or 8"),
])
def test_configs_the_rtl_refuses(rows, cols, message):
    config = AcceleratorConfig(rows=rows, cols=cols, weight_depth=16 * 1024 * 6)
    with pytest.raises(BoardError, match=re.escape(message)):
        AcceleratorTop(boards.get("ulx3s-85f"), config)


def test_clock_the_pll_cannot_make():
    with pytest.raises(BoardError, match=r"ulx3s-85f: no ECP5 PLL setting gives 900.0 MHz"):
        AcceleratorTop(boards.get("ulx3s-85f"), clock_mhz=900)
    with pytest.raises(BoardError, match=r"icebreaker: no iCE40 PLL setting gives 10.0 MHz "
                                         r"from 12.0 MHz within 5 %; pick a clock from 16 to "
                                         r"275 MHz or the board clock"):
        AcceleratorTop(boards.get("icebreaker"), clock_mhz=10)


@pytest.mark.parametrize("target", [16.0, 24.0, 30.0, 48.0, 100.0])
def test_ice40_pll_settings_meet_the_limits(target):
    s = ice40_pll(12.0, target)
    pfd = 12.0 / (s.divr + 1)
    assert 10 <= pfd <= 133 and 533 <= s.vco_mhz <= 1066
    assert s.clk_out_mhz == pytest.approx(12.0 * (s.divf + 1) / ((s.divr + 1) * 2 ** s.divq))
    assert abs(s.clk_out_mhz - target) <= 0.01 * target


def test_ice40_pll_24_mhz_as_icepll_gives_it():
    s = ice40_pll(12.0, 24.0)
    assert (s.divr, s.divf, s.divq, s.filter_range, s.clk_out_mhz) == (0, 63, 5, 1, 24.0)


def test_baud_rate_choice_and_refusals():
    ulx3s = boards.get("ulx3s-85f")
    assert pick_baud(ulx3s, 125.0) == 1_000_000
    assert pick_baud(ulx3s, 125.0, 3_000_000) == 3_000_000
    with pytest.raises(BoardError, match="4000000 baud is faster than ulx3s-85f's USB-UART "
                                         r"\(3000000 baud\)"):
        pick_baud(ulx3s, 125.0, 4_000_000)
    with pytest.raises(BoardError, match="ulx3s-85f at 3 MHz: a 3 MHz clock is too slow for "
                                         "1000000 baud"):
        pick_baud(ulx3s, 3.0)
    assert link_timeout(50.0, 1_000_000) == 16 * 10 * 50
