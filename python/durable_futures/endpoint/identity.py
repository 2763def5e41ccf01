"""Request identity: restate-server signs requests with an Ed25519 key (JWT ``v1``).

Keys are configured as ``publickeyv1_<base58 of the 32-byte public key>``. A request must
carry ``x-restate-signature-scheme: v1`` and ``x-restate-jwt-v1: <JWT>`` signed with EdDSA,
whose ``aud`` is the request path (from ``/invoke/…`` or ``/discover`` on, whatever prefix
the endpoint is served under) and whose ``exp``/``nbf``/``iat`` hold now (no leeway).
The compiled core verifies (``durable_futures._core.IdentityVerifier``): no cryptography
package is needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from .. import _core
from .._asgi import Scope, header

__all__ = ["IdentityVerifier", "parse_key"]


def parse_key(key: str) -> bytes:
    """The 32 raw bytes of a ``publickeyv1_…`` key."""
    return _core.parse_identity_key(key)


class IdentityVerifier:
    """Checks the runtime's signature on each request."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._verifier = _core.IdentityVerifier(list(keys))

    def verify(self, scope: Scope, path: str) -> str | None:
        """``None`` if the request is signed by one of the keys, else why not."""
        return self._verifier.verify(
            header(scope, b"x-restate-signature-scheme"),
            header(scope, b"x-restate-jwt-v1"),
            path,
            time.time(),
        )
