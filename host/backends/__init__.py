"""Backends that run a compiled network: each turns int inputs into int outputs.

Every backend implements `Backend.run_ints(x_int) -> y_int` on a batch, and must give
exactly `cm.reference`'s integers. `create(cm, spec)` picks one by name.
"""

from __future__ import annotations

import logging

from ..errors import BackendError
from .base import Backend

log = logging.getLogger(__name__)

# Backend names and the modules implementing them.
_BACKENDS = {
    "sim": "host.backends.sim",
    "rtl": "host.backends.rtl",
    "torch": "host.backends.torch_backend",
    "board": "host.backends.board",
}


def names() -> list[str]:
    return list(_BACKENDS)


BOARD_ENV = "SAMOYED_BOARD"   # a pyserial URL `auto` tries first


def _board_candidates() -> list[str]:
    """Ports a board may answer on: $SAMOYED_BOARD, then USB serial ports."""
    import os
    candidates = [os.environ[BOARD_ENV]] if os.environ.get(BOARD_ENV) else []
    try:
        from serial.tools import list_ports
        candidates += [port.device for port in list_ports.comports() if port.vid is not None]
    except ImportError:  # pragma: no cover - pyserial is a dependency
        pass
    return candidates


def _auto(cm) -> tuple[str, str]:
    """A board if one answers, else CUDA, else the CPU; logs why each was skipped."""
    from .board import probe
    skipped = []
    for url in _board_candidates():
        reason = probe(url)
        if reason is None:
            log.info("backend auto: chose board:%s", url)
            return "board", url
        skipped.append(f"{url}: {reason}")
    boards = "; ".join(skipped) or f"no serial port found and ${BOARD_ENV} is not set"
    import torch
    if torch.cuda.is_available():
        log.info("backend auto: chose torch:cuda (no board: %s)", boards)
        return "torch", "cuda"
    log.info("backend auto: chose torch:cpu (no board: %s; CUDA is not available)", boards)
    return "torch", "cpu"


def create(cm, spec: str) -> Backend:
    """The backend named by `spec` ("sim", "rtl[:icarus]", "torch:cpu", "board:URL", "auto")."""
    name, _, arg = spec.partition(":")
    if name == "auto":
        name, arg = _auto(cm)
    module = _BACKENDS.get(name)
    if module is None:
        raise BackendError(f"unknown backend {spec!r}; choose one of: "
                           f"{', '.join(['auto', *_BACKENDS])}")
    import importlib
    return importlib.import_module(module).create(cm, arg)
