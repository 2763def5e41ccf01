"""Journals recorded by restate-server, read through its admin API, for an offline replay.

``POST {admin}/query`` runs SQL over the server's system tables and answers JSON rows
(``accept: application/json``). Two tables are read:

- ``sys_invocation``: ``target_service_name``, ``target_handler_name``,
  ``target_service_key``, ``status``, ``pinned_service_protocol_version``, ``journal_size``;
- ``sys_journal``: one row per entry, ``index`` (position in the journal), ``entry_type``
  (``"Command: Run"``, ``"Notification: Run"``, ...), ``version`` (2 for the journal of
  commands and notifications) and ``raw`` (a binary column, hex in JSON): the protobuf
  payload of the entry's protocol message, without the 8-byte frame header;
- ``state``: a virtual object's state (``service_name``, ``service_key``, ``key``, ``value``,
  binary), sent whole in the ``StartMessage`` as the server does without lazy state.

The request the server would start an attempt with is rebuilt from them: a ``StartMessage``
(the invocation id's 24 raw bytes, its printable form, the entry count, the object's key and
state, and the random seed the server derives from the id) followed by every entry framed
with its message type.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from . import _core

__all__ = ["AdminError", "RestateJournal", "invocation_id_bytes", "random_seed"]

_BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MASK = (1 << 64) - 1


class AdminError(Exception):
    """The admin API could not be reached, or refused a query."""


@dataclass(frozen=True)
class RemoteRequest:
    """The request an attempt would start with (like ``_core.AttemptRequest``)."""

    body: bytes
    entries: int
    content_type: str


def _base62(text: str) -> int:
    n = 0
    for ch in text:
        i = _BASE62.find(ch)
        if i < 0:
            raise ValueError(ch)
        n = n * 62 + i
    return n


def invocation_id_bytes(invocation_id: str) -> bytes:
    """The 24 raw bytes of a restate invocation id ``inv_1…``: the partition key (8 bytes)
    and the invocation's uuid (16 bytes). Each part is printed as a fixed-width base62 number
    (11 and 22 digits) of its bytes read little-endian."""
    if not invocation_id.startswith("inv_1") or len(invocation_id) != 38:
        raise ValueError(f"not a restate invocation id: {invocation_id!r}")
    body = invocation_id[5:]
    try:
        pk, uuid = _base62(body[:11]), _base62(body[11:])
        return pk.to_bytes(8, "little") + uuid.to_bytes(16, "little")
    except (ValueError, OverflowError):
        raise ValueError(f"not a restate invocation id: {invocation_id!r}") from None


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _sipround(v: list[int]) -> None:
    v[0] = (v[0] + v[1]) & _MASK
    v[1] = _rotl(v[1], 13) ^ v[0]
    v[0] = _rotl(v[0], 32)
    v[2] = (v[2] + v[3]) & _MASK
    v[3] = _rotl(v[3], 16) ^ v[2]
    v[0] = (v[0] + v[3]) & _MASK
    v[3] = _rotl(v[3], 21) ^ v[0]
    v[2] = (v[2] + v[1]) & _MASK
    v[1] = _rotl(v[1], 17) ^ v[2]
    v[2] = _rotl(v[2], 32)


def _siphash13(data: bytes) -> int:
    """SipHash-1-3 with a zero key."""
    v = [0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573]
    tail = len(data) - len(data) % 8
    for i in range(0, tail, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v[3] ^= m
        _sipround(v)
        v[0] ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[tail:], "little")
    v[3] ^= last
    _sipround(v)
    v[0] ^= last
    v[2] ^= 0xFF
    for _ in range(3):
        _sipround(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def random_seed(raw_id: bytes) -> int:
    """The ``StartMessage.random_seed`` restate-server sends: the id's raw bytes hashed as a
    length-prefixed byte array (a little-endian u64 length, then the bytes) with SipHash-1-3
    and a zero key."""
    return _siphash13(len(raw_id).to_bytes(8, "little") + raw_id)


def _type_codes() -> dict[str, int]:
    codes: dict[str, int] = {}
    for code in [*range(0x0400, 0x0415), *range(0x8000, 0x8015), 0xFBFF]:
        try:
            name = _core.Message(code).type_name
        except Exception:  # noqa: BLE001 - a code the core does not know
            continue
        if name.endswith("Command"):
            codes["Command: " + name[: -len("Command")]] = code
        elif name.endswith("Completion"):
            codes["Notification: " + name[: -len("Completion")]] = code
    codes["Notification: Signal"] = 0xFBFF
    return codes


_CODES = _type_codes()


def entry_type_code(entry_type: str) -> int:
    """The protocol message type of a ``sys_journal.entry_type``."""
    code = _CODES.get(entry_type)
    if code is None and entry_type.startswith("Notification") and "Signal" in entry_type:
        code = 0xFBFF
    if code is None:
        raise AdminError(f"journal entry of unknown type {entry_type!r}")
    return code


def _sql_string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class RestateJournal:
    """Invocations and journals of a restate-server, through its admin API at ``admin``."""

    def __init__(self, admin: str, timeout: float = 30.0) -> None:
        base = admin.rstrip("/")
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise AdminError(f"--admin must be an http(s) URL, not {admin!r}")
        self.base = base
        self.timeout = timeout

    def query(self, sql: str) -> list[dict[str, Any]]:
        data = json.dumps({"query": sql}).encode()
        request = urllib.request.Request(
            f"{self.base}/query",
            data=data,
            method="POST",
            headers={"content-type": "application/json", "accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                text = json.loads(text).get("message") or text
            except (ValueError, AttributeError):
                pass
            raise AdminError(f"query refused by {self.base} [{e.code}]: {text}") from None
        except (urllib.error.URLError, OSError) as e:
            raise AdminError(f"no admin API at {self.base}: {getattr(e, 'reason', e)}") from None
        rows: list[dict[str, Any]] = json.loads(body)["rows"]
        return rows

    _COLUMNS = (
        "id, target_service_name, target_handler_name, target_service_key, status, "
        "pinned_service_protocol_version, journal_size, idempotency_key, retry_count"
    )

    def invocation(self, invocation_id: str) -> tuple[_core.InvocationRow, int | None] | None:
        """The invocation (as a ``_core.InvocationRow``) and its pinned protocol version."""
        rows = self.query(
            f"SELECT {self._COLUMNS} FROM sys_invocation WHERE id = {_sql_string(invocation_id)}"
        )
        return _row(rows[0]) if rows else None

    def invocations(
        self, services: list[str], statuses: list[str] | None
    ) -> list[tuple[_core.InvocationRow, int | None]]:
        """The invocations of ``services`` with one of ``statuses`` (default: unfinished)."""
        if not services:
            return []
        where = "target_service_name IN (" + ", ".join(map(_sql_string, services)) + ")"
        if statuses:
            where += " AND status IN (" + ", ".join(map(_sql_string, statuses)) + ")"
        else:
            where += " AND status <> 'completed'"
        rows = self.query(
            f"SELECT {self._COLUMNS} FROM sys_invocation WHERE {where} ORDER BY created_at"
        )
        return [_row(r) for r in rows]

    def state(self, service: str, key: str) -> list[tuple[bytes, bytes]]:
        rows = self.query(
            "SELECT key, value FROM state WHERE service_name = "
            f"{_sql_string(service)} AND service_key = {_sql_string(key)} ORDER BY key"
        )
        return [(str(r["key"]).encode(), bytes.fromhex(r["value"] or "")) for r in rows]

    def attempt_request(
        self, row: _core.InvocationRow, protocol_version: int | None, keyed: bool
    ) -> RemoteRequest:
        """StartMessage + the stored journal, as the server would send them now."""
        entries = self.query(
            "SELECT index, entry_type, version, raw FROM sys_journal WHERE id = "
            f"{_sql_string(row.id)} ORDER BY index"
        )
        body = bytearray()
        for e in entries:
            if e.get("version") not in (None, 2):
                raise AdminError(
                    f"{row.id}: journal entry {e['index']} is of journal version "
                    f"{e['version']}; only version 2 (commands and notifications) replays"
                )
            code = entry_type_code(str(e["entry_type"]))
            body += _core.encode_frame(code, bytes.fromhex(e["raw"] or ""))
        raw_id = invocation_id_bytes(row.id)
        state = self.state(row.service, row.key) if keyed else []
        version = protocol_version or 6
        start = _core.Message(
            "Start",
            id=raw_id,
            debug_id=row.id,
            known_entries=len(entries),
            state_map=state,
            partial_state=not keyed,
            key=row.key,
            random_seed=random_seed(raw_id) if version >= 6 else 0,
        )
        return RemoteRequest(
            start.encode() + bytes(body),
            len(entries),
            f"application/vnd.restate.invocation.v{version}",
        )


def _row(r: dict[str, Any]) -> tuple[_core.InvocationRow, int | None]:
    version = r.get("pinned_service_protocol_version")
    row = _core.InvocationRow(
        str(r["id"]),
        str(r.get("target_service_name") or ""),
        str(r.get("target_handler_name") or ""),
        str(r.get("target_service_key") or ""),
        str(r.get("status") or ""),
        int(r.get("retry_count") or 0),
        0,
        r.get("idempotency_key"),
        0,
        0,
        None,
        None,
        None,
        int(r.get("journal_size") or 0),
        None,
    )
    return row, (int(version) if version is not None else None)
