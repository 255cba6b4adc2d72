"""Cycle model on hand-computed cases: one tile, edge tiles, weight-load-bound layers."""

import pytest

from hw import isa
from hw.array import ArrayTiming
from sim import cycles
from hw.feeder import FEED_LATENCY
from hw.accelerator import DIVIDE_CYCLES, OT_GAP, RAW_BEATS, SETUP_CYCLES
from sim.cycles import DESCRIPTOR_FETCH, POST_PIPELINE


def conv(**fields):
    base = dict(op=isa.Opcode.CONV, in_h=1, in_w=1, in_c=1, out_c=1, kh=1, kw=1, stride=1,
                pad_t=0, pad_l=0, pad_b=0, pad_r=0, tile_px=0, pool_k=1, pool_s=1)
    return isa.Descriptor({**base, **fields})


def fixed(rows, cols, several_tiles=False):
    """The sequencer's setup, hand-over and drain around a CONV's commands."""
    drain = (FEED_LATENCY + ArrayTiming(rows, cols).latency + POST_PIPELINE
             + RAW_BEATS - 1 + 1)
    return SETUP_CYCLES + (DIVIDE_CYCLES if several_tiles else 0) + 1 + drain + 1


def test_one_tile_one_pixel_tile():
    # 4x4 array, 1x1 conv, 4 in / 4 out channels, 10x10 pixels: one step of 100 cycles.
    d = conv(in_h=10, in_w=10, in_c=4, out_c=4, tile_px=128)
    layer = cycles.estimate([d], 4, 4).layers[0]
    assert layer.cycles == 100 + fixed(4, 4)
    assert layer.macs == 100 * 4 * 4
    assert layer.bound == "compute"


def test_edge_tiles_round_up():
    # 5 in channels -> 2 K-tiles, 6 out channels -> 2 oc tiles, 3x3 kernel with pad 1 on
    # 6x6 -> 36 pixels, pixel tiles of 20 + 16.
    d = conv(in_h=6, in_w=6, in_c=5, out_c=6, kh=3, kw=3, pad_t=1, pad_l=1, pad_b=1, pad_r=1, tile_px=20)
    layer = cycles.estimate([d], 4, 4).layers[0]
    steps = 9 * 2
    assert layer.cycles == 2 * steps * (20 + 16) + fixed(4, 4, several_tiles=True)
    assert layer.macs == 36 * 6 * 9 * 5


def test_one_pixel_layer_gets_a_tile_per_cycle():
    # A linear layer 64 -> 16 on 8x8: 8 K-tiles x 2 oc tiles, each used for one pixel; a
    # whole tile loads per cycle, so tiles follow each other every cycle, except that an
    # oc tile starts OT_GAP cycles after the previous one at the earliest (its PARAM
    # records load one per cycle after the previous tile's swap).
    d = conv(in_c=64, out_c=16, tile_px=512)
    est = cycles.estimate([d, isa.Descriptor(op=isa.Opcode.END)], 8, 8)
    layer = est.layers[0]
    assert OT_GAP(8) == 14 > 8
    assert layer.cycles == OT_GAP(8) + 8 + fixed(8, 8)
    assert layer.bound == "parameter load"
    wide = cycles.estimate([conv(in_c=256, out_c=16, tile_px=512)], 8, 8).layers[0]
    assert wide.cycles == 2 * 32 + fixed(8, 8) and wide.bound == "compute"
    assert est.cycles == layer.cycles + DESCRIPTOR_FETCH
    assert est.utilization == pytest.approx(64 * 16 / (est.cycles * 64))


def test_narrow_weight_port_makes_one_pixel_layers_load_bound():
    # Two rows per beat: 4 beats per tile, so one-pixel tiles come every 4 cycles.
    d = conv(in_c=64, out_c=16, tile_px=512)
    layer = cycles.estimate([d], 8, 8, load_rows=2).layers[0]
    assert layer.cycles == 2 * 8 * 4 + fixed(8, 8)
    assert layer.bound == "weight load"


def test_k_packed_first_layer_uses_rows():
    # A 3x3 conv of a 1-channel image, im2col-packed by the host into a 1x1 conv of
    # 9 channels: 2 K-tiles on 8 rows instead of 9 taps x 1 K-tile.
    packed = conv(in_h=28, in_w=28, in_c=9, out_c=8, tile_px=1024)
    plain = conv(in_h=28, in_w=28, in_c=1, out_c=8, kh=3, kw=3, pad_t=1, pad_l=1, pad_b=1, pad_r=1, tile_px=1024)
    a = cycles.estimate([packed], 8, 8).layers[0]
    b = cycles.estimate([plain], 8, 8).layers[0]
    assert a.macs == b.macs
    assert a.cycles == 2 * 784 + fixed(8, 8)
    assert b.cycles == 9 * 784 + fixed(8, 8)


def test_pipeline_depths_come_from_the_blocks():
    from hw.accumulator import ACC_LATENCY
    from hw.poolwrite import POOL_WRITE_LATENCY
    from hw.postproc import POST_LATENCY
    assert POST_PIPELINE == (ACC_LATENCY + POST_LATENCY + POOL_WRITE_LATENCY
                             + cycles.PACK_LATENCY) == 26


def test_maxpool_cycles():
    d = isa.Descriptor(op=isa.Opcode.MAXPOOL, in_h=8, in_w=8, in_c=10, out_h=3, out_w=3,
                       pool_k=3, pool_s=3)
    layer = cycles.estimate([d], 4, 4).layers[0]
    # 3 groups of 4 channels, 9 output pixels x 9 taps each (81 > OT_GAP(4) = 10).
    assert layer.cycles == 3 * 9 * 9 + fixed(4, 4)


def test_add_and_avgpool_cycles():
    add = isa.Descriptor(op=isa.Opcode.ADD, in_h=5, in_w=5, in_c=8, out_h=5, out_w=5,
                         tile_px=25)
    assert cycles.estimate([add], 4, 4).layers[0].cycles == 2 * 2 * 25 + fixed(4, 4)
    avg = isa.Descriptor(op=isa.Opcode.AVGPOOL, in_h=2, in_w=2, in_c=8, out_h=1, out_w=1)
    # 4 taps per group < OT_GAP(4): the groups start OT_GAP apart.
    assert cycles.estimate([avg], 4, 4).layers[0].cycles == OT_GAP(4) + 4 + fixed(4, 4)
