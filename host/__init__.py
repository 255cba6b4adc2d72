"""Host side of samoyed: the runtime Session, transports, the CLI and reports."""


def __getattr__(name):
    # Session pulls in the compiler and simulators: import it only when asked for.
    if name in ("Session", "Result"):
        from . import session
        return getattr(session, name)
    raise AttributeError(f"module 'host' has no attribute {name!r}")
