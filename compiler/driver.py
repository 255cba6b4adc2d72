"""`compile` and `load`: pick the frontend, run the passes, wrap the result."""

from __future__ import annotations

import os
from pathlib import Path

from hw.config import AcceleratorConfig

from . import ir, passes
from .compiled import CompiledModel
from .errors import CompileError, ShapeError


def frontend(source, input_shape=None) -> ir.Graph:
    """The raw IR of a Brevitas module or a QONNX file path."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise CompileError(f"no such QONNX file: {str(path)!r}")
        from .frontend_qonnx import from_onnx
        return from_onnx(path, input_shape)
    import torch
    if not isinstance(source, torch.nn.Module):
        raise CompileError(f"compile takes a Brevitas nn.Module or a .onnx path, not "
                           f"{type(source).__name__}")
    if input_shape is None:
        zoo_name = getattr(source, "zoo_name", None)
        if zoo_name is None:
            raise ShapeError("input_shape is required for a network that is not from the zoo, "
                             "e.g. input_shape=(1, 28, 28)")
        from models import zoo
        input_shape = zoo.info(zoo_name).input_shape
    input_shape = _check_shape(input_shape)
    from .frontend_brevitas import from_module
    return from_module(source, input_shape)


def _check_shape(shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ShapeError(f"input_shape must be a tuple like (C, H, W), not {shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ShapeError(f"input_shape must be positive sizes without the batch axis, "
                         f"not {shape}")
    return shape


def compile(source, input_shape=None, config: AcceleratorConfig | None = None,
            check: bool = False, k_pack: bool = True) -> CompiledModel:  # noqa: A001
    """Compile a Brevitas network or QONNX file into a `CompiledModel`.

    `input_shape` is per sample (C, H, W) (default: the zoo's, or the ONNX graph's);
    `check` verifies the IR after every pass. `k_pack=False` keeps the first convolution
    as it is, so the host sends the plain image instead of its im2col packing: more
    cycles, fewer link bytes (`CompiledModel.k_pack`).
    """
    config = config or AcceleratorConfig()
    if not isinstance(config, AcceleratorConfig):
        raise CompileError(f"config must be an hw.AcceleratorConfig, not {type(config).__name__}")
    raw = frontend(source, input_shape)
    if check:
        ir.verify(raw)
    graph = passes.lower(raw, check=check)
    kind = "qonnx" if isinstance(source, (str, os.PathLike)) else "brevitas"
    if not isinstance(k_pack, bool):
        raise CompileError(f"k_pack must be True or False, not {k_pack!r}")
    return CompiledModel(graph, config, name=graph.name, source=kind, k_pack=k_pack)


def load(path) -> CompiledModel:
    """Read a `.samoyed` file written by `CompiledModel.save`."""
    from .artifact import load as _load
    return _load(path)
