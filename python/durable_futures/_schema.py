"""JSON schemas (draft 2020-12) of handler inputs and outputs, from their type hints.

A schema describes the JSON that :mod:`.serde` reads for the type (``mode="input"``) or
writes for it (``mode="output"``); the two differ where serde accepts more than it writes:
a ``Decimal`` is written as a string and read from a string or a number, a dataclass field
that is not an ``__init__`` parameter is written but not read back. Types serde passes
through unchecked get ``{}`` (any value). Dataclasses, ``TypedDict`` and pydantic models are
objects with their fields as properties; one used more than once, or recursively, is a
``$ref`` into ``$defs``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import json
import types
import typing
import uuid
from typing import Any, Literal

from .serde import _is_pydantic, _to_jsonable

__all__ = ["Mode", "json_schema"]

Mode = Literal["input", "output"]

_REF = "#/$defs/"

#: Types with one schema, exact (a subclass of ``str`` is not a ``str`` to serde).
_SIMPLE: dict[Any, dict[str, Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},  # serde reads an integer as a float too
    str: {"type": "string"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    dict: {"type": "object"},
    set: {"type": "array", "uniqueItems": True},
    frozenset: {"type": "array", "uniqueItems": True},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    datetime.timedelta: {"type": "number", "description": "a duration in seconds"},
}

#: Object keys serde converts from strings (``dict[UUID, V]``, ...): their string form.
_STRING_KEYS = (datetime.datetime, datetime.date, datetime.time, uuid.UUID)


def json_schema(tp: Any, mode: Mode = "input") -> dict[str, Any]:
    """The JSON schema of the values serde reads (``"input"``) or writes (``"output"``) for
    type hint ``tp``."""
    if mode not in ("input", "output"):
        raise ValueError(f"mode must be 'input' or 'output', not {mode!r}")
    return _Builder(mode).build(tp)


class _Builder:
    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.defs: dict[str, dict[str, Any]] = {}
        # Our own named types (dataclasses, TypedDicts, models): type -> name in $defs.
        self.names: dict[Any, str] = {}
        self.uses: collections.Counter[str] = collections.Counter()

    def build(self, tp: Any) -> dict[str, Any]:
        root = self.schema(tp)
        # A named type used once is written where it is used rather than behind a $ref.
        once = {name for name in self.names.values() if self.uses[name] == 1}
        root = _inline(root, {name: self.defs[name] for name in once})
        defs = {
            name: _inline(schema, {n: self.defs[n] for n in once})
            for name, schema in self.defs.items()
            if name not in once
        }
        if defs:
            root = {**root, "$defs": defs}
        return root

    def schema(self, tp: Any) -> dict[str, Any]:
        if tp is Any or tp is object or tp is dataclasses.MISSING:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            return self.schema(args[0])
        if origin is typing.Union or origin is types.UnionType:
            members = [self.schema(a) for a in args]
            return {} if {} in members else {"anyOf": members}
        if origin is typing.Literal:
            values = [_to_jsonable(a) for a in args]
            return {"const": values[0]} if len(values) == 1 else {"enum": values}
        if origin in (list, set, frozenset):
            out: dict[str, Any] = {"type": "array"}
            if args:
                out["items"] = self.schema(args[0])
            if origin is not list:
                out["uniqueItems"] = True
            return out
        if origin is tuple:
            return self._tuple(args)
        if origin is dict:
            return self._dict(args)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"title": tp.__name__, "enum": [_to_jsonable(m.value) for m in tp]}
        if tp is decimal.Decimal:
            # Written as a string (no precision lost); read from a string or a number.
            return {"type": ["string", "number"]} if self.mode == "input" else {"type": "string"}
        try:
            simple = _SIMPLE.get(tp)
        except TypeError:  # an unhashable hint
            simple = None
        if simple is not None:
            return dict(simple)
        if _is_pydantic(tp) or (dataclasses.is_dataclass(tp) and isinstance(tp, type)):
            return self._named(tp)
        if typing.is_typeddict(tp):
            return self._named(tp)
        return {}

    def _tuple(self, args: tuple[Any, ...]) -> dict[str, Any]:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": self.schema(args[0])}
        if not args or args == ((),):
            return {"type": "array"}  # serde reads any list for tuple[()]
        return {
            "type": "array",
            "prefixItems": [self.schema(a) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }

    def _dict(self, args: tuple[Any, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        if len(args) != 2:
            return out
        key_tp, value_tp = args
        if key_tp in _STRING_KEYS:
            out["propertyNames"] = self.schema(key_tp)
        elif isinstance(key_tp, type) and issubclass(key_tp, enum.Enum):
            values = [m.value for m in key_tp]
            if all(isinstance(v, str) for v in values):
                out["propertyNames"] = {"enum": values}
        values_schema = self.schema(value_tp)
        if values_schema:
            out["additionalProperties"] = values_schema
        return out

    def _named(self, tp: type) -> dict[str, Any]:
        """A ``$ref`` to the type's schema in ``$defs``, made on first use (so that a type
        naming itself refers to its own definition)."""
        name = self.names.get(tp)
        if name is None:
            name = self._free_name(tp.__name__)
            self.names[tp] = name
            self.defs[name] = {}  # reserved while its fields are built
            self.defs[name] = self._object(tp)
        self.uses[name] += 1
        return {"$ref": _REF + name}

    def _free_name(self, name: str) -> str:
        taken = set(self.defs)
        if name not in taken:
            return name
        n = 2
        while f"{name}{n}" in taken:
            n += 1
        return f"{name}{n}"

    def _object(self, tp: type) -> dict[str, Any]:
        if _is_pydantic(tp):
            return self._pydantic(tp)
        try:
            hints = typing.get_type_hints(tp)
        except Exception:  # noqa: BLE001 - hints naming what is out of reach: any object
            return {"type": "object", "title": tp.__name__}
        if typing.is_typeddict(tp):
            names = list(hints)
            # serde reads a TypedDict without checking that its required keys are there.
            required = [] if self.mode == "input" else [k for k in names if k in _required(tp)]
        else:
            fields = [
                f for f in dataclasses.fields(tp) if f.init or self.mode == "output"
            ]
            names = [f.name for f in fields]
            required = [
                f.name
                for f in fields
                if self.mode == "output"
                or (
                    f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING
                )
            ]
        out: dict[str, Any] = {
            "type": "object",
            "title": tp.__name__,
            "properties": {k: self.schema(hints.get(k, Any)) for k in names},
        }
        if required:
            out["required"] = required
        return out

    def _pydantic(self, tp: type) -> dict[str, Any]:
        make = getattr(tp, "model_json_schema", None)
        if not callable(make):
            return {"type": "object", "title": tp.__name__}
        schema: dict[str, Any] = make(
            mode="validation" if self.mode == "input" else "serialization",
            ref_template=_REF + "{model}",
        )
        schema = json.loads(json.dumps(schema))  # a copy of plain JSON values
        for name, sub in schema.pop("$defs", {}).items():
            self.defs.setdefault(name, sub)
        return schema


def _required(tp: Any) -> frozenset[str]:
    keys: frozenset[str] = getattr(tp, "__required_keys__", frozenset())
    return keys


def _inline(schema: Any, defs: dict[str, dict[str, Any]]) -> Any:
    """``schema`` with each ``{"$ref": "#/$defs/N"}`` of ``defs`` replaced by N's schema."""
    if not defs:
        return schema
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if len(schema) == 1 and isinstance(ref, str) and ref.startswith(_REF):
            target = defs.get(ref[len(_REF) :])
            if target is not None:
                return _inline(target, defs)
        return {k: _inline(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema
