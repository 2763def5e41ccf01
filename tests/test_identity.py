"""Request identity: Ed25519-signed JWTs (scheme v1) with ``publickeyv1_<base58>`` keys.

The tests play restate-server: they generate a key pair, configure the endpoint with the
public key, and sign each request's JWT themselves.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import durable_futures as df

from .asgi_client import Response, call
from .frames import frames, output_value
from .journal import V6, Journal, run_in_thread

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\x00"))) + out


def public_key_string(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "publickeyv1_" + b58encode(raw)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(key: Ed25519PrivateKey, claims: Any, header: Any = None) -> str:
    head = b64url(json.dumps(header if header is not None else {"alg": "EdDSA", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{b64url(signature)}"


def claims(aud: Any, *, iat: Any = None, nbf: Any = None, exp: Any = None) -> dict[str, Any]:
    now = int(time.time())
    return {
        "aud": aud,
        "iat": now if iat is None else iat,
        "nbf": now - 5 if nbf is None else nbf,
        "exp": now + 60 if exp is None else exp,
    }


KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()

svc = df.Service("Signed")


@svc.handler()
async def hello(ctx: df.Context, name: str) -> str:
    return f"hi {name}"


APP = df.asgi_app(svc, identity_keys=[public_key_string(KEY)])
INVOKE = "/invoke/Signed/hello"


def signed_headers(token: str | None, scheme: str | None = "v1") -> list[tuple[str, str]]:
    headers = [("content-type", V6), ("accept", "application/vnd.restate.endpointmanifest.v4+json")]
    if scheme is not None:
        headers.append(("x-restate-signature-scheme", scheme))
    if token is not None:
        headers.append(("x-restate-jwt-v1", token))
    return headers


def send(path: str, headers: list[tuple[str, str]], app: Any = APP) -> Response:
    method = "POST" if path.startswith("/invoke") else "GET"
    body = Journal(b'"sig"').body() if method == "POST" else b""
    return run_in_thread(call(app, path, body, method=method, headers=headers, timeout=10), timeout=15)


@pytest.mark.parametrize("path", [INVOKE, "/discover"])
def test_a_valid_signature_is_accepted(path: str) -> None:
    resp = send(path, signed_headers(jwt(KEY, claims(path))))
    assert resp.status == 200, resp.body
    if path == INVOKE:
        fs = frames(resp.body)
        assert json.loads(output_value(fs) or b"") == "hi sig" and fs[-1].type_name == "End"
    else:
        assert json.loads(resp.body)["services"][0]["name"] == "Signed"


def test_an_audience_list_containing_the_path_is_accepted() -> None:
    resp = send(INVOKE, signed_headers(jwt(KEY, claims(["/other", INVOKE]))))
    assert resp.status == 200


def test_any_of_several_keys_is_accepted() -> None:
    app = df.asgi_app(svc, identity_keys=[public_key_string(OTHER), public_key_string(KEY)])
    assert send(INVOKE, signed_headers(jwt(KEY, claims(INVOKE))), app).status == 200


NOW = int(time.time())


def tampered(token: str) -> str:
    """The same signature over claims that were changed afterwards."""
    head, _, signature = token.split(".")
    return f"{head}.{b64url(json.dumps(claims(INVOKE, exp=NOW + 10**6)).encode())}.{signature}"


REJECTED: dict[str, tuple[list[tuple[str, str]], str]] = {
    "unsigned": (signed_headers(None, None), "signature scheme is missing"),
    "scheme_unsigned": (signed_headers(None, "unsigned"), "signature scheme is unsigned"),
    "no_token": (signed_headers(None), "missing x-restate-jwt-v1"),
    "forged": (signed_headers(jwt(OTHER, claims(INVOKE))), "does not match"),
    "wrong_aud": (signed_headers(jwt(KEY, claims("/invoke/Signed/other"))), "audience"),
    "aud_of_discover": (signed_headers(jwt(KEY, claims("/discover"))), "audience"),
    "expired": (signed_headers(jwt(KEY, claims(INVOKE, iat=NOW - 120, nbf=NOW - 120, exp=NOW - 60))), "expired"),
    "not_yet_valid": (signed_headers(jwt(KEY, claims(INVOKE, nbf=NOW + 600, exp=NOW + 900))), "not yet valid"),
    "missing_exp": (
        signed_headers(jwt(KEY, {k: v for k, v in claims(INVOKE).items() if k != "exp"})),
        "lacks the 'exp' claim",
    ),
    "alg_none": (
        signed_headers(jwt(KEY, claims(INVOKE), {"alg": "none", "typ": "JWT"}).rsplit(".", 1)[0] + "."),
        "algorithm",
    ),
    "tampered_claims": (signed_headers(tampered(jwt(KEY, claims(INVOKE)))), "does not match"),
    "garbage_token": (signed_headers("not-a-jwt"), "malformed JWT"),
    "bad_base64": (signed_headers("!!!.###.$$$"), "malformed JWT"),
    "header_not_an_object": (signed_headers(jwt(KEY, claims(INVOKE), [1, 2])), "malformed JWT"),
    "claims_not_an_object": (signed_headers(jwt(KEY, ["aud"])), "malformed JWT"),
    "non_numeric_times": (signed_headers(jwt(KEY, claims(INVOKE, exp="soon"))), "malformed JWT"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_a_request_that_is_not_properly_signed_is_401(case: str) -> None:
    headers, reason = REJECTED[case]
    resp = send(INVOKE, headers)
    assert resp.status == 401
    assert reason in resp.body.decode(), resp.body
    assert resp.headers["x-restate-server"].startswith("durable-futures/")
    # The app goes on serving signed requests.
    assert send(INVOKE, signed_headers(jwt(KEY, claims(INVOKE)))).status == 200


def test_discover_needs_a_signature_too() -> None:
    assert send("/discover", signed_headers(None, None)).status == 401


def test_health_needs_no_signature() -> None:
    resp = send("/health", [])
    assert resp.status == 200
    assert json.loads(resp.body) == {"status": "ok"}


def test_a_handler_named_health_still_needs_a_signature() -> None:
    s = df.Service("Named")

    @s.handler("health")
    async def health(ctx: df.Context, _: str) -> str:
        return "handler"

    app = df.asgi_app(s, identity_keys=[public_key_string(KEY)])
    assert send("/invoke/Named/health", signed_headers(None, None), app).status == 401
    path = "/invoke/Named/health"
    resp = send(path, signed_headers(jwt(KEY, claims(path))), app)
    assert resp.status == 200 and json.loads(output_value(frames(resp.body)) or b"") == "handler"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("ed25519_abc", "publickeyv1_"),
        ("publickeyv1_0OIl", "invalid base58 character"),
        ("publickeyv1_" + b58encode(b"\x01" * 16), "32 bytes"),
    ],
)
def test_malformed_identity_keys_are_refused_at_startup(key: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        df.asgi_app(svc, identity_keys=[key])


def test_base58_round_trip_of_the_test_encoder() -> None:
    from durable_futures.endpoint.identity import parse_key

    raw = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert parse_key(public_key_string(KEY)) == raw
    leading_zeros = b"\x00\x00" + raw[2:]
    assert parse_key("publickeyv1_" + b58encode(leading_zeros)) == leading_zeros
