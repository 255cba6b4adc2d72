"""Errors a user can cause in `models`: each message names the bad value and the fix."""


class ModelsError(ValueError):
    """Base class of user-facing errors raised by the models package."""


class DataError(ModelsError):
    """A data set is unknown, missing or malformed."""


class ZooError(ModelsError):
    """A model name or its arguments are not valid."""
