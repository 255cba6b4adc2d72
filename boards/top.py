"""The board top: the accelerator behind a UART, clocked by the board's PLL.

    oscillator ─► PLL ─► sync clock ─┬─► UART ◄──► rx/tx pins (USB-UART bridge)
                  lock ─► reset ─────┘     ▲▼ bytes
                                       Accelerator ─► LEDs: lock, running, done toggle

ECP5 boards use an EHXPLLL (`boards.pll`). The iCEBreaker uses an SB_PLL40_PAD on its
12 MHz pin (the UP5K's PLL input pad); a clock the PLL cannot make within 5 % is refused
unless it is the board clock itself, which then runs the design without a PLL. The
reset is synchronous: the PLL's lock, brought into the clock domain by two flip-flops,
holds the `sync` domain in reset until the clock is stable.
"""

from __future__ import annotations

import dataclasses

from amaranth.build import ResourceError
from amaranth.hdl import (ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module,
                          ResetSignal, Signal)
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer

from hw import AcceleratorConfig, ConfigError
from hw.accelerator import Accelerator, check_config
from hw.uart import UART, divisor

from .pll import ECP5PLL, ecp5_pll
from .registry import Board, BoardError

DEFAULT_BAUD = 1_000_000      # what host.backends.board opens the port at
LINK_TIMEOUT_BYTES = 16       # the host link's inter-byte timeout, in byte times


@dataclasses.dataclass(frozen=True)
class ICE40PLLSettings:
    """SB_PLL40 dividers (simple feedback): f_out = f_in · (DIVF+1) / ((DIVR+1) · 2^DIVQ)."""

    divr: int
    divf: int
    divq: int
    filter_range: int
    clk_in_mhz: float
    clk_out_mhz: float
    vco_mhz: float


def ice40_pll(clk_in_mhz: float, target_mhz: float) -> ICE40PLLSettings:
    """The SB_PLL40 dividers whose output is closest to `target_mhz` (ties: lower VCO), with
    the phase detector at 10–133 MHz, the VCO at 533–1066 MHz and the output at 16–275 MHz
    (iCE40 sysCLOCK PLL limits, as icepll checks them)."""
    best = None
    for divr in range(16):
        pfd = clk_in_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                if not 16 <= out <= 275:
                    continue
                key = (abs(out - target_mhz), vco)
                if best is None or key < best[0]:
                    filter_range = 1 + sum(pfd >= edge for edge in (17, 26, 44, 66, 101))
                    best = (key, ICE40PLLSettings(divr, divf, divq, filter_range, clk_in_mhz,
                                                  out, vco))
    if best is None or best[0][0] > 0.05 * target_mhz:
        raise ValueError(f"no iCE40 PLL setting gives {target_mhz} MHz from {clk_in_mhz} MHz "
                         "within 5 %; pick a clock from 16 to 275 MHz or the board clock")
    return best[1]


class ICE40PLL(Elaboratable):
    """An SB_PLL40_PAD fed straight from the clock pin; `clk` is its global output."""

    def __init__(self, settings: ICE40PLLSettings, pad):
        self.settings = settings
        self.pad = pad
        self.clk = Signal()
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        s = self.settings
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE", p_DIVR=s.divr, p_DIVF=s.divf, p_DIVQ=s.divq,
            p_FILTER_RANGE=s.filter_range,
            i_PACKAGEPIN=self.pad, i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=self.clk, o_LOCK=self.locked)
        return m


def pick_baud(board: Board, clock_mhz: float, baud: int | None = None) -> int:
    """`baud`, or the host's default rate capped at what the board's USB-UART takes;
    BoardError when the UART cannot make it from `clock_mhz` within 2 %."""
    if baud is None:
        baud = min(DEFAULT_BAUD, board.max_baud)
    if baud > board.max_baud:
        raise BoardError(f"{baud} baud is faster than {board.name}'s USB-UART "
                         f"({board.max_baud} baud)")
    try:
        divisor(clock_mhz * 1e6, baud)
    except ValueError as error:
        raise BoardError(f"{board.name} at {clock_mhz:g} MHz: {error}") from None
    return baud


