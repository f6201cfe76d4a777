"""A third attack review (h12), as an outside attacker: each finding's regression test.

Each test failed before its fix (findings 2 and 6, in verifier.py and tokens.py, were fixed
after the review, by the lead, as the reviewer proposed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route

from wimse_wpt import DevIssuer, SigningKey, VerificationError, Verifier, WPTAuth
from wimse_wpt.client import adrop_credentials_on_redirect, drop_credentials_on_redirect
from wimse_wpt.coexistence import BearerCoexistence
from wimse_wpt.middleware import RouteRule, WPTMiddleware
from wimse_wpt.tokens import token_hash

from .conftest import NOW, World, sign_raw
from .rollout import running
from .servers import serve

# --- finding 1: an excluded path hands the app the WIT and WPT ------------------------------


def test_excluded_path_strips_the_credentials_too() -> None:
    # WPTAuth signs every request, excluded paths included: the app behind an exclusion
    # (a public proxy route, a handler that logs or forwards headers) must not receive a
    # WIT and an unused, still valid WPT it could forward. strip_credentials promises that
    # "the app never sees a WIT or WPT it could forward".
    with running(exclude=["/public/*", "/healthz"]) as app, app.client() as client:
        for path in ("/public/x", "/healthz"):
            response = client.get(path)
            assert response.status_code == 200
            headers = response.json()["headers"]
            assert "workload-identity-token" not in headers and "workload-proof-token" not in headers, path
    with running("wpt-02", exclude=["/public/*"]) as app, app.client() as client:
        headers = client.get("/public/x").json()["headers"]
        assert "workload-identity-token" not in headers and "authorization" not in headers


# --- finding 2: the WIT's exp is not checked again after the replay store's await ------------


class _SlowStore:
    """An async replay store that answers after the clock moved (a slow Redis round trip)."""

    def __init__(self, world: World, seconds: float) -> None:
        self.world, self.seconds = world, seconds
        self.seen: set[bytes] = set()

    async def check_and_record(self, key: bytes, ttl: float, workload: str) -> bool:
        self.world.now += self.seconds
        first = key not in self.seen
        self.seen.add(key)
        return first


async def test_a_wit_that_expired_while_the_replay_store_answered_is_refused() -> None:
    world = World()
    world.wit = world.issuer.issue_wit("wimse://example.com/specific-workload", world.key, now=NOW, lifetime=1)
    world.verifier.replay_cache = _SlowStore(world, 2.0)  # type: ignore[assignment]
    headers = world.headers(world.wpt(lifetime=60))
    with pytest.raises(VerificationError) as caught:
        await world.verify(headers)
    assert caught.value.problem.code == "wit-expired"


# --- finding 3: a redirect carries the WIT and an unused WPT to another origin ---------------


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"headers": sorted(request.headers.keys())})


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
def test_a_redirect_to_another_target_never_carries_the_credentials(profile: str) -> None:
    # httpx follows redirects inside the auth flow: the redirected request is a copy of the
    # signed one, Workload-Identity-Token and Workload-Proof-Token included (it drops only
    # Authorization, and only across origins). A service (or a proxy in front of it) that
    # redirects before verifying hands another origin the WIT and a live, unused proof for the
    # first target: replayable there once. The hook drops them when the target changed.
    other = Starlette(routes=[Route("/{p:path}", _echo, methods=["GET", "POST"])])
    with serve(other) as b:

        async def redirect(request: Request) -> RedirectResponse:
            return RedirectResponse(b + request.url.path, status_code=307)

        first = Starlette(routes=[Route("/go/{p:path}", redirect, methods=["GET", "POST"]),
                                  Route("/here", _echo, methods=["GET", "POST"]),
                                  Route("/moved", lambda r: RedirectResponse("/here", status_code=307),
                                        methods=["GET", "POST"])])
        with serve(first) as a:
            issuer = DevIssuer()
            key = SigningKey.generate("ES256")
            auth = WPTAuth(key, issuer.issue_wit("wimse://example.com/caller", key), profile=profile)  # type: ignore[arg-type]
            hooks = {"request": [drop_credentials_on_redirect]}
            with httpx.Client(auth=auth, follow_redirects=True, event_hooks=hooks) as client:
                response = client.post(a + "/go/orders")
                assert str(response.url).startswith(b)
                leaked = {"workload-identity-token", "workload-proof-token", "authorization"} & set(response.json()["headers"])
                assert not leaked
                # Same origin, another path: the proof names the first one, so it goes too.
                response = client.post(a + "/moved")
                assert str(response.url) == a + "/here"
                assert not {"workload-identity-token", "workload-proof-token"} & set(response.json()["headers"])
                # No redirect: the signed request keeps its credentials.
                assert "workload-identity-token" in client.post(a + "/here").json()["headers"]

            async def run() -> None:
                async with httpx.AsyncClient(
                    auth=auth, follow_redirects=True, event_hooks={"request": [adrop_credentials_on_redirect]}
                ) as aclient:
                    response = await aclient.post(a + "/go/orders")
                    assert not {"workload-identity-token", "workload-proof-token"} & set(response.json()["headers"])
                    assert "workload-identity-token" in (await aclient.post(a + "/here")).json()["headers"]

            asyncio.run(run())


# --- finding 4: a request-target without its leading "/" skipped the path policy -------------


def _raw_get(origin: str, target: bytes) -> tuple[bytes, bytes]:
    port = int(origin.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


async def _by_segments(scope: Any, receive: Any, send: Any) -> None:
    # An app (or framework) that names resources by their segments, whatever leads them.
    await PlainTextResponse("served " + scope["path"].strip("/"))(scope, receive, send)


def test_a_path_without_its_leading_slash_is_refused_not_judged_by_the_default_rule() -> None:
    # h11 (uvicorn) accepts any visible characters as the request-target: "GET admin/x" reaches
    # the app as path "admin/x". The fast path took it as clean, so no rule named it and the
    # default (optional here) let it in unauthenticated, past the enforce rule on /admin/*; the
    # slow path already refused such a path (asterisk or absolute form) as ambiguous.
    issuer = DevIssuer()
    verifier = Verifier({"example.com": issuer.jwks}, ["http://127.0.0.1"])
    app = WPTMiddleware(_by_segments, verifier, mode="optional", routes=[RouteRule("/admin/*", mode="enforce")])
    # h11 explicitly: with httptools installed uvicorn picks it, and it refuses such targets itself.
    with serve(app, http="h11") as origin:
        assert _raw_get(origin, b"/admin/x")[0] == b"HTTP/1.1 400 Bad Request"
        for target in (b"admin/x", b"admin", b"*", b"admin/../x"):
            status, body = _raw_get(origin, target)
            assert status == b"HTTP/1.1 400 Bad Request", (target, body)
            assert json.loads(body)["code"] == "path-ambiguous"
        assert _raw_get(origin, b"/open")[1] == b"served open"  # the default still applies to real paths


# --- finding 5: under optional mode a malformed bearer skipped the coexistence policy --------

_MIGRATED = "wimse://example.com/legacy/billing"  # allowed a bearer once, WIT-capable now


async def _check_bearer(token: str) -> str | None:
    return {"tok-migrated": _MIGRATED, "tok-legacy": "wimse://example.com/legacy/reports"}.get(token)


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
@pytest.mark.parametrize("spelling", ["Bearer\ttok-migrated", "Bearer tok-migrated extra", "Bearer\t tok-migrated"])
def test_optional_mode_never_hands_the_app_a_bearer_the_coexistence_policy_did_not_judge(profile: str, spelling: str) -> None:
    # A migrated (WIT-capable) caller is refused a bearer-only request. Spelled with a tab (or
    # anything RFC 9110 refuses), the middleware did not see a Bearer field: "no WIMSE header,
    # no bearer" let it in, unauthenticated, with the field intact, and the app's own bearer
    # auth (the one the migration fronts; parsers that split on any whitespace abound) read
    # the token: past wit_capable. With a coexistence policy, a malformed Authorization is
    # refused instead; the well-formed one still gets its verdict.
    policy = BearerCoexistence(_check_bearer, allow=["wimse://example.com/legacy/*"], wit_capable=[_MIGRATED])
    with running(profile, mode="optional", bearer=policy) as app:
        refused = httpx.get(app.origin + "/path", headers={"authorization": "Bearer tok-migrated"})
        assert refused.status_code == 403 and refused.json()["code"] == "bearer-refused"
        response = httpx.get(app.origin + "/path", headers={"authorization": spelling})
        assert response.status_code in (400, 401), response.text
        assert response.headers["content-type"] == "application/problem+json"
        # Nothing else changed: no credential at all still passes, unauthenticated.
        assert httpx.get(app.origin + "/path").json()["user"] is None
        ok = httpx.get(app.origin + "/path", headers={"authorization": "Bearer tok-legacy"}).json()
        assert ok["bearer_caller"] == "wimse://example.com/legacy/reports"


# --- finding 6: an RSA confirmation key with a huge public exponent ---------------------------


def _b64u(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


async def test_an_rsa_confirmation_key_with_a_huge_exponent_is_refused() -> None:
    world = World(workload_alg="ES256")
    n = secrets.randbits(3072) | (1 << 3071) | 1
    e = secrets.randbits(3071) | (1 << 3070) | 1
    jwk = {"kty": "RSA", "n": _b64u(n), "e": _b64u(e), "alg": "PS256"}
    wit = world.issuer.issue_wit("wimse://example.com/specific-workload", world.key, now=NOW, claims={"cnf": {"jwk": jwk}})
    proof = sign_raw(world.key, {"typ": "wpt+jwt", "alg": "PS256"}, {
        "aud": "https://workload.example.com/path", "exp": int(NOW) + 60, "jti": "j" * 22, "wth": token_hash(wit)})
    problem = await world.reject(world.headers(proof, wit))
    assert problem.code == "wit-cnf"


# --- finding 7: the example's default dev issuer file lives where another local user writes ---


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX file ownership and modes")
@pytest.mark.parametrize(
    ("dir_mode", "file_mode"), [(0o777, 0o600), (0o757, 0o600), (0o755, 0o644), (0o700, 0o660), (0o700, 0o604)]
)
def test_a_dev_issuer_file_another_local_user_could_have_written_is_refused(
    tmp_path: Path, dir_mode: int, file_mode: int
) -> None:
    # Without WIMSE_TRUST_ANCHORS the example service trusts the key in
    # $TMPDIR/wimse-wpt-dev/issuer.json, made on first use: any local user who creates that
    # folder (in a world-writable /tmp) or that file first, or can write either later,
    # chooses the issuer key the service trusts, and mints WITs it accepts. SSH's rule for
    # its keys applies: a file (and its folder) that others can write is refused.
    shared = tmp_path / "wimse-wpt-dev"
    shared.mkdir()
    planted = DevIssuer()
    planted.save(shared / "issuer.json")
    os.chmod(shared / "issuer.json", file_mode)
    os.chmod(shared, dir_mode)
    with pytest.raises(ValueError, match="other users"):
        DevIssuer.load_or_create(shared / "issuer.json")


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX file ownership and modes")
def test_a_private_dev_issuer_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "issuer.json"
    created = DevIssuer.load_or_create(path)
    assert path.parent.stat().st_mode & 0o077 == 0  # the folder it makes is private too
    assert DevIssuer.load_or_create(path).kid == created.kid
    # A group-writable folder (user-private groups, umask 002) and a sticky shared one are fine.
    for mode in (0o775, 0o1777):
        os.chmod(path.parent, mode)
        assert DevIssuer.load_or_create(path).kid == created.kid


# --- finding 8: a route rule under an exclusion never applied, in silence ----------------------


@pytest.mark.parametrize("rule", ["/public/admin/*", "/public/admin", "/public/*", "/public"])
def test_a_route_rule_that_an_exclusion_would_always_open_is_a_configuration_error(rule: str) -> None:
    # "The most specific rule wins" reads as if RouteRule("/public/admin/*", allow=[ops]) guarded
    # /public/admin under exclude=["/public/*"]; exclusions are judged first, so it never
    # applied and /public/admin/x answered without any token. Refuse the configuration.
    verifier = Verifier({"example.com": DevIssuer().jwks}, ["http://127.0.0.1"])
    with pytest.raises(ValueError, match="exclu"):
        WPTMiddleware(_by_segments, verifier, exclude=["/public/*"],
                      routes=[RouteRule(rule, allow=["wimse://example.com/ops/*"])])
    # A rule beside an exclusion, or only partly under a plain prefix one, still configures.
    WPTMiddleware(_by_segments, verifier, exclude=["/public/*", "/v1*"],
                  routes=[RouteRule("/publications/*"), RouteRule("/v/*"), RouteRule("/admin")])
