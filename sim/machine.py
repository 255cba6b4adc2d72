"""Program simulator: executes descriptors over a memory image as the hardware does.

It decodes each descriptor with `hw.isa.unpack` and walks the same loops as the
sequencer — output-channel tiles of C, pixel tiles of `tile_px`, kernel taps, K-tiles of
R — reading activations from the banks and weight tiles from the weight memory in the
order the RTL streams them, accumulating in 32-bit lanes, post-processing each pixel tile
(bias, requantize with round-half-to-even, clamp) and pooling on write (the first
contributor of a pooled cell writes, later ones take the max). Integer arithmetic is
exact, so its output equals `cm.reference`; the cycle model (`sim/cycles.py`) counts the
same loops.
"""

from __future__ import annotations

import numpy as np

from hw import isa, layout
from hw.isa import Opcode
from sim.reference import round_half_even_shift


class MachineError(RuntimeError):
    """The program did something the hardware would refuse (or hang on)."""


def requantize(acc: np.ndarray, params: dict, lo: int, hi: int, bipolar: bool = False
               ) -> np.ndarray:
    """Post-processing of int32 accumulators (..., C) with per-channel PARAM values,
    by the reference's rounding rule."""
    v = (acc + params["bias"]) * params["mult"] + params["offset"]
    y = np.clip(round_half_even_shift(v, params["shift"]), lo, hi)
    return 2 * y - 1 if bipolar else y


def _read_tensor(act, base, shape_hwc, rows, signed):
    words = layout.act_words(shape_hwc[0] * shape_hwc[1], shape_hwc[2], rows)
    if base + words > len(act):
        raise MachineError(f"input tensor at word {base} ({words} words) lies beyond the "
                           f"{len(act)}-word activation memory")
    return layout.from_banks(act[base:base + words], shape_hwc, rows, signed)


def _write_tensor(act, base, tensor_hwc, rows, raw):
    banks = (layout.raw_to_banks if raw else layout.to_banks)(tensor_hwc, rows)
    if base + len(banks) > len(act):
        raise MachineError(f"output tensor at word {base} ({len(banks)} words) lies beyond "
                           f"the {len(act)}-word activation memory")
    act[base:base + len(banks)] = banks


def conv(image: layout.MemoryImage, d: isa.Descriptor) -> None:
    """Execute one CONV descriptor in place on `image.act`."""
    R, C = image.rows, image.cols
    x = _read_tensor(image.act, d.src, (d.in_h, d.in_w, d.in_c), R, bool(d.in_signed))
    kt = layout.ceil_div(d.in_c, R)
    oct_ = layout.ceil_div(d.out_c, C)
    # Zero padding, and K padded to whole tiles (unused rows multiply by zero weights).
    xp = np.zeros((d.in_h + d.pad_t + d.pad_b + d.kh, d.in_w + d.pad_l + d.pad_r + d.kw, kt * R),
                  dtype=np.int64)
    xp[d.pad_t:d.pad_t + d.in_h, d.pad_l:d.pad_l + d.in_w, :d.in_c] = x
    conv_h, conv_w = conv_size(d)
    pixels = conv_h * conv_w
    oh, ow = np.divmod(np.arange(pixels), conv_w)

    n_words = layout.weight_words(d.out_c, d.in_c, d.kh, d.kw, R, C)
    if d.wgt + n_words > len(image.wgt):
        raise MachineError(f"weights at word {d.wgt} ({n_words} words) lie beyond the "
                           f"{len(image.wgt)}-word weight memory")
    wgt = image.wgt[d.wgt:d.wgt + n_words].view(np.int8).astype(np.int64)
    tiles = wgt.reshape(oct_, d.kh, d.kw, kt, R, C)
    params = isa.unpack_params(image.prm, d.out_c, d.prm)

    acc_out = np.zeros((pixels, oct_ * C), dtype=np.int64)
    tile_px = d.tile_px or pixels
    for ot in range(oct_):
        for p0 in range(0, pixels, tile_px):
            rows_idx, cols_idx = oh[p0:p0 + tile_px] * d.stride, ow[p0:p0 + tile_px] * d.stride
            acc = np.zeros((len(rows_idx), C), dtype=np.int64)
            for i in range(d.kh):
                for j in range(d.kw):
                    patch = xp[rows_idx + i, cols_idx + j]          # (px, kt*R)
                    for k in range(kt):
                        acc += patch[:, k * R:(k + 1) * R] @ tiles[ot, i, j, k]
            acc_out[p0:p0 + len(rows_idx), ot * C:(ot + 1) * C] = acc
    acc_out = acc_out[:, :d.out_c]
    if np.any((acc_out < -(1 << 31)) | (acc_out >= 1 << 31)):
        raise MachineError("an accumulator left the int32 range; the compiler's bound is wrong")
    p = params
    if d.out_raw:
        out = acc_out + p["bias"]
        _write_tensor(image.act, d.dst, out.reshape(conv_h, conv_w, d.out_c), R, raw=True)
        return
    y = requantize(acc_out, p, d.lo, d.hi, bool(d.bipolar)).reshape(conv_h, conv_w, d.out_c)
    k, s = max(d.pool_k, 1), max(d.pool_s, 1)
    if k > 1:
        # Pool on write: only pixels inside a full window of the floor-mode pool land.
        y = y[:d.out_h * s, :d.out_w * s].reshape(d.out_h, s, d.out_w, s, d.out_c).max(axis=(1, 3))
    _write_tensor(image.act, d.dst, y, R, raw=False)


