"""samoyed hw package: the accelerator's configuration and (in submodules) its RTL.

Only light things are imported here; Amaranth modules load when their submodule is
imported, or on first use of `hw.Accelerator`.
"""

from .config import AcceleratorConfig, ConfigError, Derived, derive

__all__ = ["Accelerator", "AcceleratorConfig", "ConfigError", "Derived", "derive"]


def __getattr__(name):
    if name == "Accelerator":
        from .accelerator import Accelerator
        return Accelerator
    raise AttributeError(f"module 'hw' has no attribute {name!r}")
