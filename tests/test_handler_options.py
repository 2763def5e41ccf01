"""Options of services and handlers, and the JSON schemas of their inputs and outputs.

- The manifest carries each option under the name restate's
  ``service-protocol/endpoint_manifest_schema.json`` gives it, from the manifest version that
  defines it (``discovery.proto``: v2 documentation and metadata; v3 the timeouts, the
  retentions, ``ingressPrivate``, ``enableLazyState``; v4 the retry policy).
- Bad values are refused where they are declared, naming the option and its owner.
- Schemas describe what the JSON serde reads (input) and writes (output); every value the
  serde writes conforms to both.
- The embedded engine honours ``ingress_private`` (its ingress answers 400 as restate-server
  1.7.12 does), ``workflow_retention``, and ``inactivity_timeout`` + ``abort_timeout``
  (an attempt without progress for both is abandoned and retried).
- One test registers every option with a real restate-server and reads it back from the admin
  API.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import enum
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypedDict, TypeVar

import pytest

import durable_futures as df
from durable_futures.local import VirtualClock
from durable_futures.local.ingress import Ingress
from durable_futures.serde import JsonSerde
from durable_futures.service import json_schema

from .asgi_client import call
from .restate_harness import AsgiServer, RestateClient, RestateServer

T = TypeVar("T")

FAST = df.RetryPolicy(
    initial_interval=timedelta(milliseconds=5), max_interval=timedelta(milliseconds=20)
)
JSON_CT = (("content-type", "application/json"),)


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def discover(services: list[df.Service], version: int) -> dict[str, Any]:
    accept = f"application/vnd.restate.endpointmanifest.v{version}+json"
    app = df.asgi_app(*services)
    resp = run(call(app, "/discover", method="GET", headers=[("accept", accept)]))
    assert resp.status == 200, resp
    return {s["name"]: s for s in json.loads(resp.body)["services"]}


# ---- every option, on every kind of service -------------------------------------------------


@dataclass
class Node:
    value: int
    next: Node | None = None


def every_option() -> list[df.Service]:
    svc = df.Service(
        "OptSvc",
        documentation="A service with every option.",
        metadata={"team": "payments"},
        inactivity_timeout=timedelta(seconds=61),
        abort_timeout=timedelta(seconds=62),
        journal_retention=timedelta(hours=3),
        idempotency_retention=timedelta(hours=4),
        ingress_private=False,
        retry_policy=df.RetryPolicy(max_attempts=5),
    )

    @svc.handler(
        inactivity_timeout=timedelta(seconds=5),
        abort_timeout=timedelta(milliseconds=6500),
        journal_retention=timedelta(seconds=7),
        idempotency_retention=timedelta(seconds=8),
        ingress_private=True,
        documentation="Its own words.",
        metadata={"k": "v"},
    )
    async def own(ctx: df.Context, node: Node) -> list[Node]:
        """Not shown: the documentation option wins."""
        return [node]

    @svc.handler()
    async def plain(ctx: df.Context) -> None:
        """From the docstring."""

    obj = df.VirtualObject("OptObj", enable_lazy_state=True, ingress_private=True)

    @obj.handler(kind="shared", enable_lazy_state=False)
    async def peek(ctx: df.ObjectSharedContext) -> str:
        return ""

    wf = df.Workflow(
        "OptWf",
        workflow_retention=timedelta(days=2),
        idempotency_retention=timedelta(minutes=9),
        enable_lazy_state=True,
    )

    @wf.main(workflow_retention=timedelta(days=3), metadata={"main": "yes"})
    async def flow(ctx: df.WorkflowContext, n: int) -> int:
        return n

    @wf.handler(idempotency_retention=timedelta(minutes=10))
    async def status(ctx: df.WorkflowSharedContext) -> str:
        return ""

    inherits = df.Workflow("OptWfInherits", workflow_retention=timedelta(hours=5))

    @inherits.main()
    async def go(ctx: df.WorkflowContext) -> None:
        return None

    return [svc, obj, wf, inherits]


V2 = {"documentation", "metadata"}
V3 = {
    "inactivityTimeout",
    "abortTimeout",
    "journalRetention",
    "idempotencyRetention",
    "workflowCompletionRetention",
    "enableLazyState",
    "ingressPrivate",
}
V4 = {
    "retryPolicyInitialInterval",
    "retryPolicyMaxInterval",
    "retryPolicyMaxAttempts",
    "retryPolicyExponentiationFactor",
    "retryPolicyOnMaxAttempts",
}
STRUCTURE = {"name", "ty", "handlers", "input", "output"}


def options_of(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in STRUCTURE}


EXPECTED_V4: dict[str, Any] = {
    "OptSvc": {
        "documentation": "A service with every option.",
        "metadata": {"team": "payments"},
        "inactivityTimeout": 61_000,
        "abortTimeout": 62_000,
        "journalRetention": 10_800_000,
        "idempotencyRetention": 14_400_000,
        "ingressPrivate": False,
        "retryPolicyInitialInterval": 500,
        "retryPolicyMaxInterval": 60_000,
        "retryPolicyMaxAttempts": 5,
        "retryPolicyExponentiationFactor": 2.0,
        "retryPolicyOnMaxAttempts": "PAUSE",
        "handlers": {
            "own": {
                "documentation": "Its own words.",
                "metadata": {"k": "v"},
                "inactivityTimeout": 5000,
                "abortTimeout": 6500,
                "journalRetention": 7000,
                "idempotencyRetention": 8000,
                "ingressPrivate": True,
            },
            "plain": {"documentation": "From the docstring."},
        },
    },
    "OptObj": {
        "enableLazyState": True,
        "ingressPrivate": True,
        "handlers": {"peek": {"enableLazyState": False}},
    },
    "OptWf": {
        "idempotencyRetention": 540_000,
        "enableLazyState": True,
        "handlers": {
            "flow": {"metadata": {"main": "yes"}, "workflowCompletionRetention": 259_200_000},
            "status": {"idempotencyRetention": 600_000},
        },
    },
    # The workflow's retention is the main handler's field: the only place the manifest has.
    "OptWfInherits": {"handlers": {"go": {"workflowCompletionRetention": 18_000_000}}},
}


@pytest.mark.parametrize(
    ("version", "fields"), [(4, V2 | V3 | V4), (3, V2 | V3), (2, V2)]
)
def test_each_manifest_version_carries_the_options_it_defines(
    version: int, fields: set[str]
) -> None:
    manifest = discover(every_option(), version)
    for name, expected in EXPECTED_V4.items():
        entry = manifest[name]
        want = {k: v for k, v in expected.items() if k in fields}
        assert options_of(entry) == want, name
        handlers = {h["name"]: h for h in entry["handlers"]}
        for hname, hexpected in expected["handlers"].items():
            want = {k: v for k, v in hexpected.items() if k in fields}
            assert options_of(handlers[hname]) == want, f"{name}/{hname}"


def test_options_are_kept_on_the_service_and_the_handler() -> None:
    svc, obj, wf, inherits = every_option()
    own = svc.handlers["own"]
    assert (own.inactivity_timeout, own.abort_timeout) == (
        timedelta(seconds=5),
        timedelta(milliseconds=6500),
    )
    assert own.ingress_private is True and svc.ingress_private is False
    assert own.documentation == "Its own words." and own.metadata == {"k": "v"}
    assert svc.handlers["plain"].inactivity_timeout is None
    assert obj.enable_lazy_state is True and obj.handlers["peek"].enable_lazy_state is False
    assert wf.workflow_retention == timedelta(days=2)
    assert wf.handlers["flow"].workflow_retention == timedelta(days=3)
    assert inherits.handlers["go"].workflow_retention == timedelta(hours=5)
    assert wf.handlers["status"].workflow_retention is None


def test_metadata_is_copied_where_it_is_declared() -> None:
    meta = {"a": "1"}
    svc = df.Service("Meta", metadata=meta)

    @svc.handler(metadata=meta)
    async def h(ctx: df.Context) -> None:
        return None

    meta["b"] = "2"
    assert svc.metadata == {"a": "1"} and svc.handlers["h"].metadata == {"a": "1"}


# ---- validation -----------------------------------------------------------------------------


def _handler(svc: df.Service, **options: Any) -> None:
    @svc.handler(**options)
    async def h(ctx: df.Context) -> None:
        return None


def _main(wf: df.Workflow, **options: Any) -> None:
    @wf.main(**options)
    async def m(ctx: df.WorkflowContext) -> None:
        return None


NEG = timedelta(seconds=-1)

BAD: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    (
        "negative inactivity",
        lambda: df.Service("S", inactivity_timeout=NEG),
        ValueError,
        r"service S: inactivity_timeout must be at least 1 millisecond, not -1 day",
    ),
    (
        "zero abort",
        lambda: df.VirtualObject("O", abort_timeout=timedelta(0)),
        ValueError,
        r"service O: abort_timeout must be at least 1 millisecond",
    ),
    (
        "sub-millisecond timeout",
        lambda: df.Service("S", inactivity_timeout=timedelta(microseconds=500)),
        ValueError,
        "at least 1 millisecond",
    ),
    (
        "timeout in seconds",
        lambda: df.Service("S", abort_timeout=30),  # type: ignore[arg-type]
        TypeError,
        r"abort_timeout must be a datetime.timedelta, not int",
    ),
    (
        "negative workflow retention",
        lambda: df.Workflow("W", workflow_retention=NEG),
        ValueError,
        r"service W: workflow_retention must not be negative",
    ),
    (
        "negative handler retention",
        lambda: _handler(df.Service("S"), journal_retention=NEG),
        ValueError,
        r"handler S/h: journal_retention must not be negative",
    ),
    (
        "negative main timeout",
        lambda: _main(df.Workflow("W"), inactivity_timeout=NEG),
        ValueError,
        r"handler W/m: inactivity_timeout must be at least 1 millisecond",
    ),
    (
        "workflow retention on a service",
        lambda: df.Service("S", workflow_retention=timedelta(hours=1)),
        ValueError,
        r"service S: workflow_retention applies to a workflow \(df.Workflow\) only",
    ),
    (
        "workflow retention on a virtual object",
        lambda: df.VirtualObject("O", workflow_retention=timedelta(hours=1)),  # type: ignore[call-arg]
        TypeError,
        "workflow_retention",
    ),
    (
        "workflow retention on a shared handler",
        lambda: _handler(df.Workflow("W"), workflow_retention=timedelta(hours=1)),
        TypeError,
        "workflow_retention",
    ),
    (
        "idempotency retention on a main handler",
        lambda: _main(df.Workflow("W"), idempotency_retention=timedelta(hours=1)),
        TypeError,
        "idempotency_retention",
    ),
    (
        "ingress_private not a bool",
        lambda: df.Service("S", ingress_private="yes"),  # type: ignore[arg-type]
        TypeError,
        r"service S: ingress_private must be a bool or None, not str",
    ),
    (
        "enable_lazy_state not a bool",
        lambda: _handler(df.VirtualObject("O"), enable_lazy_state=1),
        TypeError,
        r"handler O/h: enable_lazy_state must be a bool or None, not int",
    ),
    (
        "lazy state on a service",
        lambda: df.Service("S", enable_lazy_state=True),
        ValueError,
        r"service S: enable_lazy_state applies to virtual objects and workflows",
    ),
    (
        "lazy state on a service's handler",
        lambda: _handler(df.Service("S"), enable_lazy_state=False),
        ValueError,
        r"handler S/h: enable_lazy_state applies to handlers of virtual objects",
    ),
    (
        "metadata not a dict",
        lambda: df.Service("S", metadata=[("a", "b")]),  # type: ignore[arg-type]
        TypeError,
        r"service S: metadata must be a dict of str to str, not list",
    ),
    (
        "metadata value not a str",
        lambda: _handler(df.Service("S"), metadata={"retries": 3}),
        TypeError,
        r"handler S/h: metadata must be a dict of str to str: 'retries': 3 is str: int",
    ),
    (
        "metadata key not a str",
        lambda: df.Workflow("W", metadata={1: "one"}),  # type: ignore[dict-item]
        TypeError,
        r"metadata must be a dict of str to str: 1: 'one' is int: str",
    ),
    (
        "documentation not a str",
        lambda: _handler(df.Service("S"), documentation=["x"]),
        TypeError,
        r"documentation must be a str or None, not list",
    ),
    (
        "public handler of a private service",
        lambda: _handler(df.Service("S", ingress_private=True), ingress_private=False),
        ValueError,
        r"the service is ingress_private, so its handlers cannot be public",
    ),
]


@pytest.mark.parametrize(("what", "make", "error", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_options_are_refused_where_they_are_declared(
    what: str, make: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make()


def test_zero_retentions_are_allowed() -> None:
    wf = df.Workflow("W", journal_retention=timedelta(0), workflow_retention=timedelta(0))
    _main(wf)
    assert wf.manifest(3)["handlers"][0]["workflowCompletionRetention"] == 0


# ---- JSON schemas ---------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Item:
    sku: str
    qty: int = 1
    tags: list[str] = field(default_factory=list)
    total: decimal.Decimal = field(default=decimal.Decimal("0"), init=False)


class _Street(TypedDict):
    street: str


class Address(_Street, total=False):
    zip: str


@dataclass
class Order:
    id: uuid.UUID
    items: list[Item]
    at: datetime.datetime
    ship_to: Address
    notes: dict[Color, str]
    backup: Item | None = None


class FakeModel:
    """Stands in for a pydantic model (serde recognises one by model_validate/model_dump):
    its schema names a nested model in $defs, as pydantic's does."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def model_validate(cls, data: Any) -> FakeModel:
        return cls(data["name"])

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def model_json_schema(cls, mode: str = "validation", ref_template: str = "") -> dict[str, Any]:
        return {
            "title": "FakeModel",
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "part": {"$ref": ref_template.format(model="Part")},
            },
            "required": ["name"] if mode == "validation" else ["name", "part"],
            "$defs": {"Part": {"type": "object", "title": "Part"}},
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeModel) and other.name == self.name

    __hash__ = None  # type: ignore[assignment]


