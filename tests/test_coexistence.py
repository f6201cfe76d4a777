"""Bearer tokens alongside WITs during a migration (wpt-01 section 2.2), under the real middleware."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from wimse_wpt import SigningKey, mint_wpt
from wimse_wpt.coexistence import BearerCoexistence
from wimse_wpt.middleware import RouteRule

from .rollout import App, assert_problem, running

LEGACY = "wimse://example.com/legacy/reports"
MIGRATED = "wimse://example.com/legacy/billing"  # listed as allowed, but now sends WITs
STRANGER = "wimse://example.com/other"

#: The app's own bearer check: token -> the identifier it vouches for.
TOKENS = {"tok-legacy": LEGACY, "tok-migrated": MIGRATED, "tok-stranger": STRANGER, "tok-odd": "wimse://Example.com/x"}


class Checker:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail = False

    async def __call__(self, token: str) -> str | None:
        self.calls.append(token)
        if self.fail:
            raise ConnectionError(f"introspection endpoint down while checking {token}")
        return TOKENS.get(token)


CHECKER = Checker()


def policy() -> BearerCoexistence:
    return BearerCoexistence(CHECKER, allow=["wimse://example.com/legacy/*"], wit_capable=[MIGRATED])


@pytest.fixture(scope="module", params=["wpt-01", "wpt-02"])
def service(request: pytest.FixtureRequest) -> Iterator[App]:
    routes = [RouteRule("/admin/*", allow=["wimse://example.com/ops/*"]), RouteRule("/open", mode="report-only")]
    with running(request.param, bearer=policy(), routes=routes) as app:
        yield app


@pytest.fixture(autouse=True)
def fresh_checker() -> None:
    CHECKER.calls.clear()
    CHECKER.fail = False


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_an_allowed_caller_with_a_bearer_passes_and_is_seen_as_bearer_authenticated(service: App) -> None:
    response = httpx.get(service.origin + "/path", headers=bearer("tok-legacy"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bearer_caller"] == LEGACY and body["user"] == LEGACY
    # Distinguishable from a WPT-verified workload: no workload, no "workload" scope.
    assert body["workload"] is None and body["scopes"] == ["authenticated", "bearer"]
    assert CHECKER.calls == ["tok-legacy"]


def test_a_wit_capable_caller_with_a_bearer_only_is_refused(service: App) -> None:
    assert_problem(httpx.get(service.origin + "/path", headers=bearer("tok-migrated")), 403, "bearer-refused")


def test_a_caller_in_neither_list_is_refused(service: App) -> None:
    assert_problem(httpx.get(service.origin + "/path", headers=bearer("tok-stranger")), 403, "bearer-refused")


def test_a_token_the_app_does_not_vouch_for_is_refused(service: App) -> None:
    status = 401 if service.profile == "wpt-02" else 400
    assert_problem(httpx.get(service.origin + "/path", headers=bearer("tok-unknown")), status, "bearer-invalid")
    # An identifier that is not canonical is no identifier: never matched against a pattern.
    assert_problem(httpx.get(service.origin + "/path", headers=bearer("tok-odd")), status, "bearer-invalid")


def test_the_identifier_the_check_returns_is_what_is_judged_never_a_claim_read_before(service: App) -> None:
    # An unverified JWT naming the allowed caller; the app's check says who it really is.
    import base64
    import json

    claims = base64.urlsafe_b64encode(json.dumps({"sub": LEGACY}).encode()).rstrip(b"=").decode()
    forged = f"eyJhbGciOiJub25lIn0.{claims}."
    TOKENS[forged] = MIGRATED
    try:
        assert_problem(httpx.get(service.origin + "/path", headers=bearer(forged)), 403, "bearer-refused")
    finally:
        del TOKENS[forged]


def test_a_check_that_raises_fails_closed(service: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wimse_wpt")
    CHECKER.fail = True
    assert_problem(httpx.get(service.origin + "/path", headers=bearer("tok-legacy")), 500, "internal-error")
    errors = [r for r in caplog.records if r.name == "wimse_wpt" and r.levelno == logging.ERROR]
    assert len(errors) == 1 and "ConnectionError" in errors[0].getMessage()
    assert "tok-legacy" not in caplog.text  # the exception's message quoted the token: withheld


def test_the_route_allow_list_applies_to_bearer_callers(service: App) -> None:
    assert_problem(httpx.get(service.origin + "/admin/x", headers=bearer("tok-legacy")), 403, "workload-forbidden")


def test_a_request_carrying_a_wit_always_goes_the_wpt_way(service: App) -> None:
    key = SigningKey.generate("ES256")
    wit = service.issuer.issue_wit(LEGACY, key)
    # Under wpt-01 the bearer rides along, bound by ath; under wpt-02 Authorization is the proof.
    if service.profile == "wpt-01":
        with service.client(LEGACY) as client:
            body = client.get("/path", headers=bearer("tok-legacy")).json()
        assert body["workload"] == LEGACY and body["bearer_caller"] is None
        headers = {"workload-identity-token": "garbage", **bearer("tok-legacy")}
    else:
        with service.client(LEGACY) as client:
            assert client.get("/path").json()["workload"] == LEGACY
        headers = {"workload-proof-token": mint_wpt(key, wit, service.origin + "/path"), **bearer("tok-legacy")}
    refused = httpx.get(service.origin + "/path", headers=headers)
    assert refused.status_code in (400, 401) and refused.json()["code"].startswith(("wit-", "wpt-"))
    assert CHECKER.calls == []  # the bearer check never ran


def test_two_authorization_fields_are_refused_not_guessed(service: App) -> None:
    fields = [("authorization", "Bearer tok-legacy"), ("authorization", "Bearer x")]
    response = httpx.get(service.origin + "/path", headers=fields)
    assert response.status_code in (400, 401) and response.json()["code"] in ("wit-missing", "wpt-missing")
    assert CHECKER.calls == []  # which of two bearers is meant is not guessed: the WPT way refuses


def test_an_oversized_bearer_never_reaches_the_check(service: App) -> None:
    response = httpx.get(service.origin + "/path", headers=bearer("x" * 9000))
    assert response.json()["code"] == "bearer-invalid" and CHECKER.calls == []


def test_report_only_lets_a_refused_bearer_in_unauthenticated(service: App) -> None:
    body = httpx.get(service.origin + "/open", headers=bearer("tok-migrated")).json()
    assert body["bearer_caller"] is None and body["user"] is None


def test_without_a_bearer_the_wpt_way_refuses_as_before(service: App) -> None:
    status = 401 if service.profile == "wpt-02" else 400
    assert_problem(httpx.get(service.origin + "/path"), status, "wit-missing")
    assert_problem(httpx.get(service.origin + "/path", headers={"authorization": "Basic dTpw"}), status, "wit-missing")


def test_policy_is_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BearerCoexistence(CHECKER, allow=[])
    with pytest.raises(ValueError):
        BearerCoexistence(CHECKER, allow=["not-an-identifier"])
    with pytest.raises(TypeError):
        BearerCoexistence("nope", allow=[LEGACY])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="BearerCoexistence"):
        App(bearer=object())
