"""Errors the compiler raises for networks, files and arguments it cannot accept.

All are `ValueError`s: they describe a problem with what the user gave, name the layer or
value at fault and say what is supported. `assert` is kept for the compiler's own
invariants.
"""

from __future__ import annotations


class CompileError(ValueError):
    """Base class of user-facing compiler errors."""


class UnsupportedError(CompileError):
    """A module, ONNX node or quantizer setting the compiler does not support."""


class ShapeError(CompileError):
    """A tensor shape does not match what a layer or `input_shape` says."""


class AccumulatorOverflowError(CompileError):
    """A layer's int32 accumulator could overflow for some input."""


class IRError(CompileError):
    """The IR verifier found an inconsistent graph (a frontend or pass bug, or a bad file)."""


class ArtifactError(CompileError):
    """A `.samoyed` file cannot be loaded."""


class TruncatedArtifactError(ArtifactError):
    """The file is not a complete zip archive (cut short or not a .samoyed file)."""


class ArtifactHashError(ArtifactError):
    """An array's sha256 does not match the manifest (the file was altered)."""


class ArtifactVersionError(ArtifactError):
    """The file's format version is not one this samoyed reads."""
