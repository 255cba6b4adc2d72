"""A bring-up design: the PLL at the accelerator's clock and a UART that echoes every
byte at the link's baud rate. It checks a board's clocking, pins and USB-UART (and the
open-source flow) before the accelerator goes in."""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal
from amaranth.lib import io

from hw.uart import UART

from .pll import ECP5PLL, ecp5_pll
from .registry import Board


class UartEcho(Elaboratable):
    """PLL to `clock_mhz`, UART at `baud` looping rx back to tx; LED 0 shows PLL lock."""

    def __init__(self, board: Board, clock_mhz: float, baud: int = 1_000_000):
        if board.family != "ecp5":
            raise ValueError(f"the bring-up design supports ECP5 boards, not {board.name} "
                             f"({board.family})")
        self.board = board
        self.pll = ecp5_pll(board.clk_in_mhz, clock_mhz)
        self.baud = baud

    def elaborate(self, platform):
        m = Module()
        clk = platform.request(platform.default_clk, 0, dir="-")
        m.submodules.pll = pll = ECP5PLL(self.pll, clk.io)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("sync").eq(pll.clk), ResetSignal("sync").eq(~pll.locked)]
        pins = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", pins.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", pins.tx)
        m.submodules.uart = uart = UART(self.pll.clk_out_mhz * 1e6, self.baud)
        m.d.comb += [
            tx.o.eq(uart.tx_pin), uart.rx_pin.eq(rx.i),
            uart.tx.payload.eq(uart.rx.payload), uart.tx.valid.eq(uart.rx.valid),
            uart.rx.ready.eq(uart.tx.ready),
        ]
        m.submodules.led_buffer = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += led.o.eq(pll.locked)
        return m
