"""Events, hooks, log fields, Prometheus metrics, OpenTelemetry spans and the readiness check,
exercised directly (the middleware calls the same interface)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from wimse_wpt import CATALOG, DevIssuer, MemoryReplayCache, ReplayStoreUnavailable, Verifier
from wimse_wpt.checks import CHECK_FOR_CODE, CHECKS, stage_of
from wimse_wpt.health import Readiness
from wimse_wpt.observability import (
    Observers,
    OpenTelemetryObserver,
    PrometheusObserver,
    VerificationEvent,
    log_extra,
    span_attributes,
)

from .conftest import World

ISSUER = DevIssuer("example.com")


def accepted(**overrides: Any) -> VerificationEvent:
    options: dict[str, Any] = {"workload": "wimse://example.com/billing", "route": "/orders", "duration": 0.0002}
    options.update(overrides)
    return VerificationEvent.of("accepted", **options)


def refused(code: str = "wpt-audience", **overrides: Any) -> VerificationEvent:
    options: dict[str, Any] = {"route": "/orders", "duration": 0.0001, "status": 400}
    options.update(overrides)
    return VerificationEvent.of("refused", code, **options)


# --- the check table ---------------------------------------------------------------------


def test_every_problem_code_belongs_to_exactly_one_check() -> None:
    codes = [code for check in CHECKS for code in check.codes]
    assert len(codes) == len(set(codes)), "a code is listed under two checks"
    assert set(codes) == set(CATALOG), "the check table and problems.CATALOG differ"


def test_check_names_are_unique_and_stages_derive_from_codes() -> None:
    assert len({c.name for c in CHECKS}) == len(CHECKS)
    assert stage_of(None) == "done"
    assert stage_of("wit-signature") == "wit" and stage_of("wpt-replayed") == "replay"
    assert stage_of("ath-mismatch") == "binding" and stage_of("workload-forbidden") == "policy"
    assert stage_of("no-such-code") == "unknown"
    assert CHECK_FOR_CODE["trust-anchors-unavailable"].name == "anchor-key"


async def test_checks_are_in_the_verifiers_order() -> None:
    # A request that breaks two rules is refused by the earlier check of the table.
    world = World()
    expired_wit = world.issuer.issue_wit("wimse://example.com/specific-workload", world.key, now=world.now - 7200, lifetime=60)
    problem = await world.reject(world.headers(world.wpt(aud="https://elsewhere.example/path", wit=expired_wit), expired_wit))
    assert problem.code == "wit-expired"
    order = [c.name for c in CHECKS]
    assert order.index("wit-validity") < order.index("wpt-audience")
    world = World()
    problem = await world.reject(world.headers(world.wpt(aud="https://elsewhere.example/path", extra_claims={"wth": "x" * 43})))
    assert problem.code == "wpt-wth"
    assert order.index("wpt-wth") < order.index("wpt-audience")


# --- events ------------------------------------------------------------------------------


def test_event_fields_and_derived_stage_and_trust_domain() -> None:
    event = accepted()
    assert event.stage == "done" and event.trust_domain == "example.com" and event.code is None
    assert not event.refused
    problem = refused("wit-signature")
    assert problem.stage == "wit" and problem.refused and problem.workload is None and problem.trust_domain is None
    assert VerificationEvent.of("reported", "wpt-expired", mode="report-only").refused
    names = {f.name for f in dataclasses.fields(VerificationEvent)}
    assert {"outcome", "code", "stage", "workload", "trust_domain", "route", "profile", "duration"} <= names
    # Nothing that could hold a token: no field for headers, claims or the tokens themselves.
    assert not names & {"wit", "wpt", "token", "headers", "claims", "detail"}


def test_log_extra_fields_attach_to_a_record_without_clashing(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("wimse_wpt.test")
    with caplog.at_level(logging.INFO, logger="wimse_wpt.test"):
        log.info("wpt rejected", extra=log_extra(refused("wpt-replayed", workload="wimse://example.com/a")))
    record = caplog.records[-1]
    assert record.wimse_code == "wpt-replayed"  # type: ignore[attr-defined]
    assert record.wimse_stage == "replay" and record.wimse_outcome == "refused"  # type: ignore[attr-defined]
    assert record.wimse_workload == "wimse://example.com/a"  # type: ignore[attr-defined]
    assert all(key.startswith("wimse_") for key in log_extra(accepted()))


def test_observers_take_callables_and_on_event_objects_and_survive_a_failing_hook(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, str]] = []

    class Recorder:
        def on_event(self, event: VerificationEvent) -> None:
            seen.append(("object", event.outcome))

    def broken(event: VerificationEvent) -> None:
        raise RuntimeError("bug in a hook")

    observers = Observers([lambda e: seen.append(("callable", e.outcome)), broken, Recorder()])
    assert observers and len(observers) == 3
    with caplog.at_level(logging.ERROR, logger="wimse_wpt"):
        observers.emit(accepted())
        observers.emit(refused())
    assert seen == [("callable", "accepted"), ("object", "accepted"), ("callable", "refused"), ("object", "refused")]
    assert len([r for r in caplog.records if "RuntimeError" in r.getMessage()]) == 1  # logged once, not per event
    assert not Observers()
    with pytest.raises(TypeError):
        Observers([42])  # type: ignore[list-item]


# --- Prometheus --------------------------------------------------------------------------


@pytest.fixture
def registry() -> Any:
    prometheus_client = pytest.importorskip("prometheus_client", reason="the prometheus extra is not installed")
    return prometheus_client.CollectorRegistry()


def test_prometheus_counts_by_outcome_and_code_and_times_verification(registry: Any) -> None:
    observer = PrometheusObserver(registry)
    for event in (accepted(), accepted(), refused("wpt-audience"), refused("wit-expired", duration=0.003)):
        observer.on_event(event)
    value = registry.get_sample_value
    assert value("wimse_wpt_verifications_total", {"outcome": "accepted", "code": ""}) == 2
    assert value("wimse_wpt_verifications_total", {"outcome": "refused", "code": "wpt-audience"}) == 1
    assert value("wimse_wpt_verifications_total", {"outcome": "refused", "code": "wit-expired"}) == 1
    assert value("wimse_wpt_verification_seconds_count", {"outcome": "refused"}) == 2
    assert value("wimse_wpt_verification_seconds_sum", {"outcome": "refused"}) == pytest.approx(0.0031)
    assert value("wimse_wpt_verification_seconds_bucket", {"outcome": "accepted", "le": "0.00025"}) == 2


def test_prometheus_health_gauges_follow_events_and_reports(registry: Any) -> None:
    observer = PrometheusObserver(registry)
    value = registry.get_sample_value
    observer.on_event(refused("replay-store-unavailable", status=503))
    assert value("wimse_wpt_replay_store_up") == 0
    observer.on_event(accepted())
    assert value("wimse_wpt_replay_store_up") == 1
    assert value("wimse_wpt_trust_domain_keys_up", {"trust_domain": "example.com"}) == 1
    observer.on_health({"ready": False, "replay_store": {"ok": False}, "trust_domains": {"partner.example": {"ok": False}}})
    assert value("wimse_wpt_replay_store_up") == 0
    assert value("wimse_wpt_trust_domain_keys_up", {"trust_domain": "partner.example"}) == 0


def test_prometheus_without_the_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'wimse-wpt\[prometheus\]'"):
        PrometheusObserver()


# --- OpenTelemetry -----------------------------------------------------------------------


@pytest.fixture
def spans() -> Any:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk (test extra) is not installed")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_a_span_per_verification_with_attributes_and_error_status(spans: Any) -> None:
    from opentelemetry.trace import StatusCode

    provider, exporter = spans
    observer = OpenTelemetryObserver(provider)
    assert observer.enabled
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /orders") as request_span:
        observer.on_event(accepted(duration=0.002))
        observer.on_event(refused("wpt-replayed", workload="wimse://example.com/a"))
    finished = {s.name: s for s in exporter.get_finished_spans()}
    verify_spans = [s for s in exporter.get_finished_spans() if s.name == "wimse_wpt.verify"]
    assert len(verify_spans) == 2
    ok, bad = verify_spans
    assert ok.attributes["wimse.outcome"] == "accepted" and ok.attributes["wimse.workload"] == "wimse://example.com/billing"
    assert ok.end_time - ok.start_time == pytest.approx(2_000_000, rel=0.01)
    assert ok.parent is not None and ok.parent.span_id == request_span.get_span_context().span_id
    assert bad.status.status_code is StatusCode.ERROR and bad.attributes["wimse.code"] == "wpt-replayed"
    assert "wimse.code" not in ok.attributes  # absent values are left out
    # The request's own span carries the (last) outcome too.
    assert finished["GET /orders"].attributes["wimse.outcome"] == "refused"


def test_opentelemetry_absent_means_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    observer = OpenTelemetryObserver()
    assert not observer.enabled
    observer.on_event(accepted())  # no error, no effect


def test_span_attributes_hold_no_empty_values() -> None:
    attributes = span_attributes(refused("wit-missing"))
    assert attributes["wimse.code"] == "wit-missing" and "wimse.workload" not in attributes
    assert all(isinstance(v, (str, int, float)) for v in attributes.values())


# --- readiness ---------------------------------------------------------------------------


class PingingCache(MemoryReplayCache):
    def __init__(self, answer: Any) -> None:
        super().__init__()
        self.answer = answer

    async def ping(self) -> bool:
        if isinstance(self.answer, Exception):
            raise self.answer
        return bool(self.answer)


def readiness_app(verifier: Verifier, **options: Any) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/readyz", Readiness(verifier, **options))])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_ready_when_the_store_answers_and_every_domain_has_keys() -> None:
    verifier = Verifier({"example.com": ISSUER.jwks}, ["https://api.example.com"], replay_cache=PingingCache(True))
    async with readiness_app(verifier) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "ready"
    assert body["replay_store"] == {"ok": True, "checked": True}
    assert body["trust_domains"] == {"example.com": {"ok": True, "keys": 1}}


@pytest.mark.parametrize("answer", [False, ReplayStoreUnavailable("down"), ConnectionError("refused")])
async def test_unready_when_the_replay_store_does_not_answer(answer: Any) -> None:
    verifier = Verifier({"example.com": ISSUER.jwks}, ["https://api.example.com"], replay_cache=PingingCache(answer))
    async with readiness_app(verifier) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unready" and response.json()["replay_store"]["ok"] is False
    assert "down" not in response.text and "refused" not in response.text  # error types only, no messages


async def test_unready_while_a_remote_trust_domain_has_no_keys_and_the_rest_still_reported() -> None:
    from wimse_wpt import RemoteJWKS, TrustAnchors

    # Port 9 (discard) on loopback: the fetch fails at once, so the domain has no keys.
    remote = RemoteJWKS("http://127.0.0.1:9/jwks.json", allow_insecure=True, timeout=1)
    anchors = TrustAnchors({"example.com": ISSUER.jwks, "partner.example": remote})
    verifier = Verifier(anchors, ["https://api.example.com"])
    readiness = Readiness(verifier, timeout=3)
    report = await readiness.run()
    assert report["ready"] is False
    assert report["replay_store"] == {"ok": True, "checked": False}  # in-process: nothing to ping
    assert report["trust_domains"]["example.com"] == {"ok": True, "keys": 1}
    assert report["trust_domains"]["partner.example"] == {"ok": False, "keys": 0, "unavailable_sources": 1}


class Hung(MemoryReplayCache):
    async def ping(self) -> bool:
        import asyncio

        await asyncio.sleep(60)
        return True


async def test_a_hung_check_times_out_on_its_own_and_observers_get_the_report() -> None:
    reports: list[dict[str, Any]] = []

    class HealthRecorder:
        def on_health(self, report: dict[str, Any]) -> None:
            reports.append(report)

    verifier = Verifier({"example.com": ISSUER.jwks}, ["https://api.example.com"], replay_cache=Hung())
    report = await Readiness(verifier, timeout=0.2, observers=[HealthRecorder(), object()]).run()
    assert report["replay_store"] == {"ok": False, "checked": True, "error": "timeout"}
    assert report["trust_domains"]["example.com"]["ok"] is True
    assert reports == [report]


async def test_readiness_sets_the_prometheus_health_gauges(registry: Any) -> None:
    verifier = Verifier({"example.com": ISSUER.jwks}, ["https://api.example.com"], replay_cache=Hung())
    await Readiness(verifier, timeout=0.2, observers=[PrometheusObserver(registry)]).run()
    assert registry.get_sample_value("wimse_wpt_replay_store_up") == 0
    assert registry.get_sample_value("wimse_wpt_trust_domain_keys_up", {"trust_domain": "example.com"}) == 1


def test_readiness_checks_its_configuration() -> None:
    verifier = Verifier({"example.com": ISSUER.jwks}, ["https://api.example.com"])
    with pytest.raises(ValueError):
        Readiness(verifier, timeout=0)
    with pytest.raises(TypeError):
        Readiness(object())  # type: ignore[arg-type]


async def test_a_flood_of_probes_is_one_ping_and_reports_are_reused_briefly() -> None:
    import asyncio

    class Counting(MemoryReplayCache):
        pings = 0

        async def ping(self) -> bool:
            Counting.pings += 1
            await asyncio.sleep(0.05)
            return True

    verifier = Verifier({"example.com": ISSUER.jwks}, ["https://api.example.com"], replay_cache=Counting())
    readiness = Readiness(verifier, cache_for=30)
    reports = await asyncio.gather(*(readiness.run() for _ in range(50)))
    assert all(r["ready"] for r in reports) and Counting.pings == 1
    await readiness.run()
    assert Counting.pings == 1  # within cache_for
    fresh = Readiness(verifier, cache_for=0)
    await fresh.run()
    await fresh.run()
    assert Counting.pings == 3
