"""How tensors and weights are laid out in the accelerator's memories.

Activations (`Space.ACT`): `rows` byte-wide banks; a tensor of H×W pixels and C
channels at base word `b` keeps channel `c` of pixel `p = h * W + w` in bank `c % rows`,
word `b + p * groups + c // rows`, with `groups = ceil(C / rows)`. Unused lanes of the
last group hold 0. An int32 tensor (`out_raw`) uses 4 consecutive words per group, byte
`k` (little endian) in word `b + (p * groups + c // rows) * 4 + k`.

Weights (`Space.WGT`): words of `cols` bytes, one systolic-array row each. A layer's
tiles follow in the order the sequencer uses them, (oc_tile, kh, kw, k_tile), each tile
`rows` words: word `r` of tile holds W[oc_tile*cols + j, k_tile*rows + r, kh, kw] in byte
`j`. Channels beyond the layer's hold 0.
"""

from __future__ import annotations

import numpy as np


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def act_words(pixels: int, channels: int, rows: int, raw: bool = False) -> int:
    """Words of one bank that a tensor of `pixels` × `channels` occupies."""
    return pixels * ceil_div(channels, rows) * (4 if raw else 1)


def to_banks(tensor_hwc: np.ndarray, rows: int) -> np.ndarray:
    """An (H, W, C) int tensor as (words, rows) uint8 bank contents."""
    h, w, c = tensor_hwc.shape
    groups = ceil_div(c, rows)
    padded = np.zeros((h * w, groups * rows), dtype=np.int64)
    padded[:, :c] = tensor_hwc.reshape(h * w, c)
    return (padded.reshape(h * w * groups, rows) & 0xFF).astype(np.uint8)


def from_banks(words: np.ndarray, shape_hwc: tuple[int, int, int], rows: int,
               signed: bool) -> np.ndarray:
    """Inverse of `to_banks`: (words, rows) uint8 → (H, W, C) int64."""
    h, w, c = shape_hwc
    groups = ceil_div(c, rows)
    vals = words.reshape(h * w, groups * rows)[:, :c].astype(np.int64)
    if signed:
        vals = np.where(vals >= 128, vals - 256, vals)
    return vals.reshape(h, w, c)


def raw_to_banks(tensor_hwc: np.ndarray, rows: int) -> np.ndarray:
    """An (H, W, C) int32 tensor as (words, rows) uint8, 4 words per channel group."""
    h, w, c = tensor_hwc.shape
    groups = ceil_div(c, rows)
    padded = np.zeros((h * w * groups, rows), dtype=np.int64)
    padded.reshape(h * w, groups * rows)[:, :c] = tensor_hwc.reshape(h * w, c)
    as_u32 = (padded & 0xFFFFFFFF).astype(np.uint32)
    out = np.stack([(as_u32 >> (8 * k)) & 0xFF for k in range(4)], axis=1)
    return out.reshape(h * w * groups * 4, rows).astype(np.uint8)


def raw_from_banks(words: np.ndarray, shape_hwc: tuple[int, int, int], rows: int) -> np.ndarray:
    """Inverse of `raw_to_banks`: → (H, W, C) int64 of int32 values."""
    h, w, c = shape_hwc
    groups = ceil_div(c, rows)
    b = words.reshape(h * w * groups, 4, rows).astype(np.int64)
    vals = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)
    vals = np.where(vals >= 1 << 31, vals - (1 << 32), vals)
    return vals.reshape(h * w, groups * rows)[:, :c].reshape(h, w, c)


def weight_tiles(w_oihw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Conv weights (OC, IC, KH, KW) as (words, cols) int8 in sequencer tile order."""
    oc, ic, kh, kw = w_oihw.shape
    oct_, kt = ceil_div(oc, cols), ceil_div(ic, rows)
    padded = np.zeros((oct_ * cols, kt * rows, kh, kw), dtype=np.int64)
    padded[:oc, :ic] = w_oihw
    # (oc_tile, j, k_tile, r, kh, kw) -> (oc_tile, kh, kw, k_tile, r, j)
    tiles = padded.reshape(oct_, cols, kt, rows, kh, kw).transpose(0, 4, 5, 2, 3, 1)
    return tiles.reshape(-1, cols).astype(np.int8)


def weight_words(oc: int, ic: int, kh: int, kw: int, rows: int, cols: int) -> int:
    """Weight words (of `cols` bytes) a layer occupies."""
    return ceil_div(oc, cols) * kh * kw * ceil_div(ic, rows) * rows


class MemoryImage:
    """Contents of the accelerator's memories for one compiled network.

    `act` is (act_depth, rows) uint8, `wgt` (words, cols) uint8, `prm` and `prg` byte
    arrays. The host writes `wgt`, `prm` and `prg` once and the input into `act` for
    every frame.
    """

    def __init__(self, rows: int, cols: int, act_depth: int, wgt: np.ndarray,
                 prm: np.ndarray, prg: np.ndarray):
        self.rows, self.cols = rows, cols
        self.act = np.zeros((act_depth, rows), dtype=np.uint8)
        self.wgt = np.asarray(wgt, dtype=np.uint8).reshape(-1, cols)
        self.prm = np.asarray(prm, dtype=np.uint8).reshape(-1)
        self.prg = np.asarray(prg, dtype=np.uint8).reshape(-1)

    def copy(self) -> "MemoryImage":
        other = MemoryImage(self.rows, self.cols, len(self.act), self.wgt.copy(),
                            self.prm.copy(), self.prg.copy())
        other.act[:] = self.act
        return other