def link_timeout(clock_mhz: float, baud: int) -> int:
    """The host link's inter-byte timeout in cycles: LINK_TIMEOUT_BYTES byte times (10 bits
    each, 8N1) at `baud`."""
    return LINK_TIMEOUT_BYTES * 10 * divisor(clock_mhz * 1e6, baud)


# Extra pins a board's amaranth-boards platform lacks: the OrangeCrab r0.2 platform
# has no UART; its Feather header's IO 0 (N17) and IO 1 (M18) take a 3.3 V USB-UART
# adapter as RX and TX, the Feather convention.
def _orangecrab_uart():
    from amaranth.build import Attrs
    from amaranth_boards.resources import UARTResource
    return [UARTResource(0, rx="N17", tx="M18", attrs=Attrs(IO_TYPE="LVCMOS33"))]


_EXTRA_RESOURCES = {"orangecrab-25f": _orangecrab_uart}


def _registered(m, source, sink, name):
    """`source` to `sink` through a one-byte register, each side's handshake from
    flip-flops (a byte every other cycle at most: a UART byte takes tens)."""
    full = Signal(name=f"{name}_full")
    data = Signal(8, name=f"{name}_data")
    m.d.comb += [source.ready.eq(~full), sink.valid.eq(full), sink.payload.eq(data)]
    with m.If(sink.ready & full):
        m.d.sync += full.eq(0)
    with m.If(source.valid & ~full):
        m.d.sync += [full.eq(1), data.eq(source.payload)]


def platform_for(board: Board):
    """The amaranth-boards platform of `board`, with any pins the top needs added."""
    platform = board.platform_class()()
    if board.name in _EXTRA_RESOURCES:
        platform.add_resources(_EXTRA_RESOURCES[board.name]())
    return platform


def _lamps(platform, count: int) -> list:
    """Up to `count` single-LED ports: the board's plain LEDs, else the channels of its RGB
    LEDs (green, blue, red of each in turn)."""
    lamps = []
    for name, channels in (("led", None), ("rgb_led", ("g", "b", "r"))):
        index = 0
        while len(lamps) < count:
            try:
                port = platform.request(name, index, dir="-")
            except ResourceError:
                break
            lamps += [port] if channels is None else [getattr(port, c) for c in channels]
            index += 1
    return lamps[:count]


