"""`rtl[:verilator|:icarus]`: the compiled network on the simulated accelerator RTL.

The accelerator's Verilog is built once per config (cached on disk), simulated with the
cocotb link server (`sim/rtl_server.py`), and driven over the same framed protocol and
host code as a board (`host.backends.board.BoardBackend`), so every output comes back
through the RTL's host link. Verilator is the default; Icarus is the reference
simulator (slower). Programs the RTL cannot run are refused before the build.
"""

from __future__ import annotations

from .. import rtl
from ..errors import BackendError
from .base import Backend
from .board import BoardBackend


class RtlBackend(Backend):
    """Runs a compiled program on `hw.Accelerator` in an RTL simulator."""

    def __init__(self, cm, simulator: str = "verilator", *, backpressure: int | None = None):
        rtl.check_program(cm.program, cm.config)
        self.name = f"rtl:{simulator}"
        self.simulation = rtl.RtlSimulation(cm.config, simulator, backpressure=backpressure)
        try:
            # Simulated time is slow: a frame of 1 KiB takes tens of milliseconds.
            self.board = BoardBackend(cm, self.simulation.url, response_timeout=30.0,
                                      attempts=2)
        except BaseException:
            self.simulation.close(timeout=5)
            raise

    @property
    def last_status(self):
        """The device STATUS after the last frame (cycle and MAC counters)."""
        return self.board.last_status

    def run_ints(self, x_int):
        return self.board.run_ints(x_int)

    def close(self) -> None:
        self.board.close()
        self.simulation.close()


def create(cm, arg: str) -> RtlBackend:
    simulator = arg or "verilator"
    if simulator not in rtl.SIMULATORS:
        raise BackendError(f"backend rtl:{arg}: unknown simulator; use rtl:verilator or "
                           "rtl:icarus")
    return RtlBackend(cm, simulator)
