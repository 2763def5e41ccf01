"""Standard-library types beyond JSON's own, converted both ways from type hints: dates and
times as ISO 8601 strings, ``timedelta`` as seconds, ``UUID`` and ``Decimal`` as strings,
enums by value, sets as arrays and ``Literal`` checked. Bad input is refused like any other
value of the wrong type: a ``TerminalError`` with code 400."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Optional, TypedDict

import pytest

import durable_futures as df
from durable_futures.errors import TerminalError
from durable_futures.serde import serde_for
from durable_futures.testing import engine_for, run


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Price:
    amount: Decimal
    color: Color


@dataclass
class Booking:
    at: datetime
    tags: list[str]


class Slot(TypedDict):
    starts: time
    length: timedelta


ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
AT = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)

ROUND_TRIPS: list[tuple[Any, Any, bytes]] = [
    (datetime, AT, b'"2024-05-06T07:08:09.123456+00:00"'),
    (datetime, datetime(2024, 5, 6, 7, 8), b'"2024-05-06T07:08:00"'),
    (date, date(2024, 2, 29), b'"2024-02-29"'),
    (time, time(23, 59, 1), b'"23:59:01"'),
    (timedelta, timedelta(hours=1, milliseconds=5), b"3600.005"),
    (uuid.UUID, ID, b'"12345678-1234-5678-1234-567812345678"'),
    (Decimal, Decimal("0.10000000000000000000000001"), b'"0.10000000000000000000000001"'),
    (Color, Color.GREEN, b'"green"'),
    (Level, Level.HIGH, b"2"),
    (set[int], {3, 1, 2}, b"[1,2,3]"),
    (frozenset[str], frozenset({"b", "a"}), b'["a","b"]'),
    (tuple[int, str], (1, "a"), b'[1,"a"]'),
    (tuple[date, ...], (date(2024, 1, 1), date(2024, 1, 2)), b'["2024-01-01","2024-01-02"]'),
    (tuple, (1, "a"), b'[1,"a"]'),
    (Literal["a", "b"], "b", b'"b"'),
    (Literal[1, 2], 2, b"2"),
    (list[datetime], [AT], b'["2024-05-06T07:08:09.123456+00:00"]'),
    (dict[str, uuid.UUID], {"id": ID}, b'{"id":"12345678-1234-5678-1234-567812345678"}'),
    (dict[uuid.UUID, int], {ID: 1}, b'{"12345678-1234-5678-1234-567812345678":1}'),
    (dict[Level, str], {Level.LOW: "x"}, b'{"1":"x"}'),
    (Price, Price(Decimal("19.99"), Color.RED), b'{"amount":"19.99","color":"red"}'),
    (Optional[date], date(2024, 1, 1), b'"2024-01-01"'),  # noqa: UP045 - typing's spelling
    (Optional[date], None, b"null"),  # noqa: UP045
    (date | None, date(2024, 1, 1), b'"2024-01-01"'),
    (Slot, Slot(starts=time(9), length=timedelta(minutes=30)), b'{"starts":"09:00:00","length":1800.0}'),
]


@pytest.mark.parametrize(
    ("tp", "value", "encoded"), ROUND_TRIPS, ids=[repr(v) for _, v, _ in ROUND_TRIPS]
)
def test_round_trip(tp: Any, value: Any, encoded: bytes) -> None:
    serde = serde_for(tp)
    assert serde.serialize(value) == encoded
    back = serde.deserialize(encoded)
    assert back == value
    assert type(back) is type(value)


def test_nested_values_come_back_as_their_types() -> None:
    price = serde_for(Price).deserialize(b'{"amount":"1.10","color":"green"}')
    assert type(price.amount) is Decimal and str(price.amount) == "1.10"
    assert price.color is Color.GREEN
    (at,) = serde_for(list[datetime]).deserialize(b'["2024-05-06T07:08:09+02:00"]')
    assert at.utcoffset() == timedelta(hours=2)
    slot = serde_for(Slot).deserialize(b'{"starts":"09:30:00","length":90}')
    assert slot == {"starts": time(9, 30), "length": timedelta(seconds=90)}


@dataclass
class Line:
    qty: int
    total: Decimal = field(default=Decimal("0"), init=False)

    def __post_init__(self) -> None:
        self.total = Decimal(self.qty) * Decimal("2.5")


def test_a_field_outside_init_is_written_and_not_read_back() -> None:
    serde = serde_for(Line)
    data = serde.serialize(Line(2))
    assert data == b'{"qty":2,"total":"5.0"}'
    assert serde.deserialize(data) == Line(2)  # the class sets it again, from qty
    assert serde.deserialize(b'{"qty":4,"total":"1"}').total == Decimal("10.0")


def test_decimal_and_timedelta_accept_json_numbers() -> None:
    assert serde_for(Decimal).deserialize(b"0.1") == Decimal("0.1")  # not 0.1000000000000000055...
    assert serde_for(Decimal).deserialize(b"7") == Decimal(7)
    assert serde_for(timedelta).deserialize(b"2") == timedelta(seconds=2)


REFUSED: list[tuple[Any, bytes]] = [
    (Literal["a", "b"], b'"zzz"'),
    (Literal[1, 2], b"true"),  # True == 1 in Python, not in the literal
    (Literal[1, 2], b'"1"'),
    (datetime, b'"not a date"'),
    (datetime, b"1714979289"),
    (date, b'"2024-02-30"'),
    (time, b'"25:00"'),
    (uuid.UUID, b'"not-a-uuid"'),
    (uuid.UUID, b"12"),
    (Decimal, b'"one"'),
    (Decimal, b"true"),
    (timedelta, b'"1h"'),
    (timedelta, b"true"),
    (Color, b'"blue"'),
    (Level, b"3"),
    (set[int], b"{}"),
    (set[int], b'[1,"a"]'),
    (tuple[int, str], b"[1]"),
    (list[datetime], b'["2024-01-01", "x"]'),
    (dict[str, uuid.UUID], b'{"a":"b"}'),
    (dict[uuid.UUID, int], b'{"a":1}'),
    (Price, b'{"amount":"x","color":"red"}'),
    (Price, b'{"amount":"1","color":"teal"}'),
    (Optional[date], b'"yesterday"'),  # noqa: UP045
    (Slot, b'{"starts":"9am","length":1}'),
]


@pytest.mark.parametrize(("tp", "payload"), REFUSED, ids=[p.decode() for _, p in REFUSED])
def test_bad_values_are_refused_like_other_decoding_errors(tp: Any, payload: bytes) -> None:
    with pytest.raises(TerminalError) as refused:
        serde_for(tp).deserialize(payload)
    assert refused.value.code == 400
    assert refused.value.message.startswith("cannot decode"), refused.value


def test_literal_refusal_names_the_literal() -> None:
    with pytest.raises(TerminalError, match=r"'zzz' is not one of Literal\['a', 'b'\]"):
        serde_for(Literal["a", "b"]).deserialize(b'"zzz"')


svc = df.Service("SerdeTypes")


def _now() -> datetime:
    return AT


@svc.handler()
async def plan(ctx: df.Context, booking: Booking) -> dict[str, Any]:
    assert type(booking.at) is datetime  # decoded from the ISO string
    checked = await ctx.run("now", _now)  # journaled as a string, read back as a datetime
    assert type(checked) is datetime
    return {"day": booking.at.date(), "tags": set(booking.tags), "color": Color.RED,
            "lead": booking.at - checked}


@svc.handler()
async def colors(ctx: df.Context, names: set[str]) -> set[Color]:
    return {Color(n) for n in names}


@svc.handler()
async def pick(ctx: df.Context, choice: Literal["a", "b"]) -> str:
    return choice


def test_handlers_take_and_return_the_new_types(tmp_path: Path) -> None:
    async def body() -> None:
        async with engine_for(svc, always_replay=True) as e:
            out = await e.invoke(plan, Booking(datetime(2024, 5, 7, 7, 8, 9, 123456,
                                                        tzinfo=timezone.utc), ["b", "a", "b"]))
            assert out == {"day": "2024-05-07", "tags": ["a", "b"], "color": "red",
                           "lead": 86400.0}
            assert await e.invoke(colors, {"red", "green"}) == {Color.RED, Color.GREEN}
            assert await e.invoke(pick, "a") == "a"
            _, ok, value = await e.invoke_raw("SerdeTypes", "pick", b'"zzz"')
            assert not ok
            code, message = value  # type: ignore[misc]
            assert code == 400 and message.startswith("cannot decode"), message

    run(body())
