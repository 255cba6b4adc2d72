"""AcceleratorConfig: validation names the field, JSON round trip, derived parameters."""

import pytest

from hw import AcceleratorConfig, ConfigError, derive


def test_json_round_trip():
    cfg = AcceleratorConfig(rows=4, cols=16, act_depth=2048, clock_mhz=125.0)
    assert AcceleratorConfig.from_json(cfg.to_json()) == cfg
    assert AcceleratorConfig.parse("16x4", acc_depth=256) == AcceleratorConfig(
        rows=16, cols=4, acc_depth=256)
    assert cfg.label == "4x16"


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=0), "rows must be an integer from 1 to 64, not 0"),
    (dict(cols=True), "cols must be an integer from 1 to 64, not True"),
    (dict(acc_depth=5000), "acc_depth must be an integer from 1 to 4096, not 5000"),
    (dict(param_depth=1 << 15), "param_depth must be an integer from 16 to 16384"),
    (dict(data_bits=4), "data_bits must be 8"),
    (dict(clock_mhz=0), r"clock_mhz must be a number in \(0, 1000\], not 0"),
    (dict(rows=6, weight_load_rows=4), r"weight_load_rows must divide rows=6, not 4; use one "
                                       r"of 1, 2, 3, 6 \(or None: 6\)"),
    (dict(program_beat_bytes=3), r"program_beat_bytes must be 1, 2, 4, 8, 16 or 32 \(a "
                                 r"divisor of the 32-byte descriptor\), not 3"),
    (dict(ram_delays=1), "ram_delays must be True or False, not 1"),
    (dict(compact_link="yes"), "compact_link must be True or False, not 'yes'"),
    (dict(compact_post=0), "compact_post must be True or False, not 0"),
    (dict(compact_feeder=None), "compact_feeder must be True or False, not None"),
    (dict(standalone_pool=1), "standalone_pool must be True or False, not 1"),
])
def test_invalid_fields_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AcceleratorConfig(**kwargs)


def test_bad_text_and_keys():
    with pytest.raises(ConfigError, match="config '8by8' is not ROWSxCOLS, e.g. 8x8"):
        AcceleratorConfig.parse("8by8")
    with pytest.raises(ConfigError, match=r"unknown accelerator config keys \['lanes'\]"):
        AcceleratorConfig.from_dict({"rows": 8, "lanes": 2})


def test_derived_sizes():
    d = derive(AcceleratorConfig(rows=8, cols=8))
    assert d.act_width == 9 and d.weight_width == 8
    assert d.act_bytes == 4096 * 8 and d.weight_bytes == 16384 * 8
    assert d.param_bytes == 1024 * 16 and d.program_bytes == 64 * 32
    assert d.acc_bytes == 2 * 512 * 8 * 4
    assert {space.name: size for space, size in d.space_sizes.items()} == {
        "ACTIVATIONS": d.act_bytes, "WEIGHTS": d.weight_bytes, "PARAMS": d.param_bytes,
        "PROGRAM": d.program_bytes}
    assert d.macs_per_cycle == 64


def test_reductions_default_off_and_round_trip():
    """The iCE40 reductions are off by default (the full design) and survive JSON."""
    cfg = AcceleratorConfig(rows=1, cols=1, program_beat_bytes=2, ram_delays=True,
                            serial_size=True, compact_link=True, compact_post=True,
                            compact_feeder=True, standalone_pool=True)
    assert AcceleratorConfig.from_json(cfg.to_json()) == cfg
    full = AcceleratorConfig()
    assert (full.program_beat_bytes, full.ram_delays, full.serial_size, full.compact_link,
            full.compact_post, full.compact_feeder, full.standalone_pool) == (
                32, False, False, False, False, False, False)
    # the host sees the same memory spaces: the program space is still 32 bytes a descriptor
    assert derive(cfg).program_bytes == derive(AcceleratorConfig(rows=1, cols=1)).program_bytes
