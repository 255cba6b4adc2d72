"""The accelerator's instruction set: memory spaces and the layer descriptor.

This module is the single definition of the descriptor layout. The compiler packs
descriptors with `pack`, the program simulator (`sim/machine.py`) decodes them with
`unpack`, and the RTL sequencer reads the same `DESCRIPTOR` StructLayout field by field,
so the three cannot disagree about a bit.

One descriptor describes one fused layer:

- `Opcode.CONV`: convolution or linear layer (a linear layer is a 1×1 convolution of a
  1×1 image), + bias + per-channel requantization + clamp, + max-pool-on-write;
- `Opcode.MAXPOOL`: a max pool that cannot be fused on write (overlapping or padded);
- `Opcode.AVGPOOL`: global average pool (sum, then requantize);
- `Opcode.ADD`: residual add of two tensors (requantize each, add, clamp);
- `Opcode.END`: stop and raise `done`.

Activation tensors live in `Space.ACT`: R byte-wide banks, NHWC, channel `c` of pixel
`p` in bank `c % R` at word `base + p * ceil(C / R) + c // R`, so one K-tile of R channels
at one pixel is a single conflict-free read of all banks.
"""

from __future__ import annotations

import enum as py_enum

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

__all__ = ["Opcode", "Space", "DESCRIPTOR", "DESCRIPTOR_BITS", "DESCRIPTOR_BYTES", "PARAM",
           "PARAM_BYTES", "Descriptor", "pack", "unpack", "pack_program", "unpack_program",
           "pack_params", "unpack_params", "IsaError", "SPACE_SHIFT", "space_address"]


class IsaError(ValueError):
    """A descriptor field or parameter does not fit its encoding."""


class Opcode(enum.Enum, shape=4):
    """What a descriptor does."""

    END = 0
    CONV = 1
    MAXPOOL = 2
    AVGPOOL = 3
    ADD = 4


class Space(enum.Enum, shape=4):
    """Memory spaces, selected by the top 4 bits of a host-link address. The one
    definition: the link gateware (hw/link.py) and the host protocol use it too."""

    ACTIVATIONS = 0   # R banks × act_depth bytes
    WEIGHTS = 1       # words of C bytes, one array row each; R words per tile
    PARAMS = 2        # per-output-channel post-processing records (PARAM)
    PROGRAM = 3       # descriptors (DESCRIPTOR)


SPACE_SHIFT = 28  # a host address is (space << 28) | byte offset in that space


def space_address(space: Space, offset: int) -> int:
    """The 32-bit host-link address of byte `offset` of `space`."""
    if not 0 <= offset < 1 << SPACE_SHIFT:
        raise IsaError(f"offset {offset} does not fit a {SPACE_SHIFT}-bit space offset")
    return (Space(space).value << SPACE_SHIFT) | offset


# Field widths bound what one descriptor can express; the compiler checks every value
# against them (`pack`) and names the field that does not fit.
ADDR_BITS = 20
DIM_BITS = 10
CHAN_BITS = 12

DESCRIPTOR = data.StructLayout({
    "op":        Opcode,
    "in_signed": unsigned(1),        # activations read are signed (else zero-extended)
    "in2_signed": unsigned(1),       # the same for the second input (ADD)
    "out_raw":   unsigned(1),        # write int32 accumulators (4 words/channel group)
    "bipolar":   unsigned(1),        # outputs map the clamped {0, 1} to {-1, +1}
    "relu":      unsigned(1),        # informative: lo == 0
    "src":       unsigned(ADDR_BITS),  # input tensor base word
    "src2":      unsigned(ADDR_BITS),  # second input (ADD)
    "dst":       unsigned(ADDR_BITS),  # output tensor base word
    "in_h":      unsigned(DIM_BITS),
    "in_w":      unsigned(DIM_BITS),
    "in_c":      unsigned(CHAN_BITS),
    "out_h":     unsigned(DIM_BITS),   # after pool-on-write
    "out_w":     unsigned(DIM_BITS),
    "out_c":     unsigned(CHAN_BITS),
    "kh":        unsigned(4),
    "kw":        unsigned(4),
    "stride":    unsigned(3),
    "pad_t":     unsigned(3),
    "pad_l":     unsigned(3),
    "pad_b":     unsigned(3),
    "pad_r":     unsigned(3),
    "pool_k":    unsigned(3),        # pool-on-write window (1: none)
    "pool_s":    unsigned(3),
    "tile_px":   unsigned(12),       # pixels per accumulator tile
    "wgt":       unsigned(ADDR_BITS),  # first weight word
    "prm":       unsigned(14),       # first PARAM record
    "lo":        signed(10),         # clamp bounds of 8-bit outputs (signed or unsigned)
    "hi":        signed(10),
})
DESCRIPTOR_BITS = 256  # padded so the program memory word is a power of two
DESCRIPTOR_BYTES = DESCRIPTOR_BITS // 8
assert DESCRIPTOR.size <= DESCRIPTOR_BITS

# Per-output-channel post-processing: y = clamp(round_half_even((acc + bias) * mult
# + offset, shift), lo, hi). 16 bytes, little endian.
PARAM = data.StructLayout({
    "bias":   signed(32),
    "mult":   unsigned(31),
    "_pad":   unsigned(1),
    "offset": signed(56),
    "shift":  unsigned(8),
})
PARAM_BYTES = PARAM.size // 8
assert PARAM.size == 128