class AcceleratorTop(Elaboratable):
    """`hw.accelerator.Accelerator` for `board`: PLL to `clock_mhz` (default: the config's
    clock), reset until lock, UART at `baud` (default: 1 Mbaud) and status LEDs.

    Raises BoardError for a config the RTL cannot build, a clock the PLL cannot make or a
    baud rate the UART cannot make; nothing is elaborated until `elaborate`.
    """

    def __init__(self, board: Board, config: AcceleratorConfig | None = None, *,
                 clock_mhz: float | None = None, baud: int | None = None):
        # A refused top must not also warn, when collected, that it was never elaborated.
        self._MustUse__silence = True
        config = config or board.config
        try:
            check_config(config)
        except ConfigError as error:
            raise BoardError(f"cannot build config {config.label} for {board.name}: "
                             f"{error}") from None
        clock_mhz = float(clock_mhz if clock_mhz is not None else config.clock_mhz)
        self.board = board
        self.pll = self._pll_settings(board, clock_mhz)
        self.clock_mhz = self.pll.clk_out_mhz if self.pll is not None else board.clk_in_mhz
        self.config = dataclasses.replace(config, clock_mhz=self.clock_mhz)
        self.baud = pick_baud(board, self.clock_mhz, baud)
        self.link_timeout = link_timeout(self.clock_mhz, self.baud)
        self._MustUse__silence = False

    @staticmethod
    def _pll_settings(board: Board, clock_mhz: float):
        """PLL settings for `clock_mhz`, or None to run from the board clock (iCE40 only)."""
        try:
            if board.family == "ecp5":
                return ecp5_pll(board.clk_in_mhz, clock_mhz)
            if abs(clock_mhz - board.clk_in_mhz) <= 1e-6 * clock_mhz:
                return None
            return ice40_pll(board.clk_in_mhz, clock_mhz)
        except ValueError as error:
            raise BoardError(f"{board.name}: {error}") from None

    def _clock(self, m, platform):
        """Add the PLL (or the board clock's input buffer); its clock and lock signals."""
        pad = platform.request(platform.default_clk, 0, dir="-")
        if self.pll is None:
            m.submodules.clk_buffer = buffer = io.Buffer("i", pad)
            return buffer.i, Const(1)
        if self.board.family == "ecp5":
            m.submodules.pll = pll = ECP5PLL(self.pll, pad.io)
        else:
            m.submodules.pll = pll = ICE40PLL(self.pll, pad.io)
        return pll.clk, pll.locked

    def _global(self, m, reset):
        """The reset onto a global network (ECP5: a DCCA), or as it is (iCE40: nextpnr
        promotes a wide reset itself). nextpnr-ecp5 promotes only clocks: the reset
        stayed a fabric net from one flip-flop to every block's, and its route was
        the slowest path of 125 MHz builds (9.49 ns at fad210d, into the link's
        registers placed far from it); a global reaches every tile alike."""
        if self.board.family != "ecp5":
            return reset
        out = Signal(name="reset_global")
        m.submodules.reset_buffer = Instance("DCCA", i_CLKI=reset, i_CE=Const(1),
                                             o_CLKO=out)
        return out

    def elaborate(self, platform):
        m = Module()
        clk, pll_locked = self._clock(m, platform)

        # `sync` runs on the PLL's clock (nextpnr derives its constraint from the board
        # clock's through the PLL); its reset is released three cycles after lock,
        # synchronously (the lock output is asynchronous to that clock). The reset
        # reaches every block's flip-flops: it comes straight from a register of its
        # own, no logic between (at 49ede60 an inverter after the synchronizer and the
        # route from it put ~400 of the 8x8's endpoints over 8 ns).
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clk)
        locked = Signal()
        m.submodules.lock_sync = FFSynchronizer(pll_locked, locked, o_domain="sync")
        in_reset = Signal(init=1, reset_less=True)
        m.d.sync += in_reset.eq(~locked)
        m.d.comb += ResetSignal("sync").eq(self._global(m, in_reset))

        m.submodules.uart = uart = UART(self.clock_mhz * 1e6, self.baud)
        m.submodules.accelerator = acc = Accelerator(self.config,
                                                     link_timeout=self.link_timeout)
        if self.config.compact_link:
            wiring.connect(m, uart.rx, acc.i_stream)
            wiring.connect(m, acc.o_stream, uart.tx)
        else:
            # a register each way: the UART sits by its pins, and the link's decisions
            # on `valid` and `ready` were routes across the die
            _registered(m, uart.rx, acc.i_stream, "rx_byte")
            _registered(m, acc.o_stream, uart.tx, "tx_byte")
        pins = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", pins.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", pins.tx)
        m.d.comb += [tx.o.eq(uart.tx_pin), uart.rx_pin.eq(rx.i)]

        done_toggle = Signal()
        with m.If(acc.done):
            m.d.sync += done_toggle.eq(~done_toggle)
        states = (locked, acc.running, done_toggle)
        for index, (lamp, state) in enumerate(zip(_lamps(platform, len(states)), states)):
            m.submodules[f"lamp_{index}"] = buffer = io.Buffer("o", lamp)
            m.d.comb += buffer.o.eq(state)
        return m

