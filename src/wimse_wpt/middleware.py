"""A pure ASGI middleware: every HTTP request and WebSocket handshake must prove its workload.

On success the app is called with the :class:`~wimse_wpt.verifier.VerifiedWorkload` at
``request.state.workload`` and with Starlette's ``scope["user"]``/``scope["auth"]`` set
(scopes ``authenticated`` and ``workload``), so ``starlette.authentication.requires``
works. The WIT and WPT headers are removed before the app sees them. Failures are answered
with RFC 9457 ``application/problem+json`` and logged, one line each, without any token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.types import ASGIApp, Receive, Scope, Send

from .identifiers import IdentifierPattern
from .problems import Kind, Problem, VerificationError
from .verifier import AUTHORIZATION, WIT_HEADER, WPT_HEADER, VerifiedWorkload, Verifier

logger = logging.getLogger("wimse_wpt")

#: Starlette auth scopes granted to a verified workload: ``@requires("workload")``.
AUTH_SCOPES = ("authenticated", "workload")


class WorkloadUser(BaseUser):
    """Starlette's ``request.user`` for a verified workload."""

    def __init__(self, workload: VerifiedWorkload) -> None:
        self.workload = workload

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.workload.identifier

    @property
    def identity(self) -> str:
        return self.workload.identifier


@dataclass(frozen=True)
class RouteRule:
    """Rules for the paths matching ``path`` (exact, or a prefix ending in ``*``).

    Args:
        path: ``/orders`` (exactly), or ``/orders/*`` (the prefix and everything below it).
        allow: workload identifier patterns allowed here (``wimse://example.com/billing/*``);
            empty means any verified workload.
        audiences: extra ``aud`` values accepted for this route.
    """

    path: str
    allow: Iterable[str] = ()
    audiences: Iterable[str] = ()


@dataclass(frozen=True, slots=True)
class _Rule:
    allow: tuple[IdentifierPattern, ...]
    audiences: frozenset[str]


def render_problem(problem: Problem) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of an RFC 9457 response for ``problem``."""
    body = json.dumps(problem.to_dict(), separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if problem.status == 401:
        headers.append((b"www-authenticate", b"WPT"))
    return problem.status, headers, body


def log_rejection(scope: Scope, problem: Problem, identifier: str | None) -> None:
    """One line per refusal: the code, and the workload when known. Never a token."""
    logger.log(
        logging.WARNING if problem.kind is Kind.UNAVAILABLE else logging.INFO,
        "wpt rejected code=%s status=%d workload=%s method=%s path=%r",
        problem.code,
        problem.status,
        identifier or "-",
        scope.get("method", "WEBSOCKET"),
        scope.get("path", "")[:200],
    )


def path_pattern(pattern: str) -> tuple[str, bool]:
    if not pattern.startswith("/"):
        raise ValueError(f"path pattern {pattern!r} must start with '/'")
    if pattern.endswith("*"):
        return pattern[:-1], True
    if "*" in pattern:
        raise ValueError(f"path pattern {pattern!r}: '*' may only end a pattern")
    return pattern, False


class WPTMiddleware:
    """Require a verified workload on every HTTP request and WebSocket handshake.

    Args:
        app: the ASGI app to protect.
        verifier: a configured :class:`~wimse_wpt.verifier.Verifier`.
        exclude: paths open without tokens (``/healthz``, ``/public/*``).
        routes: per-route allow-lists and audience aliases; the longest matching path wins.
        allow: workload identifier patterns allowed on every route without its own ``allow``.
        strip_credentials: remove the WIT and WPT headers before the app sees them (default),
            so an app that forwards headers cannot leak a usable credential.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        exclude: Iterable[str] = (),
        routes: Iterable[RouteRule] = (),
        allow: Iterable[str] = (),
        strip_credentials: bool = True,
    ) -> None:
        if not isinstance(verifier, Verifier):
            raise TypeError("verifier must be a wimse_wpt.Verifier")
        self.app = app
        self.verifier = verifier
        self._exclude = [path_pattern(p) for p in ([exclude] if isinstance(exclude, str) else exclude)]
        default_allow = tuple(IdentifierPattern(p) for p in ([allow] if isinstance(allow, str) else allow))
        self._default = _Rule(default_allow, frozenset())
        rules: list[tuple[str, bool, _Rule]] = []
        for route in routes:
            prefix, is_prefix = path_pattern(route.path)
            allowed = tuple(IdentifierPattern(p) for p in route.allow) or default_allow
            rules.append((prefix, is_prefix, _Rule(allowed, frozenset(verifier.check_audiences(route.audiences)))))
        # Longest first, exact before prefix of the same length: the most specific rule wins.
        self._routes = sorted(rules, key=lambda r: (len(r[0]), not r[1]), reverse=True)
        self._exact = {prefix: rule for prefix, is_prefix, rule in self._routes if not is_prefix}
        self._forbidden = Problem.of(
            "workload-forbidden", "This workload is not allowed to call this route.", verifier.profile
        )
        strip = {WIT_HEADER, WPT_HEADER if verifier.profile == "wpt-01" else AUTHORIZATION}
        self._strip = frozenset(strip) if strip_credentials else frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan passes through
            await self.app(scope, receive, send)
            return
        path = self._app_path(scope)
        if self._excluded(path):
            scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()
            await self.app(scope, receive, send)
            return
        rule = self._rule(path)
        raw_path = scope.get("raw_path")
        # The path as sent (percent-encoding intact); never the query, whatever the server.
        if raw_path:
            wire_path = raw_path.partition(b"?")[0].decode("latin-1")
        else:
            wire_path = quote(scope["path"], safe="/:@!$&'()*+,;=%~")
        try:
            workload = await self.verifier.verify(
                scope["headers"],
                path=wire_path,
                root_path=scope.get("root_path", ""),
                method=scope.get("method", "GET"),
                audiences=rule.audiences,
            )
        except VerificationError as error:
            await self._refuse(scope, receive, send, error.problem, error.identifier)
            return
        if rule.allow and not any(p.matches(workload.identifier) for p in rule.allow):
            await self._refuse(scope, receive, send, self._forbidden, workload.identifier)
            return
        scope = dict(scope)
        if self._strip:
            scope["headers"] = [h for h in scope["headers"] if h[0] not in self._strip]
        scope["state"] = {**scope.get("state", {}), "workload": workload}
        scope["user"] = WorkloadUser(workload)
        scope["auth"] = AuthCredentials(AUTH_SCOPES)  # it makes its own list
        await self.app(scope, receive, send)

    @staticmethod
    def _app_path(scope: Scope) -> str:
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            return path[len(root) :] or "/"
        return path

    def _excluded(self, path: str) -> bool:
        return any(path.startswith(p) if is_prefix else path == p for p, is_prefix in self._exclude)

    def _rule(self, path: str) -> _Rule:
        rule = self._exact.get(path)
        if rule is not None:
            return rule
        for prefix, is_prefix, candidate in self._routes:
            if is_prefix and path.startswith(prefix):
                return candidate
        return self._default

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, problem: Problem, identifier: str | None
    ) -> None:
        log_rejection(scope, problem, identifier)
        status, headers, body = render_problem(problem)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        # A WebSocket is refused before it is accepted: with the problem as an HTTP response
        # where the server supports it, otherwise with a close (the server answers 403).
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})


def verified_workload(scope: Mapping[str, Any]) -> VerifiedWorkload | None:
    """The workload the middleware verified for this request, if any."""
    state = scope.get("state") or {}
    workload = state.get("workload")
    return workload if isinstance(workload, VerifiedWorkload) else None
