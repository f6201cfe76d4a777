"""What happened to each request, for hooks, logs, metrics and traces. Never a token.

The middleware builds one :class:`VerificationEvent` per request it judges and hands it to
an :class:`Observers` (made once, at construction, from the hooks the app configures). Each
hook is a callable taking the event, or an object with ``on_event(event)``:

- :func:`log_extra`: the event as ``extra`` fields for a log record (``wimse_*`` names);
- :class:`PrometheusObserver`: counters by outcome and code, a verification-time histogram,
  and replay-store and key-source health gauges (extra ``prometheus``: prometheus-client);
- :class:`OpenTelemetryObserver`: a span per verification, and the same attributes on the
  request's current span, when ``opentelemetry-api`` is installed; nothing when it is not.

With no hook configured, ``Observers`` is false and the middleware skips building events
and reading the clock: observability costs one truth test per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal, Protocol, runtime_checkable

from .checks import stage_of

logger = logging.getLogger("wimse_wpt")

#: ``accepted``: verified and let in. ``refused``: answered with a problem. ``reported``:
#: failed in report-only mode and let in anyway. ``unauthenticated``: no WIMSE header at
#: all on an ``optional`` route, let in without a workload.
Outcome = Literal["accepted", "refused", "reported", "unauthenticated"]
OUTCOMES: Final[tuple[str, ...]] = ("accepted", "refused", "reported", "unauthenticated")


@dataclass(frozen=True, slots=True)
class VerificationEvent:
    """One judged request. Every field is safe to log and to export: no token, no claim
    value other than the verified workload identifier and its trust domain."""

    outcome: Outcome
    code: str | None  # the problem code; None when accepted or unauthenticated
    stage: str  # where it was decided: "wit", "wpt", "binding", "replay", "policy", ... or "done"
    workload: str | None  # the workload identifier, once its WIT verified
    trust_domain: str | None
    route: str  # the route pattern that applied (or the path, when no pattern did)
    profile: str
    duration: float  # seconds spent verifying
    status: int = 200  # the status sent (or that would have been sent, in report-only)
    method: str = ""
    mode: str = "enforce"
    credential: str | None = None  # "wpt" or "bearer": what the request authenticated with

    @classmethod
    def of(
        cls,
        outcome: Outcome,
        code: str | None = None,
        *,
        workload: str | None = None,
        trust_domain: str | None = None,
        route: str = "",
        profile: str = "wpt-01",
        duration: float = 0.0,
        status: int = 200,
        method: str = "",
        mode: str = "enforce",
        credential: str | None = None,
    ) -> VerificationEvent:
        """An event whose stage is derived from its code (see :mod:`wimse_wpt.checks`)."""
        if trust_domain is None and workload is not None and "://" in workload:
            trust_domain = workload.split("://", 1)[1].split("/", 1)[0]
        return cls(
            outcome, code, stage_of(code), workload, trust_domain, route, profile, duration, status, method, mode, credential
        )

    @property
    def refused(self) -> bool:
        return self.outcome in ("refused", "reported")


_FIELDS: Final = tuple(f.name for f in fields(VerificationEvent))


@runtime_checkable
class Observer(Protocol):
    def on_event(self, event: VerificationEvent) -> None: ...


Hook = Callable[[VerificationEvent], None] | Observer


def log_extra(event: VerificationEvent) -> dict[str, Any]:
    """The event as ``extra`` for ``logger.log(..., extra=log_extra(event))``: each field
    as ``wimse_<name>`` (prefixed so no field can collide with a LogRecord attribute)."""
    return {f"wimse_{name}": getattr(event, name) for name in _FIELDS}


def span_attributes(event: VerificationEvent) -> dict[str, str | float | int]:
    """The event as OpenTelemetry attributes (``wimse.*``); absent values are left out."""
    values = ((name, getattr(event, name)) for name in _FIELDS)  # not asdict: no deep copy per event
    return {f"wimse.{name}": value for name, value in values if value is not None and value != ""}


class Observers:
    """The hooks of one middleware, called in order for every event. A hook that raises is
    logged (once per hook and exception type) and never fails the request."""

    __slots__ = ("_hooks", "_failed")

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        calls: list[Callable[[VerificationEvent], None]] = []
        for hook in [hooks] if callable(hooks) or isinstance(hooks, Observer) else hooks:  # type: ignore[list-item]
            if isinstance(hook, Observer):
                calls.append(hook.on_event)
            elif callable(hook):
                calls.append(hook)
            else:
                raise TypeError(f"an observer is a callable taking the event or has on_event(event), not {hook!r}")
        self._hooks = tuple(calls)
        self._failed: set[tuple[int, type]] = set()

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    def emit(self, event: VerificationEvent) -> None:
        for index, hook in enumerate(self._hooks):
            try:
                hook(event)
            except Exception as exc:  # an observer's bug must not become the request's
                key = (index, type(exc))
                if key not in self._failed:
                    self._failed.add(key)
                    logger.error("observer %r raised %s; its events are dropped", hook, type(exc).__name__)


# --- Prometheus ----------------------------------------------------------------------------

#: Verification takes tens of microseconds with a cached WIT, milliseconds with a remote
#: replay store or a cold WIT, up to the JWKS fetch timeout when keys must be fetched.
DEFAULT_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class PrometheusObserver:
    """Metrics on a prometheus-client registry (default: the global one).

    - ``<ns>_verifications_total{outcome, code}``: every judged request (code ``""`` when none);
    - ``<ns>_verification_seconds{outcome}``: time spent verifying;
    - ``<ns>_replay_store_up``: 1 after a replay check answered, 0 after it could not;
    - ``<ns>_trust_domain_keys_up{trust_domain}``: 1 when the domain's keys were available
      at the last readiness check (or verification), 0 when not.

    The health gauges follow events (an accepted request proves the replay store answered;
    ``replay-store-unavailable`` that it did not) and every :class:`~wimse_wpt.health.Readiness`
    run given this observer.

    With ``replay_store=`` a store that keeps ``stats`` (:class:`~wimse_wpt.replay.RedisReplayCache`),
    its own view is exported at each scrape: ``<ns>_replay_store_unsafe`` (1 while it fails closed
    because it may have forgotten entries), ``<ns>_replay_store_losses_total{cause}`` (each detected
    way of forgetting: eviction, restart, flush, clock-jump), ``<ns>_replay_store_evicted_keys_total``,
    ``<ns>_replay_store_unsafe_refusals_total`` and ``<ns>_replay_quota_refusals_total``.
    """

    def __init__(
        self,
        registry: Any = None,
        *,
        namespace: str = "wimse_wpt",
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        replay_store: Any = None,
    ):
        try:
            import prometheus_client
        except ImportError as exc:
            raise ImportError(
                "PrometheusObserver needs prometheus-client: pip install 'wimse-wpt[prometheus]'"
            ) from exc
        options: dict[str, Any] = {"namespace": namespace}
        if registry is not None:
            options["registry"] = registry
        self.verifications = prometheus_client.Counter(
            "verifications", "Requests judged by wimse-wpt, by outcome and problem code", ["outcome", "code"], **options
        )
        self.duration = prometheus_client.Histogram(
            "verification_seconds", "Time spent verifying a request", ["outcome"], buckets=tuple(buckets), **options
        )
        self.replay_store_up = prometheus_client.Gauge(
            "replay_store_up", "1 when the replay store answered its last check, 0 when it did not", **options
        )
        self.keys_up = prometheus_client.Gauge(
            "trust_domain_keys_up", "1 when the trust domain's keys are available, 0 when not", ["trust_domain"], **options
        )
        if replay_store is not None:
            if not hasattr(replay_store, "stats"):
                raise ValueError("replay_store must keep stats (a RedisReplayCache)")
            target = registry if registry is not None else prometheus_client.REGISTRY
            target.register(_ReplayStoreCollector(replay_store, namespace))
        # Children resolved once per label set: a dict lookup per event afterwards.
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def on_event(self, event: VerificationEvent) -> None:
        labels = (event.outcome, event.code or "")
        counter = self._counters.get(labels)
        if counter is None:
            counter = self._counters[labels] = self.verifications.labels(*labels)
        counter.inc()
        histogram = self._histograms.get(event.outcome)
        if histogram is None:
            histogram = self._histograms[event.outcome] = self.duration.labels(event.outcome)
        histogram.observe(event.duration)
        if event.outcome == "accepted":
            self.replay_store_up.set(1)
            if event.trust_domain:
                self.keys_up.labels(event.trust_domain).set(1)
        elif event.code in ("replay-store-unavailable", "replay-store-unsafe"):
            self.replay_store_up.set(0)
        elif event.code == "trust-anchors-unavailable" and event.trust_domain:
            self.keys_up.labels(event.trust_domain).set(0)

    def on_health(self, report: Mapping[str, Any]) -> None:
        """Set the gauges from a readiness report (see :mod:`wimse_wpt.health`)."""
        store = report.get("replay_store", {})
        if "ok" in store:
            self.replay_store_up.set(1 if store["ok"] else 0)
        for domain, state in report.get("trust_domains", {}).items():
            self.keys_up.labels(domain).set(1 if state.get("ok") else 0)


class _ReplayStoreCollector:
    """The replay store's own counters, read at scrape time (nothing per request)."""

    def __init__(self, store: Any, namespace: str) -> None:
        self._store = store
        self._ns = namespace

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats, ns = self._store.stats, self._ns
        yield GaugeMetricFamily(
            f"{ns}_replay_store_unsafe", "1 while the replay store fails closed: it may have forgotten entries",
            value=1 if stats.unsafe_reason else 0,
        )
        losses = CounterMetricFamily(
            f"{ns}_replay_store_losses", "Detected ways the replay store may have forgotten entries", labels=["cause"]
        )
        for cause, count in sorted(stats.losses.items()):
            losses.add_metric([cause], count)
        yield losses
        yield CounterMetricFamily(f"{ns}_replay_store_evicted_keys", "Keys Redis evicted while watched", value=stats.evicted_keys)
        yield CounterMetricFamily(
            f"{ns}_replay_store_unsafe_refusals", "Checks refused while the store was unsafe", value=stats.unsafe_refusals
        )
        yield CounterMetricFamily(
            f"{ns}_replay_quota_refusals", "Checks refused: the sender was over its share", value=stats.quota_refusals
        )


# --- OpenTelemetry -------------------------------------------------------------------------


class OpenTelemetryObserver:
    """A span ``wimse_wpt.verify`` per verification (timed from the event's duration, child
    of the request's span) with the event as ``wimse.*`` attributes, status ERROR when
    refused; the same attributes are set on the request's current span. Without
    ``opentelemetry-api`` installed it does nothing (``enabled`` is False)."""

    def __init__(self, tracer_provider: Any = None, *, span_name: str = "wimse_wpt.verify") -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            self._trace: Any = None
            self._tracer: Any = None
        else:
            self._trace = trace
            self._tracer = trace.get_tracer("wimse_wpt", tracer_provider=tracer_provider)
        self.span_name = span_name

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def on_event(self, event: VerificationEvent) -> None:
        if self._tracer is None:
            return
        trace = self._trace
        attributes = span_attributes(event)
        end = time.time_ns()
        start = end - int(event.duration * 1e9)
        span = self._tracer.start_span(self.span_name, start_time=start, attributes=attributes)
        if event.refused:
            span.set_status(trace.Status(trace.StatusCode.ERROR, event.code or event.outcome))
        span.end(end_time=end)
        current = trace.get_current_span()
        if current.is_recording():
            current.set_attributes(attributes)
