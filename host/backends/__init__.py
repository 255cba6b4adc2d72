"""Backends that run a compiled network: each turns int inputs into int outputs.

Every backend implements `Backend.run_ints(x_int) -> y_int` on a batch, and must give
exactly `cm.reference`'s integers. `create(cm, spec)` picks one by name.
"""

from __future__ import annotations

import logging

from ..errors import BackendError
from .base import Backend

log = logging.getLogger(__name__)

# Backend names and the modules implementing them; later issues add rtl, torch, board.
_BACKENDS = {
    "sim": "host.backends.sim",
    "torch": "host.backends.torch_backend",
    "board": "host.backends.board",
}


def names() -> list[str]:
    return list(_BACKENDS)


def _auto() -> tuple[str, str]:
    """A board if one answers (not yet probed: issue 6), else CUDA, else the CPU."""
    import torch
    if torch.cuda.is_available():
        log.info("backend auto: chose torch:cuda (no board backend yet)")
        return "torch", "cuda"
    log.info("backend auto: chose torch:cpu (no board backend yet; CUDA is not available)")
    return "torch", "cpu"


def create(cm, spec: str) -> Backend:
    """The backend named by `spec` ("sim", later "rtl", "torch:cpu", "board:URL", "auto")."""
    name, _, arg = spec.partition(":")
    if name == "auto":
        name, arg = _auto()
    module = _BACKENDS.get(name)
    if module is None:
        raise BackendError(f"unknown backend {spec!r}; choose one of: "
                           f"{', '.join(['auto', *_BACKENDS])}")
    import importlib
    return importlib.import_module(module).create(cm, arg)
