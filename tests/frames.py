"""A small reader of service-protocol frames, for assertions in tests."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any


def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def fields(b: bytes) -> list[tuple[int, Any]]:
    """Top-level protobuf fields: (number, int | bytes)."""
    out: list[tuple[int, Any]] = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
            out.append((num, v))
        elif wire == 2:
            n, i = _varint(b, i)
            out.append((num, bytes(b[i : i + n])))
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return out


@dataclass
class Frame:
    ty: int
    flags: int
    payload: bytes

    def field(self, num: int) -> Any:
        for n, v in fields(self.payload):
            if n == num:
                return v
        return None


def frames(data: bytes) -> list[Frame]:
    out = []
    i = 0
    while i < len(data):
        (h,) = struct.unpack(">Q", data[i : i + 8])
        n = h & 0xFFFFFFFF
        out.append(Frame(h >> 48, (h >> 32) & 0xFFFF, data[i + 8 : i + 8 + n]))
        i += 8 + n
    return out


OUTPUT = 0x0401
END = 0x0003
ERROR = 0x0002
SUSPENSION = 0x0001
PROPOSE_RUN = 0x0005


def output_value(fs: list[Frame]) -> bytes | None:
    """The value bytes of the OutputCommand, if any."""
    for f in fs:
        if f.ty == OUTPUT:
            value = f.field(14)
            return None if value is None else dict(fields(value)).get(1, b"")
    return None


def error_of(fs: list[Frame]) -> tuple[int, str, int | None] | None:
    for f in fs:
        if f.ty == ERROR:
            d = dict(fields(f.payload))
            return d.get(1, 0), d.get(2, b"").decode(), d.get(4)
    return None


def encode(ty: int, payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">Q", (ty << 48) | (flags << 32) | len(payload)) + payload
