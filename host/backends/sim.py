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
        self.last_run = None

    def run_ints(self, x_int: np.ndarray) -> np.ndarray:
        outputs = []
        for frame in x_int:
            image = self.program.image.copy()
            self.program.load_input(image.act, frame)
            machine.run(image)
            outputs.append(self.program.read_output(image.act))
        return np.stack(outputs)


def create(cm, arg: str) -> SimBackend:
    if arg:
        raise BackendError(f"backend sim takes no argument, not {arg!r}")
    return SimBackend(cm)
