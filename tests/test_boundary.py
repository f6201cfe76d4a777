"""Issue 13's verifier defects replayed through the real middleware on uvicorn, with httpx.

Each request is built by hand (no WPTAuth), as an attacker would send it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from wimse_wpt import DevIssuer, SigningKey, Verifier, mint_wpt
from wimse_wpt.middleware import WPTMiddleware

from .servers import free_port, serve

IDENTIFIER = "wimse://example.com/boundary"


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"authorization": request.headers.get("authorization")})


class Service:
    def __init__(self, profile: str) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.profile = profile
        self.issuer = DevIssuer("example.com")
        self.key = SigningKey.generate("ES256")
        self.wit = self.issuer.issue_wit(IDENTIFIER, self.key)
        verifier = Verifier({"example.com": self.issuer.jwks}, [self.origin], profile=profile)  # type: ignore[arg-type]
        self.app = WPTMiddleware(Starlette(routes=[Route("/echo", echo)]), verifier)

    def headers(self, wit: str | None = None, authorization: str | None = None, **wpt: Any) -> dict[str, str]:
        wit = wit or self.wit
        proof = mint_wpt(self.key, wit, self.origin + "/echo", **wpt)
        headers = {"workload-identity-token": wit}
        if self.profile == "wpt-02":
            headers["authorization"] = f"WPT {proof}"
        else:
            headers["workload-proof-token"] = proof
            if authorization is not None:
                headers["authorization"] = authorization
        return headers


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, Service]]:
    first, second = Service("wpt-01"), Service("wpt-02")
    with serve(first.app, port=first.port), serve(second.app, port=second.port):
        yield {"wpt-01": first, "wpt-02": second}


@pytest.fixture(params=["wpt-01", "wpt-02"])
def service(request: pytest.FixtureRequest, services: dict[str, Service]) -> Service:
    return services[request.param]


@pytest.fixture
def wpt01(services: dict[str, Service]) -> Service:
    return services["wpt-01"]


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


@pytest.mark.parametrize("claim", ["exp", "nbf"])
def test_huge_numbers_in_the_wit_are_a_problem_not_a_500(service: Service, claim: str) -> None:
    # Defect 1: a WIT signed by any key with exp = 10**400 made float() raise before the signature.
    status = 400 if service.profile == "wpt-01" else 401
    forger = DevIssuer("example.com")  # not the configured issuer: the claim is checked first
    for issuer in (service.issuer, forger):
        wit = issuer.issue_wit(IDENTIFIER, service.key, claims={claim: 10**400})
        response = httpx.get(service.origin + "/echo", headers=service.headers(wit))
        assert_problem(response, status, "wit-claim-invalid")


@pytest.mark.parametrize("claim", ["exp", "nbf"])
def test_huge_numbers_in_the_wpt_are_a_problem_not_a_500(service: Service, claim: str) -> None:
    status = 400 if service.profile == "wpt-01" else 401
    response = httpx.get(service.origin + "/echo", headers=service.headers(extra_claims={claim: 10**400}))
    assert_problem(response, status, "wpt-claim-invalid")


def test_bearer_hidden_by_a_tab_never_reaches_the_app(wpt01: Service) -> None:
    # Defect 6: the app received "Bearer\tat-123" although no ath bound it.
    service = wpt01
    response = httpx.get(service.origin + "/echo", headers=service.headers(authorization="Bearer\tat-123"))
    assert_problem(response, 400, "authorization-malformed")
    bound = service.headers(authorization="Bearer at-123", bearer="at-123")
    assert httpx.get(service.origin + "/echo", headers=bound).json() == {"authorization": "Bearer at-123"}


def test_one_digest_field_with_commas_is_accepted(wpt01: Service) -> None:
    # Defect 7: auth-params hold commas; one field is one field.
    service = wpt01
    digest = 'Digest username="a", realm="b, c", nonce="n", uri="/echo", response="r"'
    response = httpx.get(service.origin + "/echo", headers=service.headers(authorization=digest))
    assert response.status_code == 200, response.text
    assert response.json() == {"authorization": digest}
