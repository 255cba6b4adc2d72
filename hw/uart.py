"""8N1 UART between a board's serial pins and the host link's byte streams.

`UART(clk_hz, baud)`: `tx` sends the bytes of its `stream.Signature(8)` input, `rx`
delivers received bytes on its output stream. The receiver samples each bit in its
middle, re-checks the start bit there (a glitch shorter than half a bit is ignored),
drops a byte whose stop bit is low (a framing error: the link's CRC would catch it
anyway) and counts overruns when its consumer is not ready in time.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2


def divisor(clk_hz: float, baud: int) -> int:
    """Clock cycles per bit; raises ValueError when the rate is off by more than 2 %."""
    if baud <= 0 or clk_hz <= 0:
        raise ValueError(f"baud rate and clock must be positive, not {baud!r} and {clk_hz!r}")
    div = round(clk_hz / baud)
    if div < 4:
        raise ValueError(f"a {clk_hz / 1e6:g} MHz clock is too slow for {baud} baud: "
                         f"it gives {div} cycles per bit, the UART needs at least 4")
    error = abs(clk_hz / div - baud) / baud
    if error > 0.02:
        raise ValueError(f"{baud} baud from a {clk_hz / 1e6:g} MHz clock is off by "
                         f"{100 * error:.1f} %; pick a rate within 2 % (e.g. "
                         f"{round(clk_hz / div)})")
    return div


class UART(wiring.Component):
    """Full-duplex 8N1 UART with byte streams on the inside."""

    def __init__(self, clk_hz: float, baud: int):
        self.div = divisor(clk_hz, baud)
        super().__init__({
            "tx_pin": Out(1, init=1),
            "rx_pin": In(1, init=1),
            "tx": In(stream.Signature(8)),
            "rx": Out(stream.Signature(8)),
            "overruns": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        div = self.div
        width = ceil_log2(div + 1)

        # Transmitter: start bit, 8 data bits LSB first, stop bit.
        tx_shift = Signal(10, init=0x3FF)
        tx_bits = Signal(range(11))
        tx_timer = Signal(width)
        m.d.comb += [self.tx_pin.eq(tx_shift[0]), self.tx.ready.eq(tx_bits == 0)]
        with m.If(tx_bits == 0):
            with m.If(self.tx.valid):
                m.d.sync += [tx_shift.eq((self.tx.payload << 1) | (1 << 9)),
                             tx_bits.eq(10), tx_timer.eq(div - 1)]
        with m.Elif(tx_timer == 0):
            m.d.sync += [tx_shift.eq((tx_shift >> 1) | (1 << 9)), tx_bits.eq(tx_bits - 1),
                         tx_timer.eq(div - 1)]
        with m.Else():
            m.d.sync += tx_timer.eq(tx_timer - 1)

        # Receiver.
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx_pin, rx, init=1)
        rx_timer = Signal(width)
        rx_bits = Signal(range(10))
        rx_shift = Signal(8)
        rx_busy = Signal()
        with m.If(self.rx.valid & self.rx.ready):
            m.d.sync += self.rx.valid.eq(0)
        with m.If(~rx_busy):
            with m.If(~rx):
                m.d.sync += [rx_busy.eq(1), rx_timer.eq(div // 2), rx_bits.eq(0)]
        with m.Elif(rx_timer != 0):
            m.d.sync += rx_timer.eq(rx_timer - 1)
        with m.Else():
            m.d.sync += [rx_timer.eq(div - 1), rx_bits.eq(rx_bits + 1)]
            with m.If(rx_bits == 0):
                with m.If(rx):                      # start bit gone: a glitch
                    m.d.sync += rx_busy.eq(0)
            with m.Elif(rx_bits <= 8):
                m.d.sync += rx_shift.eq(rx_shift >> 1 | rx << 7)
            with m.Else():                          # stop bit
                m.d.sync += rx_busy.eq(0)
                with m.If(rx):
                    with m.If(self.rx.valid & ~self.rx.ready):
                        m.d.sync += self.overruns.eq(self.overruns + 1)
                    m.d.sync += [self.rx.payload.eq(rx_shift), self.rx.valid.eq(1)]
        return m
