"""A readiness check an app mounts: is the replay store reachable, does every trust domain
have keys? Ready means a correctly signed request could be accepted now.

    from starlette.routing import Route
    Route("/readyz", Readiness(verifier))            # Starlette: an ASGI endpoint
    app.add_route("/readyz", Readiness(verifier))    # FastAPI

Exclude its path from the middleware (``exclude=["/readyz"]``). It answers ``200`` with
``{"status": "ready", ...}`` or ``503`` with ``{"status": "unready", ...}``; the body names
each check and whether it passed (trust domain names and key counts, never a URL, a key or
an error message). Each run is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections.abc import Iterable
from typing import Any

from starlette.types import Receive, Scope, Send

from .anchors import KeysUnavailable
from .verifier import Verifier


async def _ping_replay_store(cache: object) -> dict[str, Any]:
    """Call the cache's ``ping()`` or ``check()`` when it has one; a cache without either
    (in-process) is reachable by definition. Truthy or None means reachable."""
    probe = getattr(cache, "ping", None) or getattr(cache, "check", None)
    if probe is None or not callable(probe):
        return {"ok": True, "checked": False}
    try:
        answer = probe()
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception as exc:  # whatever it raises, the store is not usable
        return {"ok": False, "checked": True, "error": type(exc).__name__}
    return {"ok": answer is None or bool(answer), "checked": True}


async def _domain_keys(verifier: Verifier, domain: str) -> dict[str, Any]:
    count, unavailable = 0, 0
    for source in verifier.anchors.sources(domain):
        try:
            count += len((await source.keys()).keys)
        except KeysUnavailable:
            unavailable += 1
        except Exception:  # a custom source failing some other way: no keys from it
            unavailable += 1
    result: dict[str, Any] = {"ok": count > 0, "keys": count}
    if unavailable:
        result["unavailable_sources"] = unavailable
    return result


class Readiness:
    """An ASGI endpoint (and :meth:`run` for code) reporting whether ``verifier`` can accept
    requests. ``observers`` with an ``on_health(report)`` method (e.g. a
    :class:`~wimse_wpt.observability.PrometheusObserver`) get every report."""

    def __init__(
        self, verifier: Verifier, *, timeout: float = 2.0, cache_for: float = 1.0, observers: Iterable[object] = ()
    ) -> None:
        if not isinstance(verifier, Verifier):
            raise TypeError("verifier must be a wimse_wpt.Verifier")
        if not 0 < timeout <= 30:
            raise ValueError("timeout must be more than 0 and at most 30 seconds")
        if not 0 <= cache_for <= 60:
            raise ValueError("cache_for must be between 0 and 60 seconds")
        self.verifier = verifier
        self.timeout = timeout
        self.cache_for = cache_for
        self._observers = tuple(o for o in observers if callable(getattr(o, "on_health", None)))
        self._last: tuple[float, dict[str, Any]] | None = None
        self._inflight: asyncio.Future[dict[str, Any]] | None = None

    async def run(self) -> dict[str, Any]:
        """``{"ready": bool, "replay_store": {...}, "trust_domains": {domain: {...}}}``.

        The endpoint is open, so probes are single flight and a report is reused for
        ``cache_for`` seconds: a flood of probes is not a flood of Redis pings."""
        if self._last is not None and time.monotonic() - self._last[0] < self.cache_for:
            return self._last[1]
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._run())
        report = await asyncio.shield(self._inflight)
        self._last = (time.monotonic(), report)
        return report

    async def _run(self) -> dict[str, Any]:
        domains = sorted(self.verifier.anchors.trust_domains)
        # Each check bounded on its own: one hung JWKS endpoint does not hide the others.
        store, *keys = await asyncio.gather(
            self._bounded(_ping_replay_store(self.verifier.replay_cache), {"ok": False, "checked": True}),
            *(self._bounded(_domain_keys(self.verifier, domain), {"ok": False, "keys": 0}) for domain in domains),
        )
        report: dict[str, Any] = {
            "ready": store["ok"] and all(k["ok"] for k in keys),
            "replay_store": store,
            "trust_domains": dict(zip(domains, keys, strict=True)),
        }
        for observer in self._observers:
            with contextlib.suppress(Exception):  # a metrics bug must not fail the probe
                observer.on_health(report)  # type: ignore[attr-defined]
        return report

    async def _bounded(self, check: Any, failed: dict[str, Any]) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                return dict(await check)
        except TimeoutError:
            return {**failed, "error": "timeout"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        report = await self.run()
        body = json.dumps({"status": "ready" if report["ready"] else "unready", **report}).encode()
        await send({
            "type": "http.response.start",
            "status": 200 if report["ready"] else 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        })
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})
