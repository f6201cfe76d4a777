"""One event per judged request from the real middleware: to hooks, log records, Prometheus
metrics and OpenTelemetry spans, for accepted and refused calls. Never a token, never a raw path."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import wimse_wpt.middleware
from wimse_wpt import SigningKey, mint_wpt
from wimse_wpt.coexistence import BearerCoexistence
from wimse_wpt.middleware import RouteRule
from wimse_wpt.observability import OpenTelemetryObserver, PrometheusObserver, VerificationEvent

from .rollout import CALLER, App, running


class Recorder:
    def __init__(self) -> None:
        self.events: list[VerificationEvent] = []

    def __call__(self, event: VerificationEvent) -> None:
        self.events.append(event)

    def take(self) -> list[VerificationEvent]:
        taken, self.events = self.events, []
        return taken


async def vouch(token: str) -> str | None:
    return "wimse://example.com/legacy/a" if token == "good" else None


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[App, Recorder]]:
    recorder = Recorder()
    routes = [
        RouteRule("/items/*", allow=["wimse://example.com/billing/*"]),
        RouteRule("/admin", allow=["wimse://example.com/ops/*"]),
        RouteRule("/open", mode="optional"),
        RouteRule("/public/*", mode="report-only"),
    ]
    bearer = BearerCoexistence(vouch, allow=["wimse://example.com/legacy/*"])
    with running(exclude=["/healthz"], routes=routes, observers=[recorder], bearer=bearer) as app:
        yield app, recorder


def test_an_accepted_call_is_one_event_with_every_field(recorded: tuple[App, Recorder]) -> None:
    app, recorder = recorded
    recorder.take()
    with app.client() as client:
        assert client.post("/items/order-4711").status_code == 200
    [event] = recorder.take()
    assert (event.outcome, event.code, event.stage, event.status) == ("accepted", None, "done", 200)
    assert (event.workload, event.trust_domain) == (CALLER, "example.com")
    assert event.route == "/items/*"  # the rule's pattern, never the path with its order number
    assert (event.profile, event.method, event.mode, event.credential) == ("wpt-01", "POST", "enforce", "wpt")
    assert 0 < event.duration < 5


def test_refusals_name_code_stage_and_the_default_route(recorded: tuple[App, Recorder]) -> None:
    app, recorder = recorded
    recorder.take()
    httpx.get(app.origin + "/path/secret-name")
    with app.client() as client:
        client.post("/admin")
    missing, forbidden = recorder.take()
    assert (missing.outcome, missing.code, missing.stage, missing.status) == ("refused", "wit-missing", "wit", 400)
    assert missing.route == "*" and missing.workload is None and missing.method == "GET"
    assert (forbidden.code, forbidden.stage, forbidden.status) == ("workload-forbidden", "policy", 403)
    assert forbidden.route == "/admin" and forbidden.workload == CALLER


def test_excluded_paths_are_not_judged_and_make_no_event(recorded: tuple[App, Recorder]) -> None:
    app, recorder = recorded
    recorder.take()
    assert httpx.get(app.origin + "/healthz").status_code == 200
    assert recorder.take() == []


def test_modes_and_credentials_show_in_events(recorded: tuple[App, Recorder]) -> None:
    app, recorder = recorded
    recorder.take()
    httpx.get(app.origin + "/open")
    httpx.get(app.origin + "/public/x")
    httpx.get(app.origin + "/path", headers={"authorization": "Bearer good"})
    httpx.get(app.origin + "/path", headers={"authorization": "Bearer bad"})
    httpx.get(app.origin + "/public/%2e%2e/admin")
    unauthenticated, reported, bearer, bad_bearer, ambiguous = recorder.take()
    assert (unauthenticated.outcome, unauthenticated.mode, unauthenticated.route) == ("unauthenticated", "optional", "/open")
    assert (reported.outcome, reported.code, reported.status, reported.mode) == ("reported", "wit-missing", 400, "report-only")
    assert (bearer.outcome, bearer.credential, bearer.workload) == ("accepted", "bearer", "wimse://example.com/legacy/a")
    assert (bad_bearer.outcome, bad_bearer.code, bad_bearer.stage) == ("refused", "bearer-invalid", "bearer")
    assert (ambiguous.code, ambiguous.route, ambiguous.stage) == ("path-ambiguous", "(ambiguous path)", "request")


def test_refusal_log_records_carry_the_event_as_extra(recorded: tuple[App, Recorder], caplog: pytest.LogCaptureFixture) -> None:
    app, _ = recorded
    caplog.set_level(logging.INFO, logger="wimse_wpt")
    with app.client() as client:
        client.post("/admin")
    [record] = [r for r in caplog.records if r.name == "wimse_wpt"]
    assert record.levelno == logging.INFO and record.getMessage().startswith("wpt rejected code=workload-forbidden")
    fields = record.__dict__
    assert fields["wimse_code"] == "workload-forbidden" and fields["wimse_route"] == "/admin"
    assert fields["wimse_workload"] == CALLER and fields["wimse_status"] == 403 and fields["wimse_duration"] > 0


def test_without_observers_no_clock_is_read(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    reads: list[int] = []

    def clock() -> float:
        reads.append(1)
        return 0.0

    monkeypatch.setattr(wimse_wpt.middleware, "_clock", clock)
    caplog.set_level(logging.INFO, logger="wimse_wpt")
    with running() as app:
        with app.client() as client:
            assert client.get("/path").status_code == 200
        assert httpx.get(app.origin + "/path").status_code == 400
    assert reads == []
    # The refusal is still logged with its fields (the duration unmeasured: 0).
    [record] = [r for r in caplog.records if r.name == "wimse_wpt"]
    assert record.__dict__["wimse_code"] == "wit-missing" and record.__dict__["wimse_duration"] == 0.0
    with running(observers=[Recorder()]) as app:
        httpx.get(app.origin + "/path")
    assert reads  # and with one, it is


def test_no_event_field_holds_a_token(recorded: tuple[App, Recorder]) -> None:
    app, recorder = recorded
    recorder.take()
    key = SigningKey.generate("ES256")
    wit = app.issuer.issue_wit(CALLER, key)
    for aud in (app.origin + "/admin", "https://elsewhere.example/admin"):  # forbidden, then wpt-audience
        headers = {"workload-identity-token": wit, "workload-proof-token": mint_wpt(key, wit, aud)}
        httpx.post(app.origin + "/admin", headers=headers)
    events = recorder.take()
    assert [e.code for e in events] == ["workload-forbidden", "wpt-audience"]
    assert "eyJ" not in repr(events) and wit.split(".")[2][:20] not in repr(events)


# --- Prometheus and OpenTelemetry, fed by the real middleware -----------------------------


def test_prometheus_metrics_for_accepted_and_refused_calls() -> None:
    prometheus_client = pytest.importorskip("prometheus_client", reason="prometheus-client (test extra) is not installed")
    registry = prometheus_client.CollectorRegistry()
    with running(observers=[PrometheusObserver(registry)]) as app:
        with app.client() as client:
            client.get("/path")
            client.get("/path")
        httpx.get(app.origin + "/path")
    value = registry.get_sample_value
    assert value("wimse_wpt_verifications_total", {"outcome": "accepted", "code": ""}) == 2
    assert value("wimse_wpt_verifications_total", {"outcome": "refused", "code": "wit-missing"}) == 1
    assert value("wimse_wpt_verification_seconds_count", {"outcome": "accepted"}) == 2
    assert value("wimse_wpt_verification_seconds_sum", {"outcome": "accepted"}) > 0
    assert value("wimse_wpt_replay_store_up") == 1
    assert value("wimse_wpt_trust_domain_keys_up", {"trust_domain": "example.com"}) == 1


def test_opentelemetry_spans_for_accepted_and_refused_calls() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk (test extra) is not installed")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with running(observers=[OpenTelemetryObserver(provider)]) as app:
        with app.client() as client:
            client.get("/items/1")
        httpx.get(app.origin + "/items/2")
    accepted, refused = [s for s in exporter.get_finished_spans() if s.name == "wimse_wpt.verify"]
    attributes: dict[str, Any] = dict(accepted.attributes or {})
    assert attributes["wimse.outcome"] == "accepted" and attributes["wimse.workload"] == CALLER
    assert attributes["wimse.route"] == "*" and accepted.status.status_code is not StatusCode.ERROR
    assert refused.status.status_code is StatusCode.ERROR and (refused.attributes or {})["wimse.code"] == "wit-missing"
