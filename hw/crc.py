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


def crc32_next(state, byte):
    """Register value after feeding ``byte`` (8 bits, LSB first) into ``state`` (32 bits)."""
    poly = Const(CRC32_POLY, 32)
    for i in range(8):
        feedback = state[0] ^ byte[i]
        state = Cat(state[1:], Const(0, 1)) ^ Mux(feedback, poly, 0)
    return state


class CRC32(wiring.Component):
    """CRC-32 register, one byte per cycle.

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
    """

    start: In(1)
    en: In(1)
    data: In(8)
    crc: Out(32)
    residue_ok: Out(1)

    def elaborate(self, platform):
        m = Module()
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
