"""The client side: what WPTAuth and mint_wpt sign, and what they refuse to sign.

Round trips go through the real middleware and verifier (httpx's ASGI transport, in process,
so that header values reach the verifier byte for byte as the client wrote them).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from wimse_wpt import DevIssuer, SigningKey, Verifier, WPTAuth, WPTMiddleware, mint_wpt
from wimse_wpt.tokens import b64url_decode

IDENTIFIER = "wimse://example.com/client-test"
ORIGIN = "https://api.example.com"


def claims_of(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


class Recorder:
    """A transport that records what would have been sent, and answers 204."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(204)


@pytest.fixture
def issuer() -> DevIssuer:
    return DevIssuer("example.com")


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("Ed25519")


def sent_proof(request: httpx.Request) -> str:
    return request.headers["workload-proof-token"]


# --- plain http ------------------------------------------------------------------------------


LOOPBACK = ["http://127.0.0.1:8000/x", "http://127.9.8.7/x", "http://[::1]:8080/x", "http://localhost:8000/x",
            "http://LOCALHOST/x", "ws://127.0.0.1:9/ws", "https://api.example.com/x", "wss://api.example.com/ws"]
NOT_LOOPBACK = ["http://api.example.com/x", "http://128.0.0.1/x", "http://10.0.0.1/x", "http://[::2]/x",
                "http://[::ffff:127.0.0.1]/x", "http://localhost.attacker.example/x", "http://127.0.0.1.nip.io/x",
                "http://0.0.0.0/x", "ws://api.example.com/ws", "ftp://api.example.com/x"]


@pytest.mark.parametrize("url", LOOPBACK)
def test_signs_for_https_and_loopback_http(issuer: DevIssuer, key: SigningKey, url: str) -> None:
    wit = issuer.issue_wit(IDENTIFIER, key)
    assert claims_of(mint_wpt(key, wit, url))["aud"] == url
    recorder = Recorder()
    if url.startswith("http"):
        with httpx.Client(transport=httpx.MockTransport(recorder), auth=WPTAuth(key, wit)) as client:
            client.get(url)
        assert len(recorder.sent) == 1 and sent_proof(recorder.sent[0])


@pytest.mark.parametrize("url", NOT_LOOPBACK)
def test_refuses_plain_http_to_other_hosts(issuer: DevIssuer, key: SigningKey, url: str) -> None:
    wit = issuer.issue_wit(IDENTIFIER, key)
    with pytest.raises(ValueError, match="refusing to sign"):
        mint_wpt(key, wit, url)
    recorder = Recorder()
    if url.startswith("http"):
        with httpx.Client(transport=httpx.MockTransport(recorder), auth=WPTAuth(key, wit)) as client, \
                pytest.raises(ValueError, match="refusing to sign"):
            client.get(url)
        assert recorder.sent == []  # nothing left the client: not the WIT, not a proof


async def test_async_client_refuses_plain_http_too(issuer: DevIssuer, key: SigningKey) -> None:
    recorder = Recorder()
    auth = WPTAuth(key, issuer.issue_wit(IDENTIFIER, key))
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder), auth=auth) as client:
        with pytest.raises(ValueError, match="refusing to sign"):
            await client.get("http://api.example.com/x")
        assert (await client.get("http://127.0.0.1:8000/x")).status_code == 204
    assert [str(r.url) for r in recorder.sent] == ["http://127.0.0.1:8000/x"]


def test_plain_http_only_with_the_explicit_opt_in(issuer: DevIssuer, key: SigningKey) -> None:
    wit = issuer.issue_wit(IDENTIFIER, key)
    assert claims_of(mint_wpt(key, wit, "http://api.example.com/x", allow_insecure=True))["aud"] == "http://api.example.com/x"
    recorder = Recorder()
    auth = WPTAuth(key, wit, allow_insecure=True)
    with httpx.Client(transport=httpx.MockTransport(recorder), auth=auth) as client:
        client.get("http://api.example.com/x")
    assert claims_of(sent_proof(recorder.sent[0]))["aud"] == "http://api.example.com/x"


# --- expired WITs ----------------------------------------------------------------------------


def test_refuses_to_sign_with_an_expired_wit(issuer: DevIssuer, key: SigningKey) -> None:
    expired = issuer.issue_wit(IDENTIFIER, key, lifetime=-10)
    with pytest.raises(ValueError, match="expired"):
        mint_wpt(key, expired, ORIGIN + "/x")
    recorder = Recorder()
    with httpx.Client(transport=httpx.MockTransport(recorder), auth=WPTAuth(key, expired)) as client, \
            pytest.raises(ValueError, match="expired"):
        client.get(ORIGIN + "/x")
    assert recorder.sent == []


def test_the_wit_expires_at_exp_exactly(issuer: DevIssuer, key: SigningKey) -> None:
    # The verifier holds a WIT expired from now >= exp: the client stops at the same instant.
    wit = issuer.issue_wit(IDENTIFIER, key, now=1_800_000_000, lifetime=100)
    assert mint_wpt(key, wit, ORIGIN + "/x", now=1_800_000_099)
    with pytest.raises(ValueError, match="expired"):
        mint_wpt(key, wit, ORIGIN + "/x", now=1_800_000_100)


