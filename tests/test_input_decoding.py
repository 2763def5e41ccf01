"""A handler's input must match its parameter's type hint, or the invocation fails with 400.

JSON ``true`` is not an ``int`` even though Python's ``bool`` is a subclass of ``int``
(``isinstance(True, int)``): a handler adding to a counter must not receive ``True``. A
``float`` parameter takes JSON integers (``3`` is a number in JSON) but not booleans, and a
``str`` parameter takes no numbers. Bad input is a terminal failure with code 400 that never
reaches the handler: retrying cannot fix it. Checked through the engine's raw-bytes entry
point and through the HTTP ingress.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, List, Optional, TypedDict  # noqa: UP035 - typing.List on purpose

import pytest

import durable_futures as df
from durable_futures.local.ingress import Ingress
from durable_futures.testing import run

from .asgi_client import call


@dataclass
class Line:
    sku: str
    qty: int


class Order(TypedDict):
    sku: str


svc = df.Service("Typed")

#: What each handler was called with (a bad input must leave no trace here).
received: list[tuple[str, Any]] = []

TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list_of_int": list[int],
    "dict_of_float": dict[str, float],
    "optional_int": Optional[int],  # noqa: UP045 - typing.Optional on purpose
    "int_or_none": int | None,
    "pair": tuple[str, int],
    "ints": tuple[int, ...],
    "legacy_list": List[Optional[int]],  # noqa: UP006, UP045 - typing's spelling on purpose
    "bare_list": List,  # noqa: UP006 - an unparametrised typing alias on purpose
    "line": Line,
    "order": Order,
}


def _register(name: str, tp: Any) -> None:
    async def handler(ctx: df.Context, value: Any) -> Any:
        received.append((name, value))
        return value

    handler.__annotations__ = {"ctx": df.Context, "value": tp, "return": tp}
    handler.__name__ = name
    svc.handler(name)(handler)


@svc.handler()
async def raw(ctx: df.Context, data: bytes) -> bytes:
    """A ``bytes`` parameter opts out of JSON: the input arrives as it was sent."""
    received.append(("raw", data))
    return data[::-1]


for _name, _tp in TYPES.items():
    _register(_name, _tp)


@pytest.fixture(autouse=True)
def _clear_received() -> None:
    received.clear()


REJECTED = [
    ("int", b"true"),
    ("int", b"false"),
    ("int", b"1.5"),
    ("int", b'"7"'),
    ("int", b"07"),  # not JSON: no leading zeros
    ("float", b"true"),
    ("float", b'"1.5"'),
    ("str", b"42"),
    ("str", b"4.2"),
    ("str", b"true"),
    ("bool", b"1"),
    ("bool", b'"true"'),
    ("list_of_int", b"[1,true]"),
    ("dict_of_float", b'{"a":false}'),
    ("optional_int", b"true"),
    ("int_or_none", b"false"),
    ("pair", b'"ab"'),
    ("pair", b'["a",true]'),
    ("pair", b'["a",1,2]'),
    ("line", b'{"sku":"s","qty":true}'),
    ("line", b'{"sku":5,"qty":1}'),
]

ACCEPTED: list[tuple[str, bytes, Any]] = [
    ("int", b"0", 0),
    ("int", b"907", 907),
    ("float", b"3", 3.0),  # a JSON integer is a number: the handler gets a float
    ("float", b"2.5", 2.5),
    ("str", b'"42"', "42"),
    ("bool", b"false", False),
    ("list_of_int", b"[1,2]", [1, 2]),
    ("dict_of_float", b'{"a":1}', {"a": 1.0}),
    ("optional_int", b"null", None),
    ("int_or_none", b"4", 4),
    ("pair", b'["a",1]', ("a", 1)),
    ("line", b'{"sku":"s","qty":2}', Line("s", 2)),
]


def engine(tmp_path: Path) -> df.LocalEngine:
    # Fast retries and a cap on attempts: were bad input retried rather than refused, the
    # test would see the handler called or a "gave up" failure, not hang.
    return df.LocalEngine(
        svc,
        path=tmp_path / "engine.db",
        durability="os",
        retry_policy=df.RetryPolicy(
            initial_interval=timedelta(milliseconds=1), max_attempts=3, on_max_attempts="kill"
        ),
    )


@pytest.mark.parametrize(
    ("handler", "payload"), REJECTED, ids=[f"{h}:{p.decode()}" for h, p in REJECTED]
)
def test_input_of_the_wrong_type_fails_with_400_without_running_the_handler(
    tmp_path: Path, handler: str, payload: bytes
) -> None:
    async def body() -> tuple[bool, Any]:
        async with engine(tmp_path) as e:
            _, ok, value = await e.invoke_raw("Typed", handler, payload)
            return ok, value

    ok, value = run(body())
    assert not ok, value
    code, message = value
    assert code == 400, message
    assert message.startswith("cannot decode"), message
    assert received == []


@pytest.mark.parametrize(
    ("handler", "payload", "expected"), ACCEPTED, ids=[f"{h}:{p.decode()}" for h, p, _ in ACCEPTED]
)
def test_input_of_the_right_type_reaches_the_handler_as_that_type(
    tmp_path: Path, handler: str, payload: bytes, expected: Any
) -> None:
    async def body() -> tuple[bool, Any]:
        async with engine(tmp_path) as e:
            _, ok, value = await e.invoke_raw("Typed", handler, payload)
            return ok, value

    ok, _ = run(body())
    assert ok
    assert received == [(handler, expected)]
    assert type(received[0][1]) is type(expected)


#: The whole message a caller gets back: the input (at most its first 200 bytes), the type
#: it was decoded as, and what did not match, down to the item at fault.
MESSAGES = [
    ("int", b"true", "cannot decode b'true' as int: expected int, got bool"),
    (
        "list_of_int",
        b'{"a":1}',
        """cannot decode b'{"a":1}' as list[int]: expected a list, got dict""",
    ),
    ("list_of_int", b"[1,true]", "cannot decode b'[1,true]' as list[int]: expected int, got bool"),
    (
        "dict_of_float",
        b"[1]",
        "cannot decode b'[1]' as dict[str, float]: expected an object, got list",
    ),
    # Both spellings of an optional int read the same, whichever was decoded first.
    (
        "optional_int",
        b"true",
        "cannot decode b'true' as int | None: True matches none of int | None",
    ),
    (
        "int_or_none",
        b"true",
        "cannot decode b'true' as int | None: True matches none of int | None",
    ),
    (
        "pair",
        b'"ab"',
        """cannot decode b'"ab"' as tuple[str, int]: expected a list, got str""",
    ),
    (
        "pair",
        b'["a",1,2]',
        """cannot decode b'["a",1,2]' as tuple[str, int]: expected 2 items, got 3""",
    ),
    ("ints", b"[1,true]", "cannot decode b'[1,true]' as tuple[int, ...]: expected int, got bool"),
    # typing's spellings read as the builtin ones, nested types included.
    (
        "legacy_list",
        b'[1,"a"]',
        "cannot decode b'[1,\"a\"]' as list[int | None]: 'a' matches none of int | None",
    ),
    ("bare_list", b"{}", "cannot decode b'{}' as List: expected a list, got dict"),
    ("line", b"[1]", "cannot decode b'[1]' as Line: expected an object for Line, got list"),
    ("order", b"[]", "cannot decode b'[]' as Order: expected an object for Order, got list"),
    (
        "int",
        b"x" * 300,
        f"cannot decode {b'x' * 200!r} as int: Expecting value: line 1 column 1 (char 0)",
    ),
]


@pytest.mark.parametrize(
    ("handler", "payload", "message"),
    MESSAGES,
    ids=[f"{h}:{p[:12].decode()}" for h, p, _ in MESSAGES],
)
def test_the_400_says_what_was_wrong(
    tmp_path: Path, handler: str, payload: bytes, message: str
) -> None:
    async def body() -> tuple[bool, Any]:
        async with engine(tmp_path) as e:
            _, ok, value = await e.invoke_raw("Typed", handler, payload)
            return ok, value

    ok, value = run(body())
    assert not ok
    assert value == (400, message)
    assert received == []


def test_the_ingress_answers_wrongly_typed_input_with_400(tmp_path: Path) -> None:
    cases = [("int", b"true"), ("float", b"false"), ("str", b"42")]

    async def body() -> list[tuple[int, dict[str, Any]]]:
        async with engine(tmp_path) as e:
            ingress = Ingress(e)
            out = []
            for handler, payload in cases:
                resp = await call(
                    ingress,
                    f"/Typed/{handler}",
                    payload,
                    headers=(("content-type", "application/json"),),
                    http_version="1.1",
                )
                out.append((resp.status, json.loads(resp.body)))
            return out

    for (handler, _), (status, error) in zip(cases, run(body()), strict=True):
        assert status == 400, (handler, error)
        assert error["code"] == 400 and error["message"].startswith("cannot decode"), error
    assert received == []


def test_a_bytes_handler_refuses_anything_but_bytes_from_its_caller(tmp_path: Path) -> None:
    """The caller learns at once, in its own code, that it passed the wrong type: nothing
    is submitted, and the message names what it passed."""

    async def body() -> None:
        async with engine(tmp_path) as e:
            assert await e.invoke(raw, b"abc") == b"cba"
            with pytest.raises(TypeError, match="^expected bytes, got str$"):
                await e.invoke(raw, "abc")
            with pytest.raises(TypeError, match="^expected bytes, got dict$"):
                e.send(raw, {"not": "bytes"})

    run(body())
    assert received == [("raw", b"abc")]