class Descriptor(dict):
    """A descriptor as plain Python values, keyed by the field names of DESCRIPTOR."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _field_range(shape) -> tuple[int, int]:
    shape = shape.shape() if hasattr(shape, "shape") and not hasattr(shape, "width") else shape
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _pack_struct(layout: data.StructLayout, values: dict, what: str) -> int:
    word = 0
    for name, field in layout:
        value = values.get(name, 0)
        if isinstance(value, py_enum.Enum):
            value = value.value
        shape = field.shape
        if isinstance(shape, type) and issubclass(shape, py_enum.Enum):
            shape = shape.as_shape()
        value = int(value)
        lo, hi = _field_range(shape)
        if not lo <= value <= hi:
            raise IsaError(f"{what}: field {name}={value} does not fit "
                           f"{'signed' if shape.signed else 'unsigned'}({shape.width}) "
                           f"[{lo}, {hi}]")
        word |= (value & ((1 << shape.width) - 1)) << field.offset
    unknown = set(values) - {name for name, _ in layout}
    if unknown:
        raise IsaError(f"{what}: unknown field(s) {', '.join(sorted(unknown))}")
    return word


def _unpack_struct(layout: data.StructLayout, word: int) -> dict:
    values = {}
    for name, field in layout:
        shape = field.shape
        enum_type = None
        if isinstance(shape, type) and issubclass(shape, py_enum.Enum):
            enum_type, shape = shape, shape.as_shape()
        raw = (word >> field.offset) & ((1 << shape.width) - 1)
        if shape.signed and raw >> (shape.width - 1):
            raw -= 1 << shape.width
        if enum_type is not None:
            try:
                raw = enum_type(raw)
            except ValueError:
                raise IsaError(f"field {name}: {raw} is not a valid {enum_type.__name__}") \
                    from None
        values[name] = raw
    return values


def pack(fields: dict, what: str = "descriptor") -> bytes:
    """Encode one descriptor (a dict of field values) as DESCRIPTOR_BYTES bytes."""
    return _pack_struct(DESCRIPTOR, fields, what).to_bytes(DESCRIPTOR_BYTES, "little")


def unpack(raw: bytes) -> Descriptor:
    """Decode DESCRIPTOR_BYTES bytes into a Descriptor."""
    if len(raw) != DESCRIPTOR_BYTES:
        raise IsaError(f"a descriptor is {DESCRIPTOR_BYTES} bytes, not {len(raw)}")
    return Descriptor(_unpack_struct(DESCRIPTOR, int.from_bytes(raw, "little")))


def pack_program(descriptors: list[dict], names: list[str] | None = None) -> np.ndarray:
    """The program memory image (uint8) of a descriptor list; an END is appended.
    `names` (one per descriptor, e.g. layer names) go into the error of a field that
    does not fit."""
    def what(i, d):
        op = d.get("op", "?")
        op = getattr(op, "name", op)
        return f"descriptor {i} ({op}" + (f", layer {names[i]})" if names else ")")
    words = [pack(d, what(i, d)) for i, d in enumerate(descriptors)]
    words.append(pack({"op": Opcode.END}))
    return np.frombuffer(b"".join(words), dtype=np.uint8).copy()


def unpack_program(image: np.ndarray) -> list[Descriptor]:
    """Decode a program image up to and including its END descriptor."""
    raw = np.asarray(image, dtype=np.uint8).tobytes()
    program = []
    for start in range(0, len(raw) - DESCRIPTOR_BYTES + 1, DESCRIPTOR_BYTES):
        d = unpack(raw[start:start + DESCRIPTOR_BYTES])
        program.append(d)
        if d.op is Opcode.END:
            return program
    raise IsaError("program has no END descriptor")


def pack_params(bias, mult, offset, shift) -> np.ndarray:
    """PARAM records (uint8, PARAM_BYTES each) of per-channel post-processing values."""
    columns = [np.asarray(v, dtype=object).reshape(-1) for v in (bias, mult, offset, shift)]
    if len({len(c) for c in columns}) != 1:
        raise IsaError("bias, mult, offset and shift need one value per output channel")
    out = bytearray()
    for ch, (b, m, o, s) in enumerate(zip(*columns)):
        word = _pack_struct(PARAM, {"bias": b, "mult": m, "offset": o, "shift": s},
                            f"parameters of channel {ch}")
        out += word.to_bytes(PARAM_BYTES, "little")
    return np.frombuffer(bytes(out), dtype=np.uint8).copy()


def unpack_params(image: np.ndarray, count: int, start: int = 0) -> dict[str, np.ndarray]:
    """Decode `count` PARAM records from record index `start`: arrays of int64."""
    raw = np.asarray(image, dtype=np.uint8).tobytes()
    end = (start + count) * PARAM_BYTES
    if end > len(raw):
        raise IsaError(f"parameter records {start}..{start + count - 1} lie beyond the "
                       f"{len(raw) // PARAM_BYTES} records of the image")
    fields = [_unpack_struct(PARAM, int.from_bytes(raw[i * PARAM_BYTES:(i + 1) * PARAM_BYTES],
                                                   "little"))
              for i in range(start, start + count)]
    return {name: np.array([f[name] for f in fields], dtype=np.int64)
            for name in ("bias", "mult", "offset", "shift")}
