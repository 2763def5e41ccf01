"""Request identity under a URL prefix: restate-server signs the path from ``/invoke/…`` or
``/discover`` on, whatever prefix the deployment was registered with (as Restate's SDKs
verify it)."""

from __future__ import annotations

import json

import pytest

from .asgi_client import Response, call
from .frames import frames, output_value
from .journal import Journal, run_in_thread
from .test_identity import APP, INVOKE, KEY, OTHER, claims, jwt, signed_headers


def send(path: str, headers: list[tuple[str, str]]) -> Response:
    method = "GET" if path.endswith("/discover") else "POST"
    body = Journal(b'"sig"').body() if method == "POST" else b""
    return run_in_thread(call(APP, path, body, method=method, headers=headers, timeout=10), timeout=15)


@pytest.mark.parametrize("prefix", ["/svc", "/a/b"])
def test_a_prefixed_invocation_verifies_against_the_unprefixed_path(prefix: str) -> None:
    resp = send(prefix + INVOKE, signed_headers(jwt(KEY, claims(INVOKE))))
    assert resp.status == 200, resp.body
    assert json.loads(output_value(frames(resp.body)) or b"") == "hi sig"


def test_a_prefixed_discovery_verifies_against_discover() -> None:
    resp = send("/svc/discover", signed_headers(jwt(KEY, claims("/discover"))))
    assert resp.status == 200, resp.body
    assert json.loads(resp.body)["services"][0]["name"] == "Signed"


@pytest.mark.parametrize(
    ("path", "aud", "reason"),
    [
        ("/svc" + INVOKE, "/svc" + INVOKE, "audience"),  # the prefix is not signed
        ("/svc" + INVOKE, "/invoke/Signed/other", "audience"),
        ("/svc/discover", "/svc/discover", "audience"),
    ],
)
def test_the_prefix_does_not_widen_what_a_token_is_for(path: str, aud: str, reason: str) -> None:
    resp = send(path, signed_headers(jwt(KEY, claims(aud))))
    assert resp.status == 401 and reason in resp.body.decode(), resp.body


def test_a_prefixed_request_signed_by_another_key_is_refused() -> None:
    resp = send("/svc" + INVOKE, signed_headers(jwt(OTHER, claims(INVOKE))))
    assert resp.status == 401 and "does not match" in resp.body.decode()
