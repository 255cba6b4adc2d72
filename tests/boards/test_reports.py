"""nextpnr log parsing on a recorded log (a UART loopback built for the ULX3S-85F)."""

from pathlib import Path

from boards.reports import parse_nextpnr

LOG = (Path(__file__).parent / "data" / "ulx3s-85f-uart-loopback.tim").read_text()


def test_post_route_fmax_and_utilisation():
    report = parse_nextpnr(LOG)
    # The log reports the clock twice (after placement: 247.16 MHz, after routing).
    assert report.clocks == {"$glbnet$cd_sync.clk": {"fmax_mhz": 257.47, "target_mhz": 25.0,
                                                     "met": True}}
    assert report.fmax_mhz == 257.47 and report.timing_met
    assert report.utilisation["TRELLIS_FF"] == (49, 83640)
    assert report.utilisation["DP16KD"] == (0, 208)
    assert (report.used("luts"), report.used("ffs"), report.used("dsps"),
            report.used("brams")) == (74, 49, 0, 0)


def test_failed_timing_and_empty_log():
    failing = LOG.replace("257.47 MHz (PASS at 25.00 MHz)", "20.10 MHz (FAIL at 25.00 MHz)")
    report = parse_nextpnr(failing)
    assert report.fmax_mhz == 20.10 and not report.timing_met
    empty = parse_nextpnr("")
    assert empty.fmax_mhz is None and not empty.timing_met and empty.used("luts") == 0


def test_ice40_counts():
    """The iCEBreaker 1x1's log (an excerpt of hw 680b873's build at 18 MHz): LCs, the
    SB_MAC16s as nextpnr names them (ICESTORM_DSP), block RAMs; no separate flip-flops."""
    report = parse_nextpnr((Path(__file__).parent / "data"
                            / "icebreaker-1x1-excerpt.tim").read_text())
    assert report.fmax_mhz == 22.04 and report.timing_met
    assert (report.used("luts"), report.used("ffs"), report.used("dsps"),
            report.used("brams")) == (5196, 0, 8, 19)
