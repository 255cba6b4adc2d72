"""`sim`: the program simulator (`sim/machine.py`) running the compiled program."""

from __future__ import annotations

import numpy as np

from sim import machine

from ..errors import BackendError
from .base import Backend


class SimBackend(Backend):
    """Executes the descriptors over the memory image, one frame at a time."""

    name = "sim"

    def __init__(self, cm):
        self.program = cm.program

    def run_ints(self, x_int: np.ndarray) -> np.ndarray:
        return machine.run_frames(self.program, x_int)


def create(cm, arg: str) -> SimBackend:
    if arg:
        raise BackendError(f"backend sim takes no argument, not {arg!r}")
    return SimBackend(cm)
