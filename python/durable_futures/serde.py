"""Serialization of handler inputs and outputs, run results and awakeable values.

JSON by default, driven by type hints: primitives, lists and dicts, dataclasses (nested),
``TypedDict`` and, when pydantic is installed, pydantic models. ``bytes`` is passed through
raw, which is how a handler opts out of JSON.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from .errors import TerminalError

__all__ = ["BytesSerde", "JsonSerde", "Serde", "serde_for"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Serde(Protocol[T]):
    """Turns values into bytes and back."""

    content_type: str

    def serialize(self, value: T) -> bytes: ...

    def deserialize(self, data: bytes) -> T: ...


class BytesSerde:
    """Raw bytes, unchanged."""

    content_type = "application/octet-stream"

    def serialize(self, value: bytes) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes, got {type(value).__name__}")
        return bytes(value)

    def deserialize(self, data: bytes) -> bytes:
        return data


_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# One encoder for every value (``json.dumps`` with options builds a new one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_ENCODE_STR: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _loads(data: bytes) -> Any:
    """``json.loads`` without its per-call overhead (encoding detection, keyword handling),
    which dominates for the small values a replay decodes by the thousand."""
    text = data.decode()
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the proper error (or handles leading space)
    if end != len(text):
        return json.loads(text)
    return value


def _is_pydantic(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "model_validate") and hasattr(tp, "model_dump")


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    """A type hint as a user writes it: ``int | None`` for both spellings of an optional
    ``int``, ``list[int]`` for ``typing.List[int]``."""
    if tp is type(None) or tp is None:
        return "None"
    if tp is Ellipsis:
        return "..."
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(a) for a in args)
    if origin is not None and args:
        return f"{_type_name(origin)}[{', '.join(_type_name(a) for a in args)}]"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _from_jsonable(tp: Any, data: Any) -> Any:
    if tp is Any or tp is None or tp is object:
        return data
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        last: Exception | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_jsonable(arg, data)
            except (TypeError, ValueError) as e:
                last = e
        raise ValueError(f"{data!r} matches none of {_type_name(tp)}") from last
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        return [_from_jsonable(item, v) for v in data]
    if origin in (dict, typing.Dict):  # noqa: UP006
        args = typing.get_args(tp)
        value_tp = args[1] if len(args) == 2 else Any
        if not isinstance(data, dict):
            raise ValueError(f"expected an object, got {type(data).__name__}")
        return {k: _from_jsonable(value_tp, v) for k, v in data.items()}
    if origin is tuple:
        # JSON has no tuples: a list, with each item decoded as its position's type (a
        # string or an object would otherwise become a tuple of characters or keys).
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_jsonable(args[0], v) for v in data)
        if args and args != ((),):
            if len(args) != len(data):
                raise ValueError(f"expected {len(args)} items, got {len(data)}")
            return tuple(_from_jsonable(a, v) for a, v in zip(args, data, strict=True))
        return tuple(data)
    if _is_pydantic(tp):
        return tp.model_validate(data)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {tp.__name__}, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _from_jsonable(hints.get(f.name, Any), data[f.name])
        return tp(**kwargs)
    if typing.is_typeddict(tp):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {tp.__name__}, got {type(data).__name__}")
        return data
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if isinstance(tp, type) and tp in (int, str, bool, float, list, dict):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ValueError(f"expected {tp.__name__}, got {type(data).__name__}")
        return data
    return data


class JsonSerde(Generic[T]):
    """JSON, decoded into ``type_`` (dataclasses, TypedDict, pydantic models, primitives)."""

    content_type = "application/json"

    def __init__(self, type_: Any = Any) -> None:
        self.type_ = type_

    def serialize(self, value: T) -> bytes:
        # Exact ints and strings (most run results) skip the encoder; the bytes are the same.
        if type(value) is int:
            return str(value).encode()
        if type(value) is str:
            return _ENCODE_STR(value).encode()
        return _ENCODE(_to_jsonable(value)).encode()

    def deserialize(self, data: bytes) -> T:
        if not data:
            return None  # type: ignore[return-value]
        try:
            raw = _loads(data)
            tp = self.type_
            if tp is Any or (type(raw) is tp and tp is not bool):
                return typing.cast(T, raw)
            return typing.cast(T, _from_jsonable(tp, raw))
        except (ValueError, TypeError) as e:
            raise TerminalError(
                f"cannot decode {data[:200]!r} as {_type_name(self.type_)}: {e}",
                400,
            ) from e


_ANY_JSON: JsonSerde[Any] = JsonSerde()


_BYTES = BytesSerde()
_SERDES: dict[Any, JsonSerde[Any]] = {}


def serde_for(type_: Any) -> Serde[Any]:
    """The serde for a type hint: raw for ``bytes``, JSON otherwise. Serdes hold no state
    but their type, so one per (hashable) type is shared."""
    if type_ is bytes:
        return _BYTES
    if type_ is Any or type_ is None or type_ is dataclasses.MISSING:
        return _ANY_JSON
    try:
        return _SERDES[type_]
    except KeyError:
        serde = _SERDES[type_] = JsonSerde(type_)
        return serde
    except TypeError:  # an unhashable type hint
        return JsonSerde(type_)
