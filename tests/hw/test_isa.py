"""Descriptor and parameter encodings round-trip, and refuse values that do not fit."""

import numpy as np
import pytest

from hw import isa


def test_descriptor_round_trip_every_field():
    rng = np.random.default_rng(0)
    for _ in range(50):
        fields = {}
        for name, field in isa.DESCRIPTOR:
            if name == "op":
                fields[name] = isa.Opcode(int(rng.integers(0, 5)))
                continue
            lo, hi = isa._field_range(field.shape)
            fields[name] = int(rng.integers(lo, hi + 1))
        assert isa.unpack(isa.pack(fields)) == fields


def test_descriptor_fits_its_word():
    assert isa.DESCRIPTOR.size <= isa.DESCRIPTOR_BITS
    assert len(isa.pack({"op": isa.Opcode.CONV})) == isa.DESCRIPTOR_BYTES


@pytest.mark.parametrize("field, value, message", [
    ("kh", 16, r"field kh=16 does not fit unsigned\(4\) \[0, 15\]"),
    ("lo", -513, r"field lo=-513 does not fit signed\(10\) \[-512, 511\]"),
    ("in_c", -1, r"field in_c=-1 does not fit unsigned\(12\)"),
])
def test_out_of_range_fields_are_named(field, value, message):
    with pytest.raises(isa.IsaError, match=message):
        isa.pack({"op": isa.Opcode.CONV, field: value}, "descriptor")


def test_unknown_field_and_bad_opcode():
    with pytest.raises(isa.IsaError, match="unknown field"):
        isa.pack({"op": isa.Opcode.CONV, "kernel": 3})
    raw = bytearray(isa.pack({"op": isa.Opcode.CONV}))
    raw[0] = (raw[0] & 0xF0) | 0xF
    with pytest.raises(isa.IsaError, match="15 is not a valid Opcode"):
        isa.unpack(bytes(raw))


def test_program_image_ends_with_end():
    image = isa.pack_program([{"op": isa.Opcode.CONV, "in_c": 3}, {"op": isa.Opcode.MAXPOOL}])
    program = isa.unpack_program(image)
    assert [d.op for d in program] == [isa.Opcode.CONV, isa.Opcode.MAXPOOL, isa.Opcode.END]
    assert program[0].in_c == 3
    with pytest.raises(isa.IsaError, match="no END"):
        isa.unpack_program(image[:isa.DESCRIPTOR_BYTES])


def test_params_round_trip_extremes():
    bias = [-(1 << 31), (1 << 31) - 1, 0]
    mult = [1, (1 << 31) - 1, 1 << 30]
    offset = [-(1 << 55), (1 << 55) - 1, 12345]
    shift = [0, 63, 17]
    back = isa.unpack_params(isa.pack_params(bias, mult, offset, shift), 3)
    assert back["bias"].tolist() == bias and back["mult"].tolist() == mult
    assert back["offset"].tolist() == offset and back["shift"].tolist() == shift
    with pytest.raises(isa.IsaError, match="parameters of channel 1: field mult=2147483648"):
        isa.pack_params([0, 0], [1, 1 << 31], [0, 0], [0, 0])


def test_space_addresses():
    assert isa.space_address(isa.Space.WEIGHTS, 0x10) == 0x1000_0010
    with pytest.raises(isa.IsaError, match="does not fit"):
        isa.space_address(isa.Space.ACTIVATIONS, 1 << 28)
