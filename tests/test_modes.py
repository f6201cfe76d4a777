"""Modes under the real middleware: enforce, report-only and optional, globally and per route."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from wimse_wpt import SigningKey, mint_wpt
from wimse_wpt.middleware import RouteRule, WPTMiddleware

from .rollout import CALLER, App, assert_problem, running

OPS = "wimse://example.com/ops/deploy"


# --- report-only -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_only() -> Iterator[App]:
    rule = RouteRule("/admin/*", allow=["wimse://example.com/ops/*"])
    with running(mode="report-only", exclude=["/healthz"], routes=[rule]) as app:
        yield app


def test_report_only_lets_a_failed_request_in_without_a_workload(report_only: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wimse_wpt")
    response = httpx.post(report_only.origin + "/path")
    assert response.status_code == 200
    assert response.json()["workload"] is None and response.json()["user"] is None
    assert response.json()["scopes"] == []
    lines = [r.getMessage() for r in caplog.records if r.name == "wimse_wpt"]
    assert any(line.startswith("wpt reported code=wit-missing status=400") for line in lines), lines


def test_report_only_hands_the_app_the_workload_when_verification_passed(report_only: App) -> None:
    with report_only.client() as client:
        body = client.post("/path").json()
    assert body["workload"] == CALLER and body["scopes"] == ["authenticated", "workload"]
    assert "workload-identity-token" not in body["headers"] and "workload-proof-token" not in body["headers"]


def test_report_only_hands_nothing_for_a_workload_its_allow_list_would_refuse(report_only: App) -> None:
    # Verified, but enforce would have answered 403: the app sees what enforce would let it see.
    with report_only.client() as client:
        body = client.post("/admin/x").json()
    assert body["workload"] is None and body["user"] is None
    with report_only.client(OPS) as client:
        assert client.post("/admin/x").json()["workload"] == OPS


def test_report_only_strips_credentials_that_failed_too(report_only: App) -> None:
    key = SigningKey.generate("ES256")
    wit = report_only.issuer.issue_wit(CALLER, key)
    wpt = mint_wpt(key, wit, "https://elsewhere.example/path")  # wrong aud
    body = httpx.post(
        report_only.origin + "/path", headers={"workload-identity-token": wit, "workload-proof-token": wpt}
    ).json()
    assert body["workload"] is None
    assert "workload-identity-token" not in body["headers"] and "workload-proof-token" not in body["headers"]


def test_report_only_everywhere_reports_an_ambiguous_path_instead_of_refusing(report_only: App) -> None:
    response = httpx.get(report_only.origin + "/public/%2e%2e/admin/x")
    assert response.status_code == 200 and response.json()["workload"] is None


def test_report_only_still_lets_a_replay_in_unauthenticated(report_only: App) -> None:
    key = SigningKey.generate("ES256")
    wit = report_only.issuer.issue_wit(CALLER, key)
    headers = {"workload-identity-token": wit, "workload-proof-token": mint_wpt(key, wit, report_only.origin + "/path")}
    assert httpx.post(report_only.origin + "/path", headers=headers).json()["workload"] == CALLER
    assert httpx.post(report_only.origin + "/path", headers=headers).json()["workload"] is None


# --- per route ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed() -> Iterator[App]:
    with running(
        mode="report-only",
        routes=[RouteRule("/admin", mode="enforce"), RouteRule("/open", mode="optional")],
    ) as app:
        yield app


def test_an_enforced_route_refuses_under_a_report_only_default(mixed: App) -> None:
    assert_problem(httpx.post(mixed.origin + "/admin"), 400, "wit-missing")
    assert httpx.post(mixed.origin + "/path").status_code == 200  # the default: reported only
    with mixed.client() as client:
        assert client.post("/admin").json()["workload"] == CALLER


def test_an_ambiguous_path_is_refused_where_any_rule_is_stricter_than_report_only(mixed: App) -> None:
    # StaticFiles or a proxy may serve this as /admin, which enforce guards: refused whatever the default.
    assert_problem(httpx.get(mixed.origin + "/public/%2e%2e/admin"), 400, "path-ambiguous")
    assert_problem(httpx.get(mixed.origin + "/path//x"), 400, "path-ambiguous")


def test_a_trailing_slash_takes_the_stricter_mode_of_both_rules(mixed: App) -> None:
    # "/admin/" falls under the report-only default, but is served like "/admin" (enforce).
    assert_problem(httpx.post(mixed.origin + "/admin/"), 400, "wit-missing")


def test_mode_is_checked_at_construction() -> None:
    app = App()
    with pytest.raises(ValueError, match="mode must be one of"):
        WPTMiddleware(app.app.app, app.verifier, mode="audit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode must be one of"):
        WPTMiddleware(app.app.app, app.verifier, routes=[RouteRule("/x", mode="off")])  # type: ignore[arg-type]


# --- optional ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["wpt-01", "wpt-02"])
def optional(request: pytest.FixtureRequest) -> Iterator[App]:
    with running(request.param, mode="optional", exclude=["/healthz"]) as app:
        yield app


def test_optional_lets_a_request_without_wimse_headers_in_unauthenticated(optional: App) -> None:
    response = httpx.post(optional.origin + "/path")
    assert response.status_code == 200
    assert response.json()["workload"] is None and response.json()["user"] is None


def test_optional_verifies_a_request_that_carries_them(optional: App) -> None:
    with optional.client() as client:
        assert client.post("/path").json()["workload"] == CALLER


@pytest.mark.parametrize(
    "headers, code",
    [
        ({"workload-identity-token": "x"}, None),  # a WIT alone, even garbage
        ({"workload-proof-token": "x"}, "wit-missing"),
        ({"authorization": "WPT x"}, "wit-missing"),
        ({"authorization": "wpt\tx"}, "wit-missing"),
        ({"Workload-Identity-Token": ""}, None),
    ],
)
def test_optional_refuses_any_wimse_header_that_does_not_verify(optional: App, headers: dict[str, str], code: str | None) -> None:
    response = httpx.post(optional.origin + "/path", headers=headers)
    status = 401 if optional.profile == "wpt-02" else 400
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["code"] == code


def test_optional_refuses_a_wit_whose_proof_is_missing(optional: App) -> None:
    key = SigningKey.generate("ES256")
    wit = optional.issuer.issue_wit(CALLER, key)
    response = httpx.post(optional.origin + "/path", headers={"workload-identity-token": wit})
    assert response.json()["code"] == "wpt-missing"


def test_optional_refuses_a_valid_wit_with_a_proof_for_another_target(optional: App) -> None:
    key = SigningKey.generate("ES256")
    wit = optional.issuer.issue_wit(CALLER, key)
    wpt = mint_wpt(key, wit, "https://elsewhere.example/path")
    field = ("authorization", f"WPT {wpt}") if optional.profile == "wpt-02" else ("workload-proof-token", wpt)
    response = httpx.post(optional.origin + "/path", headers=[("workload-identity-token", wit), field])
    assert response.json()["code"] == "wpt-audience"


def test_optional_passes_a_bearer_only_request_unauthenticated_without_a_coexistence_policy(optional: App) -> None:
    response = httpx.post(optional.origin + "/path", headers={"authorization": "Bearer abc"})
    assert response.status_code == 200
    body = response.json()
    assert body["workload"] is None and body["user"] is None and "authorization" in body["headers"]


def test_optional_passes_authorization_fields_of_other_schemes(optional: App) -> None:
    fields = [("authorization", "Basic dTpw"), ("authorization", "Bearer abc")]
    response = httpx.post(optional.origin + "/path", headers=fields)
    assert response.status_code == 200 and response.json()["user"] is None


def test_optional_route_under_an_enforcing_default() -> None:
    with running(routes=[RouteRule("/open", mode="optional")]) as app:
        assert httpx.get(app.origin + "/open").json()["workload"] is None
        assert_problem(httpx.get(app.origin + "/path"), 400, "wit-missing")



@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
def test_report_only_leaves_the_apps_own_bearer_auth_alone(profile: str) -> None:
    # Before the migration the app authenticates callers by their bearer token: report-only
    # must not take that header away (under wpt-02 Authorization also carries the WPT).
    with running(profile, mode="report-only") as app:
        body = httpx.get(app.origin + "/path", headers={"authorization": "Bearer app-token"}).json()
        assert "authorization" in body["headers"] and body["workload"] is None
        key = SigningKey.generate("ES256")
        wit = app.issuer.issue_wit(CALLER, key)
        wpt = mint_wpt(key, wit, "https://elsewhere.example/path")  # fails: wrong aud
        field = ("authorization", f"WPT {wpt}") if profile == "wpt-02" else ("workload-proof-token", wpt)
        body = httpx.get(app.origin + "/path", headers=[("workload-identity-token", wit), field]).json()
    assert body["workload"] is None
    assert not {"workload-identity-token", "workload-proof-token", "authorization"} & set(body["headers"])


@pytest.mark.parametrize("mode", ["report-only", "optional"])
def test_a_websocket_without_credentials_is_accepted_unauthenticated_and_a_bad_one_per_mode(mode: str) -> None:
    import json

    import websockets.sync.client
    from websockets.exceptions import InvalidStatus

    with running(mode=mode) as app:
        url = app.origin.replace("http://", "ws://") + "/ws"
        with websockets.sync.client.connect(url) as connection:
            assert json.loads(connection.recv()) == {"workload": None}
        headers = {"Workload-Identity-Token": "garbage"}
        if mode == "report-only":
            with websockets.sync.client.connect(url, additional_headers=headers) as connection:
                assert json.loads(connection.recv()) == {"workload": None}
        else:
            with pytest.raises(InvalidStatus) as refused:
                websockets.sync.client.connect(url, additional_headers=headers).close()
            assert refused.value.response.status_code == 400
