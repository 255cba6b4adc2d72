"""Errors the host side raises for user mistakes; the CLI maps them to exit codes."""


class HostError(RuntimeError):
    """Base class of user-facing host errors."""


class UsageError(HostError):
    """A command-line argument is not valid."""


class LinkError(HostError):
    """Something went wrong on the host link (framing, a refusal, a mismatched answer)."""


class RequestError(LinkError):
    """A request cannot be encoded: a field is out of range for the protocol."""


class FrameError(LinkError):
    """Received bytes do not form a valid frame; the host resends with the same seq."""


class BadCrcError(FrameError):
    """A frame's CRC32 does not match its bytes."""


class FrameLengthError(FrameError):
    """A frame header claims a payload longer than the protocol allows."""


class TruncatedFrameError(FrameError):
    """A frame stopped arriving before its last byte."""


class NakError(LinkError):
    """The device answered a request with NAK; ``code`` is the :class:`host.protocol.NakCode`."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class ResponseError(LinkError):
    """A verified response does not answer the request it was read for."""


class NoResponseError(LinkError):
    """No verified answer to a request arrived after every allowed attempt."""


class LinkLostError(LinkError):
    """The port went away (a closed socket, an unplugged adapter) and could not be reopened."""


class WatchdogError(LinkError):
    """The device aborted a run because it exceeded its watchdog limit."""


class BackendError(HostError):
    """A backend is unknown, unavailable, or was given input it cannot run."""
