"""Reading the open-source flow's reports: Fmax and resource use from nextpnr's log."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FMAX = re.compile(r"Max frequency for clock\s+'(?P<clock>[^']+)':\s+(?P<fmax>[\d.]+) MHz "
                   r"\((?P<verdict>PASS|FAIL) at (?P<target>[\d.]+) MHz\)")
_UTIL = re.compile(r"Info:\s+(?P<cell>\w+):\s+(?P<used>\d+)/\s*(?P<total>\d+)\s+\d+%")

# nextpnr cell types that count as LUTs, flip-flops, DSPs and block RAMs, per family.
_RESOURCES = {
    "luts": ("TRELLIS_COMB", "ICESTORM_LC"),
    "ffs": ("TRELLIS_FF",),
    "dsps": ("MULT18X18D", "SB_MAC16", "ICESTORM_DSP"),
    "brams": ("DP16KD", "ICESTORM_RAM"),
}


@dataclass
class TimingReport:
    """Post-route timing and utilisation of one build."""

    clocks: dict = field(default_factory=dict)       # clock -> {fmax_mhz, target_mhz, met}
    utilisation: dict = field(default_factory=dict)  # cell type -> (used, total)

    @property
    def fmax_mhz(self) -> float | None:
        """The slowest clock's Fmax (the design's), or None without clocks."""
        return min((c["fmax_mhz"] for c in self.clocks.values()), default=None)

    @property
    def timing_met(self) -> bool:
        return bool(self.clocks) and all(c["met"] for c in self.clocks.values())

    def used(self, resource: str) -> int:
        """LUTs, flip-flops, DSPs or block RAMs used ("luts", "ffs", "dsps", "brams")."""
        return sum(self.utilisation.get(cell, (0, 0))[0] for cell in _RESOURCES[resource])


def parse_nextpnr(log: str) -> TimingReport:
    """The post-route figures of a nextpnr log: nextpnr prints timing after placement and
    again after routing; the last report of each clock is the routed one."""
    report = TimingReport()
    for match in _FMAX.finditer(log):
        report.clocks[match["clock"]] = {"fmax_mhz": float(match["fmax"]),
                                         "target_mhz": float(match["target"]),
                                         "met": match["verdict"] == "PASS"}
    section = log.split("Device utilisation:", 1)
    if len(section) == 2:
        for line in section[1].splitlines()[1:]:
            match = _UTIL.match(line.strip().replace("\t", " ")) or _UTIL.match(line)
            if match is None:
                break
            report.utilisation[match["cell"]] = (int(match["used"]), int(match["total"]))
    return report
