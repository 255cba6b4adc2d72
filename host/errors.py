"""Errors the host side raises for user mistakes; the CLI maps them to exit codes."""


class HostError(RuntimeError):
    """Base class of user-facing host errors."""


class UsageError(HostError):
    """A command-line argument is not valid."""