def test_a_rotating_wit_is_checked_on_every_request(issuer: DevIssuer, key: SigningKey) -> None:
    wits = iter([issuer.issue_wit(IDENTIFIER, key), issuer.issue_wit(IDENTIFIER, key, lifetime=-1)])
    recorder = Recorder()
    with httpx.Client(transport=httpx.MockTransport(recorder), auth=WPTAuth(key, lambda: next(wits))) as client:
        assert client.get(ORIGIN + "/x").status_code == 204
        with pytest.raises(ValueError, match="expired"):
            client.get(ORIGIN + "/x")
    assert len(recorder.sent) == 1


@pytest.mark.parametrize(
    "exp", [None, "1900000000", True, [1], {"n": 1}, float("nan"), -(10**400)],
    ids=["absent", "string", "bool", "list", "object", "nan", "huge-negative"],
)
def test_a_wit_without_a_readable_future_exp_is_not_used(issuer: DevIssuer, key: SigningKey, exp: Any) -> None:
    wit = issuer.issue_wit(IDENTIFIER, key, claims={"exp": exp})
    with pytest.raises(ValueError):
        mint_wpt(key, wit, ORIGIN + "/x")


@pytest.mark.parametrize("wit", ["", "x", "a.b", "a.b.c", "a.b.c.d", "é.é.é", "eyJ.!!.x"])
def test_a_wit_that_is_not_a_jws_is_not_used(key: SigningKey, wit: str) -> None:
    with pytest.raises(ValueError):
        mint_wpt(key, wit, ORIGIN + "/x")


def test_a_far_future_wit_is_used(issuer: DevIssuer, key: SigningKey) -> None:
    # Judging a WIT's lifetime is the verifier's call; a huge exp must not crash the client.
    wit = issuer.issue_wit(IDENTIFIER, key, claims={"exp": 10**400})
    assert claims_of(mint_wpt(key, wit, ORIGIN + "/x"))["aud"] == ORIGIN + "/x"


def test_expired_wits_only_with_the_explicit_opt_in(issuer: DevIssuer, key: SigningKey) -> None:
    expired = issuer.issue_wit(IDENTIFIER, key, lifetime=-10)
    assert claims_of(mint_wpt(key, expired, ORIGIN + "/x", allow_expired_wit=True))["aud"] == ORIGIN + "/x"


# --- round trips through the real verifier ---------------------------------------------------


async def echo(request: Request) -> JSONResponse:
    workload = request.state.workload
    return JSONResponse({"workload": workload.identifier, "bound": sorted(workload.bound_tokens)})


@pytest.fixture
def service(issuer: DevIssuer) -> Iterator[tuple[Verifier, Any]]:
    verifier = Verifier({"example.com": issuer.jwks}, [ORIGIN], oth_headers=["X-Session", "x-other"])
    yield verifier, WPTMiddleware(Starlette(routes=[Route("/x", echo, methods=["GET", "POST"])]), verifier)


ODD_SPACING = [" tok", "tok ", "  tok\t", "\ttok", "\t \ttok \t ", "t o k", "tok\t\t"]


@pytest.mark.parametrize("value", ODD_SPACING, ids=repr)
async def test_txn_token_and_oth_with_odd_spacing_verify(
    service: tuple[Verifier, Any], issuer: DevIssuer, key: SigningKey, value: str
) -> None:
    _, app = service
    auth = WPTAuth(key, issuer.issue_wit(IDENTIFIER, key), oth_headers=["x-session", "X-Other"])
    headers = {"Txn-Token": "txn" + value, "X-Session": value + "s", "x-other": value}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=ORIGIN, auth=auth) as client:
        response = await client.post("/x", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["bound"] == ["txn-token", "x-other", "x-session"]


@pytest.mark.parametrize("value", ODD_SPACING, ids=repr)
async def test_mint_wpt_hashes_as_the_verifier_reads(
    service: tuple[Verifier, Any], issuer: DevIssuer, key: SigningKey, value: str
) -> None:
    verifier, _ = service
    wit = issuer.issue_wit(IDENTIFIER, key)
    proof = mint_wpt(key, wit, ORIGIN + "/x", txn_token=value, other_tokens={"X-Session": value})
    headers = [(b"workload-identity-token", wit.encode()), (b"workload-proof-token", proof.encode()),
               (b"txn-token", value.encode()), (b"x-session", value.encode())]
    workload = await verifier.verify(headers, path="/x")
    assert workload.bound_tokens == {"txn-token", "x-session"}


async def test_bearer_after_several_spaces_is_bound(service: tuple[Verifier, Any], issuer: DevIssuer, key: SigningKey) -> None:
    # RFC 9110 11.4: credentials = auth-scheme [ 1*SP token68 ].
    _, app = service
    auth = WPTAuth(key, issuer.issue_wit(IDENTIFIER, key))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=ORIGIN, auth=auth) as client:
        response = await client.get("/x", headers={"Authorization": "bearer   at-123"})
    assert response.status_code == 200, response.text
    assert response.json()["bound"] == ["authorization"]


