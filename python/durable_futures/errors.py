"""The exception hierarchy of durable-futures, keyed by the core's stable error codes.

The Rust core reports every failure as a numeric code plus a message that names the journal
entry involved. The PyO3 extension and the C ABI (used through cffi) both convert those
codes into the classes below with :func:`error_for_code`, so a journal mismatch is a
``durable_futures.errors.JournalMismatchError`` whichever binding raised it.

This module is plain Python: it does not import the compiled extension.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BAD_REQUEST",
    "CANCELLED",
    "CLOSED",
    "INTERNAL",
    "JOURNAL_MISMATCH",
    "PROTOCOL_VIOLATION",
    "SUSPENDED",
    "UNSUPPORTED_FEATURE",
    "UNSUPPORTED_MEDIA_TYPE",
    "BadRequestError",
    "ClosedError",
    "DurableError",
    "InternalError",
    "InvocationStateError",
    "JournalMismatchError",
    "NotReadyError",
    "ProtocolError",
    "StorageError",
    "SuspendedError",
    "TerminalError",
    "UnsupportedFeatureError",
    "UnknownInvocationError",
    "UnsupportedProtocolError",
    "error_for_code",
]

# The core's codes (rust/core/src/error.rs, `codes`); the C ABI returns the same numbers.
BAD_REQUEST = 400
CANCELLED = 409
UNSUPPORTED_MEDIA_TYPE = 415
INTERNAL = 500
JOURNAL_MISMATCH = 570
PROTOCOL_VIOLATION = 571
UNSUPPORTED_FEATURE = 573
CLOSED = 598
SUSPENDED = 599


class DurableError(Exception):
    """Base class of every error raised by durable-futures. ``code`` is the core's code."""

    code: int = INTERNAL

    def __init__(self, message: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" if self.message else f"[{self.code}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code})"


class TerminalError(DurableError):
    """Fails a handler or a run terminally: journaled, never retried.

    Raise it from handler code. Cancellation of the invocation surfaces as a
    ``TerminalError`` with code 409 (:data:`CANCELLED`).
    """

    def __init__(
        self,
        message: str,
        code: int = INTERNAL,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, code)
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def is_cancellation(self) -> bool:
        """Whether this is the cancellation of the invocation (code 409)."""
        return self.code == CANCELLED


class BadRequestError(DurableError, ValueError):
    """A bad argument (400): unknown handle, malformed awakeable id, invalid UTF-8, ..."""

    code = BAD_REQUEST


class UnsupportedProtocolError(DurableError):
    """The request's content type is not a supported protocol version (415)."""

    code = UNSUPPORTED_MEDIA_TYPE


class InternalError(DurableError):
    """An internal error of the core (500), including a Rust panic caught at the boundary."""

    code = INTERNAL


_MISMATCH = re.compile(
    r"at command index (?P<index>\d+): the journal recorded (?P<recorded>.*?), but the handler "
    r"now (?:attempts (?P<attempted>.*?)|(?P<other>ends before it|awaits .*?))"
    r"(?:, which differs in [^;]*)?; ",
    re.DOTALL,
)


class JournalMismatchError(DurableError):
    """The handler did not do what the journal recorded (570): non-determinism.

    The message names the command index, the recorded and the attempted command, in the
    handler's terms (``run "step-0"``, ``call Svc/handler``). ``command_index``,
    ``recorded`` and ``attempted`` carry them (``None`` where the message does not say);
    ``source`` is the handler's line that made the call, when known.
    """

    code = JOURNAL_MISMATCH

    def __init__(self, message: str = "", code: int | None = None) -> None:
        super().__init__(message, code)
        found = _MISMATCH.search(message)
        self.command_index: int | None = int(found["index"]) if found else None
        self.recorded: str | None = found["recorded"] if found else None
        self.attempted: str | None = (
            (found["attempted"] or found["other"]) if found else None
        )
        self.source: str | None = None

    @classmethod
    def from_vm(cls, error: Any, source: str | None = None) -> JournalMismatchError:
        """From the VM's error (``Vm.last_error()``), with the handler's line if known."""
        message = str(error.message)
        if source:
            message = f"{message} (at {source})"
        e = cls(message)
        if e.command_index is None and error.related_command_index is not None:
            e.command_index = int(error.related_command_index)
        e.source = source
        return e


class InvocationStateError(DurableError):
    """The invocation's state does not allow the operation (409): cancelling, killing,
    pausing or resuming a completed invocation, purging one that is not completed."""

    code = 409


class ProtocolError(DurableError):
    """The runtime broke the service protocol (571): bad frame, unexpected message, ..."""

    code = PROTOCOL_VIOLATION


class UnsupportedFeatureError(DurableError):
    """The feature needs a newer protocol version than the negotiated one (573)."""

    code = UNSUPPORTED_FEATURE


class ClosedError(DurableError):
    """The invocation attempt is closed (598): suspended, failed or ended."""

    code = CLOSED


class UnknownInvocationError(DurableError, LookupError):
    """No invocation with that id (404)."""

    code = 404


class NotReadyError(DurableError):
    """The invocation exists but has not completed yet (470, the status restate-server's
    ingress answers ``/output`` with then): ``LocalEngine.output`` raises it rather than
    wait; ``LocalEngine.attach`` waits."""

    code = 470


class StorageError(DurableError):
    """The embedded engine could not read or write its database (full disk, damaged or
    foreign file). Nothing that was acknowledged is lost."""

    code = 507


class SuspendedError(DurableError):
    """The attempt suspended (599); the driver unwinds the handler with it."""

    code = SUSPENDED


_BY_CODE: dict[int, type[DurableError]] = {
    BAD_REQUEST: BadRequestError,
    UNSUPPORTED_MEDIA_TYPE: UnsupportedProtocolError,
    INTERNAL: InternalError,
    JOURNAL_MISMATCH: JournalMismatchError,
    PROTOCOL_VIOLATION: ProtocolError,
    UNSUPPORTED_FEATURE: UnsupportedFeatureError,
    CLOSED: ClosedError,
    SUSPENDED: SuspendedError,
    404: UnknownInvocationError,
    507: StorageError,
}


def error_for_code(code: int, message: str = "") -> DurableError:
    """The exception for a core error code: the class registered for ``code``, a
    :class:`TerminalError` with code 409 for a cancellation, else a :class:`DurableError`
    carrying the code (a retryable failure with a code of the handler's choosing)."""
    if code == CANCELLED:
        return TerminalError(message, CANCELLED)
    cls = _BY_CODE.get(code)
    if cls is None:
        return DurableError(message, code)
    return cls(message)
