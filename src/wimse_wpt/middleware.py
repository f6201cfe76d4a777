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
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .identifiers import IdentifierPattern
from .paths import PathPattern, PathPolicy, canonical_path, has_dot_segment, route_path
from .problems import Kind, Problem, Profile, Reject, VerificationError
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
        path: ``/orders`` (exactly), or ``/orders/*`` (``/orders`` itself and everything below
            it), matched against the canonical path (:mod:`wimse_wpt.paths`).
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


#: The scope key under which the middleware leaves what the FastAPI dependencies need to refuse
#: exactly as it would (one object per middleware, built once).
SCOPE_KEY = "wimse_wpt"


class Judged(NamedTuple):
    """What refusals made later in the app need from the middleware that let the request in."""

    profile: Profile


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


class ProblemResponse(Response):
    """A Starlette response carrying exactly :func:`render_problem`'s status, headers and body."""

    media_type = "application/problem+json"

    def __init__(self, problem: Problem) -> None:
        self.status_code, self.raw_headers, self.body = render_problem(problem)
        self.background = None


def log_rejection(scope: Scope, problem: Problem, identifier: str | None, path: str | None = None) -> None:
    """One line per refusal: the code, and the workload when known. Never a token."""
    if path is None:  # behind the middleware, the scope's path is the canonical one
        path = route_path(scope.get("path", ""), scope.get("root_path", "")) or "/"
    logger.log(
        logging.WARNING if problem.kind is Kind.UNAVAILABLE else logging.INFO,
        "wpt rejected code=%s status=%d workload=%s method=%s path=%r",
        problem.code,
        problem.status,
        identifier or "-",
        scope.get("method", "WEBSOCKET"),
        path[:200],
    )


def log_internal_error(scope: Scope, exc: BaseException, path: str) -> None:
    """One ERROR line with the traceback: frames and exception types only. An exception's
    message may quote what it was given (a token), so no message is logged."""
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        lines.append(f"{type(current).__module__}.{type(current).__qualname__}")
        lines.extend(f"  {f.filename}:{f.lineno} in {f.name}" for f in frames)
        current = current.__cause__ or current.__context__
    logger.error(
        "wpt internal error method=%s path=%r: verification raised; traceback (most recent call last, "
        "messages withheld):\n%s",
        scope.get("method", "WEBSOCKET"),
        path[:200],
        "\n".join(lines),
    )


def path_pattern(pattern: str) -> tuple[str, bool]:
    """``(base, is_prefix)`` of a path pattern (see :class:`~wimse_wpt.paths.PathPattern`)."""
    parsed = PathPattern.parse(pattern)
    return parsed.base, parsed.prefix


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
        path_policy: how to treat ambiguous paths (:class:`~wimse_wpt.paths.PathPolicy`);
            by default they are refused with ``400 path-ambiguous``.
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
        path_policy: PathPolicy | None = None,
    ) -> None:
        if not isinstance(verifier, Verifier):
            raise TypeError("verifier must be a wimse_wpt.Verifier")
        if path_policy is None:
            path_policy = PathPolicy()
        if not isinstance(path_policy, PathPolicy):
            raise TypeError("path_policy must be a wimse_wpt.paths.PathPolicy")
        self.app = app
        self.verifier = verifier
        self._paths = path_policy
        excluded = [PathPattern.parse(p) for p in ([exclude] if isinstance(exclude, str) else exclude)]
        # "/x/*" opens "/x" too; str.startswith takes the tuple of prefixes in one call.
        self._open_exact = frozenset(
            [p.base for p in excluded if not p.prefix] + [p.base[:-1] for p in excluded if p.prefix and p.base.endswith("/")]
        )
        self._open_prefixes = tuple(p.base for p in excluded if p.prefix)
        default_allow = tuple(IdentifierPattern(p) for p in ([allow] if isinstance(allow, str) else allow))
        self._default = _Rule(default_allow, frozenset())
        rules: list[tuple[PathPattern, _Rule]] = []
        for route in routes:
            pattern = PathPattern.parse(route.path)
            allowed = tuple(IdentifierPattern(p) for p in route.allow) or default_allow
            rules.append((pattern, _Rule(allowed, frozenset(verifier.check_audiences(route.audiences)))))
        # Longest first, exact before prefix of the same length: the most specific rule wins.
        rules.sort(key=lambda r: (len(r[0].base), not r[0].prefix), reverse=True)
        # Exact rules, then each "/x/*" rule for "/x" itself unless "/x" has an exact rule.
        self._exact = {p.base[:-1]: rule for p, rule in rules if p.prefix and p.base.endswith("/")}
        self._exact.update({p.base: rule for p, rule in rules if not p.prefix})
        self._prefixes = tuple((p.base, rule) for p, rule in rules if p.prefix)
        profile = verifier.profile
        self._judged = Judged(profile)
        self._forbidden = Problem.of("workload-forbidden", "This workload is not allowed to call this route.", profile)
        self._internal = Problem.of("internal-error", "The request could not be verified.", profile)
        strip = {WIT_HEADER, WPT_HEADER if profile == "wpt-01" else AUTHORIZATION}
        self._strip = frozenset(strip) if strip_credentials else frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan passes through
            await self.app(scope, receive, send)
            return
        try:
            where = canonical_path(scope, self._paths)
        except Reject as reject:  # refused before any exclusion or rule could apply
            seen = route_path(scope.get("path", ""), scope.get("root_path", ""))
            problem = Problem.of(reject.code, reject.detail, self._judged.profile)
            await self._refuse(scope, receive, send, problem, None, seen)
            return
        except Exception as exc:
            seen = route_path(scope.get("path", ""), scope.get("root_path", ""))
            log_internal_error(scope, exc, seen)
            await self._refuse(scope, receive, send, self._internal, None, seen, logged=True)
            return
        scope = dict(scope)
        if where.rewritten is not None:  # the app serves the normalised path the rules judged
            scope["path"], scope["raw_path"] = where.rewritten
        scope[SCOPE_KEY] = self._judged
        path = where.route
        if self._excluded(path):
            scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()
            await self.app(scope, receive, send)
            return
        try:
            rule = self._rule(path)
            workload = await self.verifier.verify(
                scope["headers"],
                path=where.target,
                root_path=scope.get("root_path", ""),
                method=scope.get("method", "GET"),
                audiences=rule.audiences,
            )
            if not self._allowed(workload.identifier, path, rule):
                raise VerificationError(self._forbidden, workload.identifier)
        except VerificationError as error:
            await self._refuse(scope, receive, send, error.problem, error.identifier, path)
            return
        except Exception as exc:  # no input should get here; the server must never see it
            log_internal_error(scope, exc, path)
            await self._refuse(scope, receive, send, self._internal, None, path, logged=True)
            return
        if self._strip:
            scope["headers"] = [h for h in scope["headers"] if h[0] not in self._strip]
        scope["state"] = {**scope.get("state", {}), "workload": workload}
        scope["user"] = WorkloadUser(workload)
        scope["auth"] = AuthCredentials(AUTH_SCOPES)  # it makes its own list
        await self.app(scope, receive, send)

    def _allowed(self, identifier: str, path: str, rule: _Rule) -> bool:
        if rule.allow and not any(p.matches(identifier) for p in rule.allow):
            return False
        if len(path) > 1 and path[-1] == "/":
            # StaticFiles (and any handler that normalises) serves "/x/" as "/x": pass both rules.
            twin = self._rule(path[:-1])
            return not twin.allow or any(p.matches(identifier) for p in twin.allow)
        return True

    def _is_open(self, path: str) -> bool:
        return path in self._open_exact or path.startswith(self._open_prefixes)

    def _excluded(self, path: str) -> bool:
        if not self._is_open(path):
            return False
        if len(path) > 1 and path[-1] == "/" and not self._is_open(path[:-1]):
            return False  # "/x/" is served as "/x" by StaticFiles: open only if "/x" is open too
        # Never open a path that still holds a dot segment, whatever the policy let through.
        return not has_dot_segment(path)

    def _rule(self, path: str) -> _Rule:
        rule = self._exact.get(path)
        if rule is not None:
            return rule
        for prefix, candidate in self._prefixes:
            if path.startswith(prefix):
                return candidate
        return self._default

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        problem: Problem,
        identifier: str | None,
        path: str,
        logged: bool = False,
    ) -> None:
        if not logged:
            log_rejection(scope, problem, identifier, path)
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
