"""Request identity: restate-server signs requests with an Ed25519 key (JWT ``v1``).

Keys are configured as ``publickeyv1_<base58 of the 32-byte public key>``. A request must
carry ``x-restate-signature-scheme: v1`` and ``x-restate-jwt-v1: <JWT>`` signed with EdDSA,
whose ``aud`` is the request path and whose ``exp``/``nbf``/``iat`` hold now (no leeway).
Verification uses the ``cryptography`` package.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, MutableMapping
from typing import Any

__all__ = ["IdentityVerifier", "parse_key"]

_PREFIX = "publickeyv1_"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58decode(s: str) -> bytes:
    n = 0
    for c in s:
        i = _B58.find(c)
        if i < 0:
            raise ValueError(f"invalid base58 character {c!r}")
        n = n * 58 + i
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(s) - len(s.lstrip("1"))
    return b"\x00" * pad + raw


def _b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def parse_key(key: str) -> bytes:
    """The 32 raw bytes of a ``publickeyv1_…`` key."""
    if not key.startswith(_PREFIX):
        raise ValueError(f"identity keys look like '{_PREFIX}…', got {key[:20]!r}")
    raw = _b58decode(key[len(_PREFIX) :])
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return raw


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class IdentityVerifier:
    """Checks the runtime's signature on each request."""

    def __init__(self, keys: Iterable[str]) -> None:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "request identity verification needs the 'cryptography' package "
                "(pip install cryptography)"
            ) from e
        self._keys = [Ed25519PublicKey.from_public_bytes(parse_key(k)) for k in keys]
        if not self._keys:
            raise ValueError("no identity keys given")

    def verify(self, scope: MutableMapping[str, Any], path: str) -> str | None:
        """``None`` if the request is signed by one of the keys, else why not."""
        headers = {bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1") for k, v in scope.get("headers", ())}
        scheme = headers.get("x-restate-signature-scheme")
        if scheme != "v1":
            return f"request identity required: signature scheme is {scheme or 'missing'}, expected v1"
        token = headers.get("x-restate-jwt-v1")
        if not token:
            return "request identity required: missing x-restate-jwt-v1"
        try:
            head_b64, claims_b64, sig_b64 = token.split(".")
            head = json.loads(_b64url(head_b64))
            claims = json.loads(_b64url(claims_b64))
            signature = _b64url(sig_b64)
        except (ValueError, json.JSONDecodeError):
            return "malformed JWT"
        if not isinstance(head, dict) or not isinstance(claims, dict):
            return "malformed JWT: header and claims must be JSON objects"
        if head.get("alg") != "EdDSA":
            return f"unsupported JWT algorithm {head.get('alg')!r}"
        signed = f"{head_b64}.{claims_b64}".encode()
        if not any(self._valid(k, signature, signed) for k in self._keys):
            return "JWT signature does not match any identity key"
        now = time.time()
        for claim in ("aud", "exp", "iat", "nbf"):
            if claim not in claims:
                return f"JWT lacks the {claim!r} claim"
        if claims["aud"] != path and not (isinstance(claims["aud"], list) and path in claims["aud"]):
            return f"JWT audience {claims['aud']!r} is not {path!r}"
        if not all(_is_number(claims[c]) for c in ("exp", "iat", "nbf")):
            return "malformed JWT: exp, iat and nbf must be numbers"
        if not (claims["nbf"] <= now < claims["exp"]):
            return "JWT expired or not yet valid"
        return None

    @staticmethod
    def _valid(key: Any, signature: bytes, data: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            key.verify(signature, data)
            return True
        except InvalidSignature:
            return False
