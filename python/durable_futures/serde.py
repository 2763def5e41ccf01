"""Serialization of handler inputs and outputs, run results and awakeable values.

JSON by default, driven by type hints: primitives, lists, tuples, sets and dicts,
dataclasses and ``TypedDict`` (nested), ``Literal`` (checked), enums (by value),
``datetime``/``date``/``time`` (ISO 8601 strings), ``timedelta`` (seconds), ``UUID`` and
``Decimal`` (strings) and, when pydantic is installed, pydantic models. ``bytes`` is passed
through raw, which is how a handler opts out of JSON.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import types
import typing
import uuid
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
    if data.isdigit() and (data[0] != 48 or len(data) == 1):  # a natural number (no "01")
        return int(data)
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


#: Values JSON carries as they are (exact types: ``bool`` is not ``int`` here, enums are not).
_PLAIN_VALUES = frozenset({int, str, float, bool, type(None)})
#: Types written as strings, and how a string is read back into each.
_FROM_STRING: dict[type, Callable[[str], Any]] = {
    datetime.datetime: datetime.datetime.fromisoformat,
    datetime.date: datetime.date.fromisoformat,
    datetime.time: datetime.time.fromisoformat,
    uuid.UUID: uuid.UUID,
    decimal.Decimal: decimal.Decimal,
}

#: Type hints whose JSON value is checked, not converted.
_PLAIN_TYPES = (int, str, bool, float, list, dict)


def _to_jsonable(value: Any) -> Any:
    if type(value) in _PLAIN_VALUES:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {_key(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return _to_jsonable(value.value)
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        items = [_to_jsonable(v) for v in value]
        try:  # a set's order changes between processes: sorted, the bytes do not
            return sorted(items)
        except TypeError:
            return items
    return value


def _key(key: Any) -> Any:
    """An object key: strings (and what the encoder takes as keys) as they are, a UUID, a
    date or an enum as its JSON form."""
    if type(key) is str:
        return key
    return _to_jsonable(key)


def _from_string(tp: type, data: Any) -> Any:
    if not isinstance(data, str):
        raise ValueError(f"expected {tp.__name__} as a string, got {type(data).__name__}")
    try:
        return _FROM_STRING[tp](data)
    except decimal.InvalidOperation:  # an ArithmeticError, not a ValueError
        raise ValueError(f"invalid Decimal {data!r}") from None


def _from_number(tp: type, data: Any) -> Any:
    if tp is decimal.Decimal:
        if isinstance(data, str):
            return _from_string(tp, data)
        if isinstance(data, int) and not isinstance(data, bool):
            return decimal.Decimal(data)
        if isinstance(data, float):
            return decimal.Decimal(repr(data))  # the number as written, not its binary form
        raise ValueError(f"expected Decimal as a string, got {type(data).__name__}")
    # timedelta: seconds
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return datetime.timedelta(seconds=data)
    raise ValueError(f"expected timedelta as seconds, got {type(data).__name__}")


def _enum_key(tp: type[enum.Enum], key: str) -> enum.Enum:
    """An enum member from an object key: its value, or its value as the encoder wrote it
    (``"1"`` for ``1``)."""
    for member in tp:
        if member.value == key or _ENCODE(member.value).strip('"') == key:
            return member
    raise ValueError(f"{key!r} is not a value of {tp.__name__}")


def _from_literal(tp: Any, data: Any) -> Any:
    for allowed in typing.get_args(tp):
        if isinstance(allowed, enum.Enum):
            if allowed.value == data and type(allowed.value) is type(data):
                return allowed
        elif data == allowed and type(data) is type(allowed):  # True is not Literal[1]
            return data
    raise ValueError(f"{data!r} is not one of {_type_name(tp)}")


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
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None and args:
        return f"{_type_name(origin)}[{', '.join(_type_name(a) for a in args)}]"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _from_jsonable(tp: Any, data: Any) -> Any:
    if tp is Any or tp is None or tp is object:
        return data
    if type(tp) is type and tp in _PLAIN_TYPES:  # the common case first (list[int] items)
        if tp is float and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ValueError(f"expected {tp.__name__}, got {type(data).__name__}")
        return data
    if type(tp) is type and tp in _FROM_STRING:
        return _from_number(tp, data) if tp is decimal.Decimal else _from_string(tp, data)
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
        key_tp = args[0] if len(args) == 2 else Any
        if type(key_tp) is type and key_tp in _FROM_STRING:
            # keys written from UUIDs, dates, ... (object keys are always strings)
            return {_from_string(key_tp, k): _from_jsonable(value_tp, v) for k, v in data.items()}
        if isinstance(key_tp, type) and issubclass(key_tp, enum.Enum):
            return {_enum_key(key_tp, k): _from_jsonable(value_tp, v) for k, v in data.items()}
        return {k: _from_jsonable(value_tp, v) for k, v in data.items()}
    if origin in (set, frozenset, typing.Set, typing.FrozenSet):  # noqa: UP006
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        collection = frozenset if origin in (frozenset, typing.FrozenSet) else set  # noqa: UP006
        return collection(_from_jsonable(item, v) for v in data)
    if origin is typing.Literal:
        return _from_literal(tp, data)
    if origin is typing.Annotated:
        return _from_jsonable(typing.get_args(tp)[0], data)
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
    if tp in (tuple, set, frozenset):
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        return tp(data)
    if tp is datetime.timedelta:
        return _from_number(tp, data)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise ValueError(f"{data!r} is not a value of {tp.__name__}") from None
    if _is_pydantic(tp):
        return tp.model_validate(data)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {tp.__name__}, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            # A field outside __init__ (init=False) is written but set by the class itself:
            # read back, it is ignored like any unknown key.
            if f.init and f.name in data:
                kwargs[f.name] = _from_jsonable(hints.get(f.name, Any), data[f.name])
        return tp(**kwargs)
    if typing.is_typeddict(tp):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {tp.__name__}, got {type(data).__name__}")
        try:
            hints = typing.get_type_hints(tp)
        except NameError:  # hints naming what is out of reach: the object unchecked, as it was
            return data
        return {k: _from_jsonable(hints.get(k, Any), v) for k, v in data.items()}
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
            # A natural number (most run results) without _loads' call; "01" is not one.
            if data.isdigit() and (data[0] != 48 or len(data) == 1):
                raw: Any = int(data)
            else:
                raw = _loads(data)
            tp = self.type_
            if tp is Any or (type(raw) is tp and tp is not bool):
                return raw  # type: ignore[no-any-return]
            return _from_jsonable(tp, raw)  # type: ignore[no-any-return]
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
