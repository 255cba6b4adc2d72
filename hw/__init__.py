"""samoyed hw package: the accelerator's configuration and (in submodules) its RTL.

Only light things are imported here; Amaranth modules load when their submodule is
imported.
"""

from .config import AcceleratorConfig, ConfigError, Derived, derive

__all__ = ["AcceleratorConfig", "ConfigError", "Derived", "derive"]
