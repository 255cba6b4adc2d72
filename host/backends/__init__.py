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
}


def names() -> list[str]:
    return list(_BACKENDS)


def create(cm, spec: str) -> Backend:
    """The backend named by `spec` ("sim", later "rtl", "torch:cpu", "board:URL", "auto")."""
    name, _, arg = spec.partition(":")
    if name == "auto":
        # Only the program simulator exists so far; the board/GPU probes join it later.
        log.info("backend auto: chose sim (no board or torch backend is available yet)")
        name, arg = "sim", ""
    module = _BACKENDS.get(name)
    if module is None:
        raise BackendError(f"unknown backend {spec!r}; choose one of: "
                           f"{', '.join(['auto', *_BACKENDS])}")
    import importlib
    return importlib.import_module(module).create(cm, arg)
