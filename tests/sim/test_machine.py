"""The program simulator computes convolutions exactly, through the memory layout."""

import numpy as np
import pytest

from hw import isa, layout
from sim import machine
from sim.reference import round_half_even_shift


def direct_conv(x_hwc, w_oihw, stride, pad):
    h, w, _ = x_hwc.shape
    oc, _, kh, kw = w_oihw.shape
    xp = np.pad(x_hwc, ((pad, pad), (pad, pad), (0, 0)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((oh, ow, oc), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            window = xp[i * stride:i * stride + kh, j * stride:j * stride + kw]  # kh,kw,ic
            out[i, j] = np.einsum("hwc,ochw->o", window, w_oihw)
    return out


def slow_requant(acc, bias, mult, offset, shift, lo, hi):
    """Python-int reference of the requantization rule, for checking the vector code."""
    out = np.zeros_like(acc)
    for idx in np.ndindex(acc.shape):
        c = idx[-1]
        v = (int(acc[idx]) + int(bias[c])) * int(mult[c]) + int(offset[c])
        s = int(shift[c])
        q, r = v >> s, v - ((v >> s) << s)
        if s and (r > 1 << (s - 1) or (r == 1 << (s - 1) and q & 1)):
            q += 1
        out[idx] = min(max(q, lo), hi)
    return out


def test_round_shift_is_half_to_even():
    v = np.array([5, 6, 7, -5, -6, -7, 3, -3, 12, 13], dtype=np.int64)
    s = np.array([1, 2, 1, 1, 2, 1, 0, 0, 3, 3])
    # 2.5->2, 1.5->2, 3.5->4, -2.5->-2, -1.5->-2, -3.5->-4, 3, -3, 1.5->2, 1.625->2
    assert round_half_even_shift(v, s).tolist() == [2, 2, 4, -2, -2, -4, 3, -3, 2, 2]


@pytest.mark.parametrize("rows, cols", [(4, 4), (8, 8), (3, 5)])
@pytest.mark.parametrize("case", [
    # H, W, IC, OC, K, stride, pad, pool, signed input
    (9, 7, 5, 6, 3, 1, 1, 2, True),
    (8, 8, 3, 9, 5, 2, 2, 1, False),
    (6, 6, 8, 8, 1, 1, 0, 3, True),
    (1, 1, 20, 10, 1, 1, 0, 1, False),
    (11, 5, 1, 2, 4, 3, 1, 1, True),
])
def test_conv_descriptor_matches_direct_computation(rows, cols, case):
    h, w, ic, oc, k, stride, pad, pool, signed = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x = rng.integers(-128, 128, (h, w, ic)) if signed else rng.integers(0, 256, (h, w, ic))
    wt = rng.integers(-128, 128, (oc, ic, k, k))
    bias = rng.integers(-5000, 5000, oc)
    mult = rng.integers(1, 1 << 31, oc)
    offset = rng.integers(-(1 << 40), 1 << 40, oc)
    shift = rng.integers(28, 45, oc)
    acc = direct_conv(x, wt, stride, pad)
    y = slow_requant(acc, bias, mult, offset, shift, -128, 127)
    ch, cw = acc.shape[:2]
    oh, ow = ch // pool, cw // pool
    y = y[:oh * pool, :ow * pool].reshape(oh, pool, ow, pool, oc).max(axis=(1, 3))

    image = layout.MemoryImage(rows, cols, 8192, layout.weight_tiles(wt, rows, cols).view(np.uint8),
                               isa.pack_params(bias, mult, offset, shift),
                               isa.pack_program([dict(
                                   op=isa.Opcode.CONV, in_signed=int(signed), src=0, dst=4000,
                                   in_h=h, in_w=w, in_c=ic, out_c=oc, kh=k, kw=k, stride=stride,
                                   pad_t=pad, pad_l=pad, pad_b=pad, pad_r=pad, pool_k=pool, pool_s=pool, out_h=oh,
                                   out_w=ow, tile_px=7, lo=-128, hi=127)]))
    image.act[:layout.act_words(h * w, ic, rows)] = layout.to_banks(x, rows)
    machine.run(image)
    got = layout.from_banks(image.act[4000:4000 + layout.act_words(oh * ow, oc, rows)],
                            (oh, ow, oc), rows, signed=True)
    assert np.array_equal(got, y)


def test_raw_int32_output_round_trips():
    rng = np.random.default_rng(1)
    t = rng.integers(-(1 << 31), 1 << 31, (2, 3, 5))
    assert np.array_equal(layout.raw_from_banks(layout.raw_to_banks(t, 4), t.shape, 4), t)


def test_out_of_memory_tensor_is_refused():
    image = layout.MemoryImage(4, 4, 16, np.zeros((4, 4), np.uint8),
                               isa.pack_params([0], [1], [0], [0]),
                               isa.pack_program([dict(op=isa.Opcode.CONV, in_h=8, in_w=8,
                                                      in_c=1, out_c=1, kh=1, kw=1, stride=1,
                                                      out_h=8, out_w=8, hi=127)]))
    with pytest.raises(machine.MachineError, match="beyond the 16-word activation memory"):
        machine.run(image)
