"""Byte-at-a-time CRC-32 (IEEE 802.3, as ``zlib.crc32``) for the host link.

The register form is the reflected one: shift right, polynomial 0xEDB88320,
initial value 0xFFFFFFFF, result inverted. Feeding a message followed by its
own CRC (little endian) leaves the register at :data:`CRC32_RESIDUE` whatever
the message, so a receiver checks a frame without storing the received CRC.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CRC32_POLY", "CRC32_INIT", "CRC32_RESIDUE", "crc32_next", "CRC32"]

CRC32_POLY = 0xEDB88320
CRC32_INIT = 0xFFFFFFFF
#: Register value after a message and its little-endian CRC have been fed.
CRC32_RESIDUE = 0xDEBB20E3


def crc32_next(state, byte, bits=8):
    """Register value after feeding the low ``bits`` of ``byte`` (LSB first) into
    ``state`` (32 bits)."""
    poly = Const(CRC32_POLY, 32)
    for i in range(bits):
        feedback = state[0] ^ byte[i]
        state = Cat(state[1:], Const(0, 1)) ^ Mux(feedback, poly, 0)
    return state


class CRC32(wiring.Component):
    """CRC-32 register, one byte per cycle (with ``serial``, one byte per 8 cycles).

    Ports
    -----
    start : In(1)
        Restart the register at :data:`CRC32_INIT`. With ``en`` in the same
        cycle, ``data`` is the first byte of the new message.
    en, data : In(1), In(8)
        Feed ``data`` this cycle.
    crc : Out(32)
        CRC-32 of the bytes fed since ``start`` (equals ``zlib.crc32``).
    residue_ok : Out(1)
        High when the bytes fed end with their own CRC (little endian) and it matched.
    busy : Out(1), with ``serial``
        A byte is being fed in, a bit a cycle (8 cycles from the one after ``en``): no
        ``en``, and ``crc`` and ``residue_ok`` are not yet final. Low otherwise.

    ``serial`` shifts a byte in one bit a cycle: one LUT per register bit instead of
    the byte's XOR trees (``AcceleratorConfig.compact_link``; a UART byte takes longer).
    """

    def __init__(self, serial=False):
        self.serial = bool(serial)
        super().__init__({"start": In(1), "en": In(1), "data": In(8), "crc": Out(32),
                          "residue_ok": Out(1), **({"busy": Out(1)} if self.serial else {})})

    def elaborate(self, platform):
        m = Module()
        if self.serial:
            return self._serial(m)
        state = Signal(32, init=CRC32_INIT)
        base = Mux(self.start, CRC32_INIT, state)
        with m.If(self.en):
            m.d.sync += state.eq(crc32_next(base, self.data))
        with m.Elif(self.start):
            m.d.sync += state.eq(CRC32_INIT)
        m.d.comb += [
            self.crc.eq(~state),
            self.residue_ok.eq(state == CRC32_RESIDUE),
        ]
        return m

    def _serial(self, m):
        state = Signal(32, init=CRC32_INIT)
        byte = Signal(8)
        left = Signal(range(9))
        m.d.comb += [
            self.busy.eq(left != 0),
            self.crc.eq(~state),
            self.residue_ok.eq(state == CRC32_RESIDUE),
        ]
        with m.If(left != 0):
            m.d.sync += [state.eq(crc32_next(state, byte, bits=1)), byte.eq(byte >> 1),
                         left.eq(left - 1)]
        with m.If(self.start):
            m.d.sync += state.eq(CRC32_INIT)
        with m.If(self.en):
            m.d.sync += [byte.eq(self.data), left.eq(8)]
        return m