ITEM_IN = {
    "type": "object",
    "title": "Item",
    "properties": {
        "sku": {"type": "string"},
        "qty": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["sku"],
}
ITEM_OUT = {
    "type": "object",
    "title": "Item",
    "properties": {
        "sku": {"type": "string"},
        "qty": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "total": {"type": "string"},
    },
    "required": ["sku", "qty", "tags", "total"],
}

_ITEM = Item("A-1", 2, ["x"])
_NODE = Node(1, Node(2))
_ORDER = Order(
    uuid.UUID(int=7),
    [_ITEM],
    datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
    {"street": "Main St"},
    {Color.RED: "fragile"},
)

# (type hint, input schema, output schema (None: the same), values the serde writes)
SCHEMAS: list[tuple[Any, dict[str, Any], dict[str, Any] | None, list[Any]]] = [
    (bool, {"type": "boolean"}, None, [True]),
    (int, {"type": "integer"}, None, [0, -5]),
    (float, {"type": "number"}, None, [1.5, 2.0]),
    (str, {"type": "string"}, None, ["", "é"]),
    (type(None), {"type": "null"}, None, [None]),
    (Any, {}, None, [{"any": [1]}]),
    (Annotated[int, "meta"], {"type": "integer"}, None, [3]),
    (list[int], {"type": "array", "items": {"type": "integer"}}, None, [[1, 2]]),
    (list, {"type": "array"}, None, [[1, "a"]]),
    (
        dict[str, float],
        {"type": "object", "additionalProperties": {"type": "number"}},
        None,
        [{"a": 1.0}],
    ),
    (
        tuple[int, str],
        {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "minItems": 2,
            "maxItems": 2,
        },
        None,
        [(1, "a")],
    ),
    (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}, None, [(1, 2, 3), ()]),
    (
        set[int],
        {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
        None,
        [{3, 1, 2}],
    ),
    (
        frozenset[str],
        {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        None,
        [frozenset({"b", "a"})],
    ),
    (
        Optional[int],  # noqa: UP045
        {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        None,
        [None, 4],
    ),
    (int | str, {"anyOf": [{"type": "integer"}, {"type": "string"}]}, None, [1, "1"]),
    (int | Any, {}, None, [1]),
    (Color, {"title": "Color", "enum": ["red", "green"]}, None, [Color.GREEN]),
    (Level, {"title": "Level", "enum": [1, 2]}, None, [Level.HIGH]),
    (Literal["a", "b"], {"enum": ["a", "b"]}, None, ["b"]),
    (Literal[Color.RED], {"const": "red"}, None, [Color.RED]),
    (Literal[1, None], {"enum": [1, None]}, None, [None]),
    (
        datetime.datetime,
        {"type": "string", "format": "date-time"},
        None,
        [datetime.datetime(2024, 1, 2, 3, 4, 5), _ORDER.at],
    ),
    (datetime.date, {"type": "string", "format": "date"}, None, [datetime.date(2024, 2, 29)]),
    (datetime.time, {"type": "string", "format": "time"}, None, [datetime.time(23, 59, 1)]),
    (
        datetime.timedelta,
        {"type": "number", "description": "a duration in seconds"},
        None,
        [timedelta(minutes=1, milliseconds=5)],
    ),
    (
        decimal.Decimal,
        {"type": ["string", "number"]},
        {"type": "string"},
        [decimal.Decimal("10.25")],
    ),
    (uuid.UUID, {"type": "string", "format": "uuid"}, None, [uuid.UUID(int=1)]),
    (
        dict[uuid.UUID, int],
        {
            "type": "object",
            "propertyNames": {"type": "string", "format": "uuid"},
            "additionalProperties": {"type": "integer"},
        },
        None,
        [{uuid.UUID(int=2): 5}],
    ),
    (Item, ITEM_IN, ITEM_OUT, [_ITEM]),
    (
        Address,
        {
            "type": "object",
            "title": "Address",
            "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
        },
        {
            "type": "object",
            "title": "Address",
            "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["street"],
        },
        [{"street": "Main St"}, {"street": "Side St", "zip": "12345"}],
    ),
    (
        Node,
        {
            "$ref": "#/$defs/Node",
            "$defs": {
                "Node": {
                    "type": "object",
                    "title": "Node",
                    "properties": {
                        "value": {"type": "integer"},
                        "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                    },
                    "required": ["value"],
                }
            },
        },
        {
            "$ref": "#/$defs/Node",
            "$defs": {
                "Node": {
                    "type": "object",
                    "title": "Node",
                    "properties": {
                        "value": {"type": "integer"},
                        "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                    },
                    "required": ["value", "next"],
                }
            },
        },
        [_NODE],
    ),
    (
        FakeModel,
        {
            "title": "FakeModel",
            "type": "object",
            "properties": {"name": {"type": "string"}, "part": {"$ref": "#/$defs/Part"}},
            "required": ["name"],
            "$defs": {"Part": {"type": "object", "title": "Part"}},
        },
        {
            "title": "FakeModel",
            "type": "object",
            "properties": {"name": {"type": "string"}, "part": {"$ref": "#/$defs/Part"}},
            "required": ["name", "part"],
            "$defs": {"Part": {"type": "object", "title": "Part"}},
        },
        [],  # the stand-in writes no "part"; a real model's dump would
    ),
]


@pytest.mark.parametrize(
    ("tp", "schema_in", "schema_out", "values"), SCHEMAS, ids=[repr(s[0]) for s in SCHEMAS]
)
def test_json_schema_of_each_type_matches_what_serde_writes(
    tp: Any, schema_in: dict[str, Any], schema_out: dict[str, Any] | None, values: list[Any]
) -> None:
    assert json_schema(tp, "input") == schema_in
    assert json_schema(tp, "output") == (schema_out or schema_in)
    serde: JsonSerde[Any] = JsonSerde(tp)
    for value in values:
        written = json.loads(serde.serialize(value))
        for schema in (schema_in, schema_out or schema_in):
            problem = conforms(written, schema)
            assert problem is None, (value, written, problem)
        serde.deserialize(serde.serialize(value))  # and serde reads it back


def test_a_type_used_twice_is_defined_once() -> None:
    @dataclass
    class Pair:
        left: Item
        right: Item

    schema = json_schema(Pair, "input")
    assert schema["properties"] == {
        "left": {"$ref": "#/$defs/Item"},
        "right": {"$ref": "#/$defs/Item"},
    }
    assert schema["$defs"] == {"Item": ITEM_IN}
    serde: JsonSerde[Any] = JsonSerde(Pair)
    value = json.loads(serde.serialize(Pair(_ITEM, Item("B"))))
    assert conforms(value, schema) is None


def test_an_order_conforms_in_both_directions() -> None:
    serde: JsonSerde[Any] = JsonSerde(Order)
    written = json.loads(serde.serialize(_ORDER))
    modes: list[Literal["input", "output"]] = ["input", "output"]
    for mode in modes:
        schema = json_schema(Order, mode)
        assert conforms(written, schema) is None, mode
    out = json_schema(Order, "output")
    assert out["properties"]["notes"] == {
        "type": "object",
        "propertyNames": {"enum": ["red", "green"]},
        "additionalProperties": {"type": "string"},
    }
    assert out["required"] == ["id", "items", "at", "ship_to", "notes", "backup"]


def test_the_checker_refuses_what_does_not_conform() -> None:
    # The structural checker below is what the schema tests rely on: it must say no.
    cases: list[tuple[Any, Any]] = [
        ("1", int),
        (1.5, int),
        ([1, "a"], list[int]),
        ([1, 1], set[int]),
        ([1], tuple[int, str]),
        ("blue", Color),
        ({"qty": 1}, Item),
        ("not a date", datetime.date),
        ("2024-01-01", datetime.time),
        ({"value": 1, "next": {"value": "x"}}, Node),
        (1, decimal.Decimal),
    ]
    for value, tp in cases:
        assert conforms(value, json_schema(tp, "output")) is not None, (value, tp)


def test_the_manifest_has_input_and_output_schemas() -> None:
    svc = df.Service("Schemas")

    @svc.handler()
    async def price(ctx: df.Context, item: Item) -> decimal.Decimal:
        return item.total

    @svc.handler()
    async def raw(ctx: df.Context, data: bytes) -> bytes:
        return data

    @svc.handler(input_serde=_Upper(), output_serde=_Upper())
    async def custom(ctx: df.Context, s: str) -> str:
        return s

    @svc.handler()
    async def nothing(ctx: df.Context) -> None:
        return None

    handlers = {h["name"]: h for h in discover([svc], 4)["Schemas"]["handlers"]}
    assert handlers["price"]["input"]["jsonSchema"] == ITEM_IN
    assert handlers["price"]["output"] == {
        "setContentTypeIfEmpty": False,
        "contentType": "application/json",
        "jsonSchema": {"type": "string"},
    }
    assert "jsonSchema" not in handlers["raw"]["input"]
    assert handlers["raw"]["output"] == {
        "setContentTypeIfEmpty": False,
        "contentType": "application/octet-stream",
    }
    # A serde of the user's: the type hint need not describe its JSON.
    assert handlers["custom"]["input"]["jsonSchema"] == {}
    assert handlers["custom"]["output"]["jsonSchema"] == {}
    assert handlers["nothing"]["output"]["jsonSchema"] == {"type": "null"}


class _Upper:
    content_type = "application/json"

    def serialize(self, value: str) -> bytes:
        return json.dumps({"upper": value.upper()}).encode()

    def deserialize(self, data: bytes) -> str:
        return str(json.loads(data)["upper"])


def conforms(value: Any, schema: Any, root: Any = None) -> str | None:
    """Whether ``value`` conforms to ``schema`` for the keywords our schemas use (``None``),
    or what does not. (jsonschema is not a dependency; this checks the same keywords.)"""
    root = schema if root is None else root
    if schema is True or schema == {}:
        return None
    if schema is False:
        return "nothing conforms to false"
    assert isinstance(schema, dict), schema
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        problem = conforms(value, root["$defs"][name], root)
        if problem:
            return problem
    if "anyOf" in schema:
        if all(conforms(value, s, root) for s in schema["anyOf"]):
            return f"{value!r} matches none of {schema['anyOf']}"
    if "const" in schema and not _same(value, schema["const"]):
        return f"{value!r} is not {schema['const']!r}"
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        return f"{value!r} is not one of {schema['enum']}"
    if "type" in schema:
        types_ = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types_):
            return f"{value!r} is not of type {schema['type']}"
    if isinstance(value, str) and "format" in schema:
        parse = _FORMATS[schema["format"]]
        try:
            parse(value)
        except ValueError:
            return f"{value!r} is not a {schema['format']}"
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for item, sub in zip(value, prefix, strict=False):
            if problem := conforms(item, sub, root):
                return problem
        if "items" in schema:
            for item in value[len(prefix) :]:
                if problem := conforms(item, schema["items"], root):
                    return problem
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1e9):
            return f"{value!r} has the wrong number of items"
        if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) < len(value):
            return f"{value!r} has duplicates"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return f"{key!r} is missing from {value!r}"
        props = schema.get("properties", {})
        for key, item in value.items():
            if "propertyNames" in schema and (problem := conforms(key, schema["propertyNames"])):
                return problem
            sub = props.get(key, schema.get("additionalProperties", True))
            if problem := conforms(item, sub, root):
                return problem
    return None


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    kinds = {"string": str, "boolean": bool, "array": list, "object": dict, "null": type(None)}
    return isinstance(value, kinds[name])


_FORMATS: dict[str, Callable[[str], Any]] = {
    "date-time": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "uuid": uuid.UUID,
}


# ---- the embedded engine: ingress_private -----------------------------------------------------

private = df.Service("Private", ingress_private=True)
mixed = df.Service("Mixed")


@private.handler()
async def secret(ctx: df.Context, s: str) -> str:
    return s.upper()


@mixed.handler(ingress_private=True)
async def internal(ctx: df.Context, s: str) -> str:
    return f"internal {s}"


@mixed.handler()
async def front(ctx: df.Context, s: str) -> str:
    a = await ctx.service(secret).request(s)
    b = await ctx.service(internal).request(s)
    return f"{a} / {b}"


def test_the_embedded_ingress_refuses_private_handlers_as_restate_server_does(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with df.LocalEngine(private, mixed, path=tmp_path / "p.db", durability="os") as e:
            app = Ingress(e)
            for path in ("/Private/secret", "/Private/secret/send", "/Mixed/internal"):
                resp = await call(app, path, b'"x"', headers=JSON_CT)
                assert resp.status == 400, (path, resp)
                assert json.loads(resp.body) == {
                    "code": 400,
                    "message": "the invoked service is not public",
                }
            # Refused before its method or its input are looked at (restate-server's order).
            resp = await call(app, "/Private/secret", b"", method="PUT")
            assert resp.status == 400, resp
            assert e.invocations() == []  # nothing was stored
            # A public handler calls both; so does the engine's client.
            resp = await call(app, "/Mixed/front", b'"hi"', headers=JSON_CT)
            assert (resp.status, json.loads(resp.body)) == (200, "HI / internal hi"), resp
            assert await e.invoke(secret, "direct") == "DIRECT"
            assert await e.invoke(internal, "direct") == "internal direct"

    run(body())


# ---- the embedded engine: workflow retention --------------------------------------------------

kept = df.Workflow("Kept")


@kept.main(workflow_retention=timedelta(seconds=1))
async def remember(ctx: df.WorkflowContext, what: str) -> str:
    ctx.set("what", what)
    return what


@kept.handler()
async def recall(ctx: df.WorkflowSharedContext) -> str:
    return await ctx.get("what", str) or "nothing"


kept_longer = df.Workflow("KeptLonger", workflow_retention=timedelta(hours=1))


@kept_longer.main()
async def remember_longer(ctx: df.WorkflowContext, what: str) -> str:
    ctx.set("what", what)
    return what


def test_a_workflow_run_and_its_state_go_when_its_retention_passes(tmp_path: Path) -> None:
    async def body() -> None:
        clock = VirtualClock()
        async with df.LocalEngine(
            kept, kept_longer, path=tmp_path / "w.db", durability="os", clock=clock,
            retention=timedelta(minutes=1),
        ) as e:
            assert await e.invoke(remember, "first", key="k") == "first"
            assert await e.invoke(remember_longer, "first", key="k") == "first"
            run_id, longer_id = (
                next(r.id for r in e.invocations() if r.service == name)
                for name in ("Kept", "KeptLonger")
            )
            assert await e.invoke(recall, key="k") == "first"
            clock.advance(timedelta(seconds=2))
            e.send(recall, key="other")  # wakes the engine, whose next round purges
            await until(lambda: e.invocation(run_id) is None, "the purge of the run")
            # The state and the run went together: the key is free to run again.
            assert await e.invoke(recall, key="k") == "nothing"
            assert await e.invoke(remember, "second", key="k") == "second"
            # An hour's retention (the workflow's, for its main handler) outlives the
            # engine's minute.
            clock.advance(timedelta(minutes=2))
            e.send(recall, key="other")
            await asyncio.sleep(0.05)
            assert e.invocation(longer_id) is not None

    run(body())


# ---- the embedded engine: inactivity and abort timeouts ---------------------------------------

ATTEMPTS: Counter[str] = Counter()
stalls = df.Service(
    "Stalls",
    retry_policy=FAST,
    inactivity_timeout=timedelta(milliseconds=100),
    abort_timeout=timedelta(milliseconds=150),
)


def _prepare(key: str) -> str:
    return key


@stalls.handler()
async def hangs_once(ctx: df.Context, key: str) -> str:
    await ctx.run("prepare", _prepare, key)
    ATTEMPTS[key] += 1
    if ATTEMPTS[key] == 1:
        await asyncio.sleep(3600)  # waits for nothing durable: no progress
    return f"done in attempt {ATTEMPTS[key]}"


@stalls.handler(abort_timeout=timedelta(milliseconds=100))
def hangs_once_sync(ctx: df.Context, key: str) -> str:
    ctx.run_async("prepare", _prepare, key).result()
    ATTEMPTS[key] += 1
    if ATTEMPTS[key] == 1:
        time.sleep(0.6)  # a thread cannot be stopped: it is left behind
    return f"done in attempt {ATTEMPTS[key]}"


@stalls.handler()
async def steady(ctx: df.Context, key: str) -> str:
    for i in range(8):  # 400 ms of work, journaled every 50 ms: progress all along
        await ctx.run(f"step {i}", _step)
    ATTEMPTS[key] += 1
    return "steady"


async def _step() -> None:
    await asyncio.sleep(0.05)


@stalls.handler()
async def waits_on_a_timer(ctx: df.Context, key: str) -> str:
    ATTEMPTS[key] += 1
    await ctx.sleep(timedelta(milliseconds=500))  # idle, but suspended rather than stuck
    return "woke"


@pytest.mark.parametrize("target", [hangs_once, hangs_once_sync], ids=["async", "sync"])
def test_an_attempt_without_progress_is_abandoned_and_retried(
    target: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"stuck-{target.name}"

    async def body() -> None:
        async with df.LocalEngine(stalls, path=tmp_path / "s.db", durability="os") as e:
            started = time.monotonic()
            inv_id = e.send(target, key)
            assert await e.result(inv_id) == "done in attempt 2"
            elapsed = time.monotonic() - started
            row = e.invocation(inv_id)
            assert row is not None and row.last_failure is not None
            assert row.last_failure.message == (
                f"no progress for 100 ms (inactivity timeout) + {abort} (abort timeout): "
                "the attempt was abandoned"
            )
            assert elapsed >= 0.2, elapsed  # not before inactivity + abort

    abort = "150 ms" if target is hangs_once else "100 ms"
    with caplog.at_level(logging.WARNING, logger="durable_futures.engine"):
        run(body())
    assert ATTEMPTS[key] == 2
    [record] = [r for r in caplog.records if "abandoned" in r.getMessage()]
    assert record.getMessage().endswith("the attempt was abandoned; it is retried")
    assert f"Stalls/{target.name}" in record.getMessage()


@pytest.mark.parametrize("target", [steady, waits_on_a_timer], ids=["progress", "suspended"])
def test_progress_or_a_suspension_is_not_abandoned(target: Any, tmp_path: Path) -> None:
    key = f"fine-{target.name}"

    async def body() -> None:
        async with df.LocalEngine(stalls, path=tmp_path / "f.db", durability="os") as e:
            inv_id = e.send(target, key)
            await e.result(inv_id)
            row = e.invocation(inv_id)
            assert row is not None and row.last_failure is None and row.failed_attempts == 0

    run(body())
    assert ATTEMPTS[key] == (1 if target is steady else 2)  # the timer's wake-up replays


def test_without_an_abort_timeout_an_attempt_is_never_abandoned(tmp_path: Path) -> None:
    svc = df.Service("Patient", inactivity_timeout=timedelta(milliseconds=50))

    @svc.handler()
    async def slow(ctx: df.Context) -> str:
        await asyncio.sleep(0.4)
        return "done"

    async def body() -> None:
        async with df.LocalEngine(svc, path=tmp_path / "n.db", durability="os") as e:
            inv_id = e.send(slow)
            assert await e.result(inv_id) == "done"
            row = e.invocation(inv_id)
            assert row is not None and row.last_failure is None

    run(body())


# ---- restate-server reads every option back -------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("restate_server", ["default"], indirect=True)
def test_restate_server_registers_every_option(
    restate_server: RestateServer, tmp_path: Path
) -> None:
    endpoint = AsgiServer(df.asgi_app(*every_option()), log_path=tmp_path / "hypercorn.log")
    endpoint.start()
    try:
        client = RestateClient(restate_server, timeout=30)
        client.register(endpoint.url, use_http_11=False)

        def service(name: str) -> dict[str, Any]:
            resp = client.admin("GET", f"/services/{name}")
            assert resp.status == 200, resp
            out: dict[str, Any] = resp.json()
            out["handlers"] = {h["name"]: h for h in out["handlers"]}
            return out

        svc = service("OptSvc")
        assert svc["documentation"] == "A service with every option."
        assert svc["metadata"] == {"team": "payments"}
        assert svc["public"] is True
        assert (svc["inactivity_timeout"], svc["abort_timeout"]) == ("1m 1s", "1m 2s")
        assert (svc["journal_retention"], svc["idempotency_retention"]) == ("3h", "4h")
        assert svc["retry_policy"]["max_attempts"] == 5
        own = svc["handlers"]["own"]
        assert own["documentation"] == "Its own words." and own["metadata"] == {"k": "v"}
        assert own["public"] is False
        assert (own["inactivity_timeout"], own["abort_timeout"]) == ("5s", "6s 500ms")
        assert (own["journal_retention"], own["idempotency_retention"]) == ("7s", "8s")
        assert own["input_json_schema"] == json_schema(Node, "input")
        assert own["output_json_schema"] == json_schema(list[Node], "output")
        assert svc["handlers"]["plain"]["documentation"] == "From the docstring."

        obj = service("OptObj")
        assert obj["public"] is False and obj["enable_lazy_state"] is True
        assert obj["handlers"]["peek"]["enable_lazy_state"] is False

        wf = service("OptWf")
        assert wf["workflow_completion_retention"] == "3d"
        assert wf["enable_lazy_state"] is True
        assert wf["handlers"]["flow"]["metadata"] == {"main": "yes"}
        assert wf["handlers"]["status"]["idempotency_retention"] == "10m"
        assert service("OptWfInherits")["workflow_completion_retention"] == "5h"

        # Its ingress refuses the private handler with the words our embedded ingress uses.
        resp = client.call("OptSvc", "own", {"value": 1})
        assert resp.status == 400, resp
        assert resp.json()["message"] == "the invoked service is not public"
    finally:
        endpoint.stop()


def test_documentation_is_the_second_positional_argument() -> None:
    """``df.Service("Name", "doc")`` documents the service (it used to land in
    ``handlers``), as ``df.VirtualObject`` and ``df.Workflow`` always did."""
    svc = df.Service("Documented", "What it does")
    assert svc.documentation == "What it does"
    assert svc.handlers == {}
    assert svc.manifest()["documentation"] == "What it does"
