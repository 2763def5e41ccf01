"""Reading service-protocol frames in tests: the compiled core's decoder
(``_core.decode_frames``, typed ``Message`` objects) and a few helpers over its messages."""

from __future__ import annotations

from durable_futures import _core
from durable_futures._core import Message as Frame

__all__ = ["Frame", "encode_frame", "error_of", "frames", "output_value"]

#: A frame with any type code and an opaque payload: for malformed input only.
encode_frame = _core.encode_frame


def frames(data: bytes) -> list[Frame]:
    """Every frame of a stream (a response body), decoded."""
    return _core.decode_frames(data)


def output_value(fs: list[Frame]) -> bytes | None:
    """The value bytes of the OutputCommand, if any (``None`` for a failure)."""
    for f in fs:
        if f.type_name == "OutputCommand":
            return f.value
    return None


def error_of(fs: list[Frame]) -> tuple[int, str, int | None] | None:
    """``(code, message, related command index)`` of the ErrorMessage, if any."""
    for f in fs:
        if f.type_name == "Error":
            return f.code, f.message, f.related_command_index
    return None