def maxpool(image: layout.MemoryImage, d: isa.Descriptor) -> None:
    """A standalone max pool (pool_k window, pool_s stride, pad_t/pad_l padding)."""
    R = image.rows
    x = _read_tensor(image.act, d.src, (d.in_h, d.in_w, d.in_c), R, bool(d.in_signed))
    k, s = d.pool_k, d.pool_s
    padded = np.full((d.in_h + d.pad_t + d.pad_b + k, d.in_w + d.pad_l + d.pad_r + k, d.in_c),
                     np.iinfo(np.int64).min, dtype=np.int64)
    padded[d.pad_t:d.pad_t + d.in_h, d.pad_l:d.pad_l + d.in_w] = x
    out = np.full((d.out_h, d.out_w, d.in_c), np.iinfo(np.int64).min, dtype=np.int64)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, padded[i:i + s * d.out_h:s, j:j + s * d.out_w:s])
    _write_tensor(image.act, d.dst, out, R, raw=False)


def conv_size(d: isa.Descriptor) -> tuple[int, int]:
    """(height, width) of a CONV descriptor's output before pool-on-write."""
    return ((d.in_h + d.pad_t + d.pad_b - d.kh) // d.stride + 1,
            (d.in_w + d.pad_l + d.pad_r - d.kw) // d.stride + 1)


def _post(image, d, acc_hwc):
    """Bias + requantize + clamp (or raw int32) of accumulators, written to `dst`."""
    params = isa.unpack_params(image.prm, d.out_c, d.prm)
    if d.out_raw:
        _write_tensor(image.act, d.dst, acc_hwc + params["bias"], image.rows, raw=True)
    else:
        y = requantize(acc_hwc, params, d.lo, d.hi, bool(d.bipolar))
        _write_tensor(image.act, d.dst, y, image.rows, raw=False)


def avgpool(image: layout.MemoryImage, d: isa.Descriptor) -> None:
    """Global average pool: the int sum over H×W per channel, then post-processing."""
    x = _read_tensor(image.act, d.src, (d.in_h, d.in_w, d.in_c), image.rows, bool(d.in_signed))
    _post(image, d, x.sum(axis=(0, 1), keepdims=True))


def add(image: layout.MemoryImage, d: isa.Descriptor) -> None:
    """Residual add of two tensors of one scale, then post-processing."""
    shape = (d.in_h, d.in_w, d.in_c)
    a = _read_tensor(image.act, d.src, shape, image.rows, bool(d.in_signed))
    b = _read_tensor(image.act, d.src2, shape, image.rows, bool(d.in2_signed))
    _post(image, d, a + b)


EXECUTE = {
    Opcode.CONV: conv,
    Opcode.MAXPOOL: maxpool,
    Opcode.AVGPOOL: avgpool,
    Opcode.ADD: add,
}


def run_frames(program, x_int: np.ndarray) -> np.ndarray:
    """Outputs of `program` (a compiler.program.Program) for a batch of int frames, each
    run on a fresh copy of its memory image."""
    outputs = []
    for frame in x_int:
        image = program.image.copy()
        program.load_input(image.act, frame)
        run(image)
        outputs.append(program.read_output(image.act))
    return np.stack(outputs)


def run(image: layout.MemoryImage, max_descriptors: int = 4096) -> list[isa.Descriptor]:
    """Execute the program in `image.prg` up to END; returns the descriptors executed."""
    program = isa.unpack_program(image.prg)
    if len(program) > max_descriptors:
        raise MachineError(f"program has {len(program)} descriptors; the watchdog allows "
                           f"{max_descriptors}")
    for index, d in enumerate(program):
        if d.op is Opcode.END:
            break
        try:
            EXECUTE[d.op](image, d)
        except KeyError:
            raise MachineError(f"descriptor {index}: opcode {d.op.name} is not implemented "
                               "by the program simulator yet") from None
    return program
