"""samoyed compiler: Brevitas network or QONNX file → `CompiledModel`.

    cm = compiler.compile(net, input_shape=(1, 28, 28), config=hw.AcceleratorConfig())
    cm = compiler.compile("net.onnx")
    y = cm.reference(cm.quantize_input(images))
    cm.save("net.samoyed"); cm = compiler.load("net.samoyed")
"""

from __future__ import annotations

from .compiled import CompiledModel, LayerInfo
from .errors import (AccumulatorOverflowError, ArtifactError, ArtifactHashError,
                     ArtifactVersionError, CompileError, IRError, ShapeError,
                     TruncatedArtifactError, UnsupportedError)
from .driver import compile, frontend, load

__all__ = ["compile", "load", "frontend", "CompiledModel", "LayerInfo", "CompileError",
           "UnsupportedError", "ShapeError", "AccumulatorOverflowError", "IRError",
           "ArtifactError", "TruncatedArtifactError", "ArtifactHashError",
           "ArtifactVersionError"]
