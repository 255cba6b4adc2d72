"""The interface every backend implements."""

from __future__ import annotations

import abc

import numpy as np


class Backend(abc.ABC):
    """Runs one compiled network on integers."""

    name: str = "backend"

    @abc.abstractmethod
    def run_ints(self, x_int: np.ndarray) -> np.ndarray:
        """Integer outputs (N, ...) for quantized inputs (N, *input_shape)."""

    def close(self) -> None:
        """Release whatever the backend holds (ports, simulators)."""