async def test_a_wit_read_from_a_file_with_its_newline_verifies(
    service: tuple[Verifier, Any], issuer: DevIssuer, key: SigningKey
) -> None:
    _, app = service
    wit = issuer.issue_wit(IDENTIFIER, key) + "\n"
    auth = WPTAuth(key, lambda: wit)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=ORIGIN, auth=auth) as client:
        response = await client.get("/x")
    assert response.status_code == 200, response.text


def test_one_generator_serves_sync_and_async() -> None:
    # httpx's auth_flow style: WPTAuth implements auth_flow only, never a sync or async variant.
    assert "auth_flow" in WPTAuth.__dict__
    assert WPTAuth.sync_auth_flow is httpx.Auth.sync_auth_flow
    assert WPTAuth.async_auth_flow is httpx.Auth.async_auth_flow


async def test_sync_and_async_clients_both_verify(service: tuple[Verifier, Any], issuer: DevIssuer, key: SigningKey) -> None:
    _, app = service
    auth = WPTAuth(key, issuer.issue_wit(IDENTIFIER, key))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=ORIGIN, auth=auth) as client:
        assert (await client.get("/x")).json()["workload"] == IDENTIFIER
    recorder = Recorder()
    with httpx.Client(transport=httpx.MockTransport(recorder), base_url=ORIGIN, auth=auth) as sync_client:
        sync_client.get("/x")
    verifier, _ = service
    request = recorder.sent[0]
    workload = await verifier.verify(list(request.headers.raw), path="/x")
    assert workload.identifier == IDENTIFIER


# --- jti and lifetime ------------------------------------------------------------------------


def test_jti_is_128_random_bits(issuer: DevIssuer, key: SigningKey) -> None:
    wit = issuer.issue_wit(IDENTIFIER, key)
    samples = 2000
    jtis = [claims_of(mint_wpt(key, wit, ORIGIN + "/x"))["jti"] for _ in range(samples)]
    assert len(set(jtis)) == samples
    raw = [b64url_decode(j.encode()) for j in jtis]
    assert {len(j) for j in jtis} == {22} and {len(r) for r in raw} == {16}
    # Every one of the 128 bits varies: set in about half of the samples (the bounds are
    # more than 8 standard deviations away from a fair coin: a constant or counter bit fails).
    for bit in range(128):
        ones = sum((int.from_bytes(r, "big") >> bit) & 1 for r in raw)
        assert 0.4 * samples < ones < 0.6 * samples, f"bit {bit} set in {ones} of {samples}"


def test_each_request_gets_a_fresh_jti(issuer: DevIssuer, key: SigningKey) -> None:
    recorder = Recorder()
    with httpx.Client(transport=httpx.MockTransport(recorder), auth=WPTAuth(key, issuer.issue_wit(IDENTIFIER, key))) as client:
        for _ in range(50):
            client.get(ORIGIN + "/x")
    assert len({claims_of(sent_proof(r))["jti"] for r in recorder.sent}) == 50


@pytest.mark.parametrize("lifetime", [0, -1, 300.001, 301, 3600, float("inf"), float("nan")])
def test_lifetime_is_capped(issuer: DevIssuer, key: SigningKey, lifetime: float) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        WPTAuth(key, issuer.issue_wit(IDENTIFIER, key), lifetime=lifetime)


@pytest.mark.parametrize("lifetime", [1, 60, 300])
def test_exp_is_now_plus_lifetime(issuer: DevIssuer, key: SigningKey, lifetime: float) -> None:
    recorder = Recorder()
    auth = WPTAuth(key, issuer.issue_wit(IDENTIFIER, key), lifetime=lifetime)
    before = time.time()
    with httpx.Client(transport=httpx.MockTransport(recorder), auth=auth) as client:
        client.get(ORIGIN + "/x")
    after = time.time()
    exp = claims_of(sent_proof(recorder.sent[0]))["exp"]
    assert isinstance(exp, int) and int(before + lifetime) <= exp <= after + lifetime


def test_wpt_02_refuses_a_request_that_already_has_authorization(issuer: DevIssuer, key: SigningKey) -> None:
    recorder = Recorder()
    auth = WPTAuth(key, issuer.issue_wit(IDENTIFIER, key), profile="wpt-02")
    with httpx.Client(transport=httpx.MockTransport(recorder), auth=auth) as client:
        with pytest.raises(ValueError, match="Authorization"):
            client.get(ORIGIN + "/x", headers={"Authorization": "Bearer at"})
        client.get(ORIGIN + "/x")
    assert len(recorder.sent) == 1 and recorder.sent[0].headers["authorization"].startswith("WPT ")
