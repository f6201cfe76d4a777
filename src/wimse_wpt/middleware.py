"""A pure ASGI middleware: every HTTP request and WebSocket handshake must prove its workload.

On success the app is called with the :class:`~wimse_wpt.verifier.VerifiedWorkload` at
``request.state.workload`` and with Starlette's ``scope["user"]``/``scope["auth"]`` set
(scopes ``authenticated`` and ``workload``), so ``starlette.authentication.requires``
works. The WIT and WPT headers are removed before the app sees them. Failures are answered
with RFC 9457 ``application/problem+json`` and logged, one line each, without any token.

Modes (globally, or per :class:`RouteRule`): ``enforce`` refuses what fails; ``report-only``
verifies, logs and reports every outcome but lets every request through (the app sees the
workload only when enforce would have let the request in); ``optional`` lets a request
without any WIMSE header through unauthenticated, and refuses one whose headers fail.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .coexistence import BEARER_SCOPES, BearerCoexistence, BearerUser
from .headers import parse_authorization
from .identifiers import IdentifierPattern
from .observability import Hook, Observers, VerificationEvent, log_extra
from .paths import PathPattern, PathPolicy, RequestPath, canonical_path, has_dot_segment, route_path
from .problems import Kind, Problem, Profile, Reject, VerificationError
from .settings import MODES, Mode
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
        mode: ``enforce``, ``report-only`` or ``optional`` for this route; None (default)
            takes the middleware's ``mode``.
    """

    path: str
    allow: Iterable[str] = ()
    audiences: Iterable[str] = ()
    mode: Mode | None = None


@dataclass(frozen=True, slots=True)
class _Rule:
    allow: tuple[IdentifierPattern, ...]
    audiences: frozenset[str]
    mode: Mode
    route: str  # the pattern, as events name it: never the request's own path


#: How much each mode blocks: where two rules judge one request, the stricter applies.
_STRICTNESS: Final = {"report-only": 0, "optional": 1, "enforce": 2}
#: The route events name for requests judged before any rule could apply.
AMBIGUOUS_ROUTE: Final = "(ambiguous path)"
DEFAULT_ROUTE: Final = "*"
#: Routing decisions remembered (paths up to this many bytes), and how many before a clear.
_ROUTE_KEY_BYTES: Final = 512
_ROUTES_KEPT: Final = 1024
_WIMSE_HEADERS: Final = frozenset({WIT_HEADER, WPT_HEADER})


def _is_wimse_field(header: tuple[bytes, bytes]) -> bool:
    name = header[0].lower()
    if name == AUTHORIZATION:
        return header[1].strip(b" \t").partition(b" ")[0].split(b"\t", 1)[0].lower() == b"wpt"
    return name in _WIMSE_HEADERS


#: Read only when observers are configured (events carry the verification time).
_clock = time.perf_counter


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


def log_rejection(
    scope: Scope,
    problem: Problem,
    identifier: str | None,
    path: str | None = None,
    *,
    event: VerificationEvent | None = None,
) -> None:
    """One line per refusal: the code, and the workload when known. Never a token. With the
    request's ``event``, the record carries its fields as ``extra`` (``wimse_*``), and a
    request let through in report-only mode reads ``wpt reported`` instead."""
    if path is None:  # behind the middleware, the scope's path is the canonical one
        path = route_path(scope.get("path", ""), scope.get("root_path", "")) or "/"
    logger.log(
        logging.WARNING if problem.kind is Kind.UNAVAILABLE else logging.INFO,
        "wpt %s code=%s status=%d workload=%s method=%s path=%r%s",
        "reported" if event is not None and event.outcome == "reported" else "rejected",
        problem.code,
        problem.status,
        identifier or "-",
        scope.get("method", "WEBSOCKET"),
        path[:200],
        # What helps fix it (wpt-audience: the expected and received aud), truncated and escaped.
        " " + problem.log_context if problem.log_context else "",
        extra=log_extra(event) if event is not None else None,
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
        routes: per-route allow-lists, audience aliases and modes; the longest matching path wins.
        allow: workload identifier patterns allowed on every route without its own ``allow``.
        strip_credentials: remove the WIT and WPT headers before the app sees them (default),
            so an app that forwards headers cannot leak a usable credential.
        path_policy: how to treat ambiguous paths (:class:`~wimse_wpt.paths.PathPolicy`);
            by default they are refused with ``400 path-ambiguous``.
        mode: ``enforce`` (default), ``report-only`` or ``optional`` for every route without
            its own ``mode``.
        observers: hooks called with one :class:`~wimse_wpt.observability.VerificationEvent`
            per judged request (callables, or objects with ``on_event``).
        bearer: a :class:`~wimse_wpt.coexistence.BearerCoexistence` letting listed callers
            still authenticate with a bearer token during a migration.
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
        mode: Mode = "enforce",
        observers: Iterable[Hook] | Observers = (),
        bearer: BearerCoexistence | None = None,
    ) -> None:
        if not isinstance(verifier, Verifier):
            raise TypeError("verifier must be a wimse_wpt.Verifier")
        if path_policy is None:
            path_policy = PathPolicy()
        if not isinstance(path_policy, PathPolicy):
            raise TypeError("path_policy must be a wimse_wpt.paths.PathPolicy")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if bearer is not None and not isinstance(bearer, BearerCoexistence):
            raise TypeError("bearer must be a wimse_wpt.coexistence.BearerCoexistence")
        self.app = app
        self.verifier = verifier
        self._paths = path_policy
        self._mode = mode
        self._bearer = bearer
        self._observers = observers if isinstance(observers, Observers) else Observers(observers)
        self._observed = bool(self._observers)  # a plain bool: the one test a request pays without hooks
        excluded = [PathPattern.parse(p) for p in ([exclude] if isinstance(exclude, str) else exclude)]
        # "/x/*" opens "/x" too; str.startswith takes the tuple of prefixes in one call.
        self._open_exact = frozenset(
            [p.base for p in excluded if not p.prefix] + [p.base[:-1] for p in excluded if p.prefix and p.base.endswith("/")]
        )
        self._open_prefixes = tuple(p.base for p in excluded if p.prefix)
        default_allow = tuple(IdentifierPattern(p) for p in ([allow] if isinstance(allow, str) else allow))
        self._default = _Rule(default_allow, frozenset(), mode, DEFAULT_ROUTE)
        rules: list[tuple[PathPattern, _Rule]] = []
        for route in routes:
            pattern = PathPattern.parse(route.path)
            # Exclusions are judged first: a rule every path of which they open would never apply.
            if self._is_open(pattern.base):
                raise ValueError(f"RouteRule {route.path!r} lies under an exclusion, which opens it: it would never apply")
            allowed = tuple(IdentifierPattern(p) for p in route.allow) or default_allow
            if route.mode is not None and route.mode not in MODES:
                raise ValueError(f"RouteRule {route.path!r}: mode must be one of {', '.join(MODES)}, not {route.mode!r}")
            audiences = frozenset(verifier.check_audiences(route.audiences))
            rules.append((pattern, _Rule(allowed, audiences, route.mode or mode, route.path)))
        # Longest first, exact before prefix of the same length: the most specific rule wins.
        rules.sort(key=lambda r: (len(r[0].base), not r[0].prefix), reverse=True)
        # Exact rules, then each "/x/*" rule for "/x" itself unless "/x" has an exact rule.
        self._exact = {p.base[:-1]: rule for p, rule in rules if p.prefix and p.base.endswith("/")}
        self._exact.update({p.base: rule for p, rule in rules if not p.prefix})
        self._prefixes = tuple((p.base, rule) for p, rule in rules if p.prefix)
        # An ambiguous path cannot be matched to a rule: the app (StaticFiles, a proxy) may
        # serve it from under any of them. It is let through only where no rule blocks.
        self._ambiguous_passes = all(rule.mode == "report-only" for rule in [self._default, *(r for _, r in rules)])
        # Only these modes need to know, before verifying, whether any WIMSE header is there.
        self._sniff = bearer is not None or any(
            rule.mode == "optional" for rule in [self._default, *(r for _, r in rules)]
        )
        profile = verifier.profile
        self._judged = Judged(profile)
        self._forbidden = Problem.of("workload-forbidden", "This workload is not allowed to call this route.", profile)
        self._internal = Problem.of("internal-error", "The request could not be verified.", profile)
        self._bearer_invalid = Problem.of("bearer-invalid", "The bearer token was not accepted.", profile)
        self._bearer_refused = Problem.of(
            "bearer-refused", "This caller may not authenticate with a bearer token here: send a WIT and a WPT.", profile
        )
        self._routes: dict[tuple[str, bytes, str], tuple[RequestPath, bool, _Rule, Mode]] = {}
        strip = {WIT_HEADER, WPT_HEADER if profile == "wpt-01" else AUTHORIZATION}
        self._strip = frozenset(strip) if strip_credentials else frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan passes through
            await self.app(scope, receive, send)
            return
        # Without observers no clock is read and no event is built.
        started = _clock() if self._observed else 0.0
        try:
            where, excluded, rule, mode = self._route(scope)
        except Reject as reject:  # refused before any exclusion or rule could apply
            seen = route_path(scope.get("path", ""), scope.get("root_path", ""))
            problem = Problem.of(reject.code, reject.detail, self._judged.profile)
            if self._ambiguous_passes:  # report-only everywhere: nothing stricter to reach
                await self._let_through(scope, receive, send, problem, None, seen, AMBIGUOUS_ROUTE, started)
                return
            await self._refuse(scope, receive, send, problem, None, seen, AMBIGUOUS_ROUTE, "enforce", started)
            return
        except Exception as exc:
            seen = route_path(scope.get("path", ""), scope.get("root_path", ""))
            log_internal_error(scope, exc, seen)
            if self._ambiguous_passes:
                await self._let_through(scope, receive, send, self._internal, None, seen, AMBIGUOUS_ROUTE, started, True)
                return
            await self._refuse(scope, receive, send, self._internal, None, seen, AMBIGUOUS_ROUTE, "enforce", started, True)
            return
        scope = dict(scope)
        if where.rewritten is not None:  # the app serves the normalised path the rules judged
            scope["path"], scope["raw_path"] = where.rewritten
        scope[SCOPE_KEY] = self._judged
        path = where.route
        if excluded:
            if self._strip:
                # Clients sign every request, excluded ones too: an open route (a public proxy,
                # a handler that logs headers) must not be handed an unused proof to forward.
                scope["headers"] = [field for field in scope["headers"] if not _is_wimse_field(field)]
            scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()
            await self.app(scope, receive, send)
            return
        if self._sniff:
            bearer = self._bearer_or_nothing(scope["headers"])
            if bearer is not None:
                if bearer and self._bearer is not None:
                    await self._bearer_way(scope, receive, send, bearer, path, rule, mode, started)
                    return
                if mode == "optional":  # no WIMSE header at all: in, unauthenticated
                    if self._observed:
                        self._emit(scope, "unauthenticated", None, None, rule.route, mode, 200, started)
                    scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()
                    await self.app(scope, receive, send)
                    return
        try:
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
            if mode == "report-only":
                await self._let_through(scope, receive, send, error.problem, error.identifier, path, rule.route, started)
                return
            await self._refuse(scope, receive, send, error.problem, error.identifier, path, rule.route, mode, started)
            return
        except Exception as exc:  # no input should get here; the server must never see it
            log_internal_error(scope, exc, path)
            if mode == "report-only":
                await self._let_through(scope, receive, send, self._internal, None, path, rule.route, started, True)
                return
            await self._refuse(scope, receive, send, self._internal, None, path, rule.route, mode, started, True)
            return
        if self._observed:
            self._emit(scope, "accepted", None, workload.identifier, rule.route, mode, 200, started, "wpt")
        if self._strip:
            scope["headers"] = [h for h in scope["headers"] if h[0] not in self._strip]
        scope["state"] = {**scope.get("state", {}), "workload": workload}
        scope["user"] = WorkloadUser(workload)
        scope["auth"] = AuthCredentials(AUTH_SCOPES)  # it makes its own list
        await self.app(scope, receive, send)

    def _bearer_or_nothing(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
        """None when the request carries any WIMSE header (Workload-Identity-Token,
        Workload-Proof-Token, or an Authorization field of scheme WPT, in either profile):
        it must then be verified whole. Otherwise the bearer token of its single
        ``Authorization: Bearer`` field, or ``b""`` when there is none."""
        authorizations: list[bytes] = []
        for name, value in headers:
            name = name.lower()
            if name in _WIMSE_HEADERS:
                return None
            if name == AUTHORIZATION:
                if _is_wimse_field((name, value)):
                    return None
                authorizations.append(value)
        if not authorizations or self._bearer is None:
            return b""  # without a coexistence policy, no Authorization field is ours to judge
        if len(authorizations) > 1:
            # Which of two fields is the bearer is not guessed: the WPT way refuses them.
            bearers = [v for v in authorizations if v.strip(b" \t")[:6].lower() == b"bearer"]
            return None if bearers else b""
        credentials = parse_authorization(authorizations[0])
        if credentials is None:
            # Malformed (RFC 9110 11.4): a lenient parser in the app could still read a bearer
            # in it ("Bearer<TAB>token") that the policy never judged. The WPT way refuses it.
            return None
        if credentials.scheme != b"bearer":
            return b""
        return credentials.token68 if credentials.token68 is not None else None  # auth-params: malformed

    async def _bearer_way(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        token: bytes,
        path: str,
        rule: _Rule,
        mode: Mode,
        started: float,
    ) -> None:
        """A bearer-only request under a coexistence policy: the app's callable names the
        caller, and that identifier (never a claim read before) is what both lists judge."""
        policy = self._bearer
        assert policy is not None
        identifier: str | None = None
        try:
            if len(token) > policy.max_bytes:
                raise VerificationError(self._bearer_invalid)
            identifier = await policy.identify(token.decode("latin-1"))
            if identifier is None:
                raise VerificationError(self._bearer_invalid)
            if not policy.may_use_bearer(identifier):
                raise VerificationError(self._bearer_refused, identifier)
            if not self._allowed(identifier, path, rule):
                raise VerificationError(self._forbidden, identifier)
        except VerificationError as error:
            problem, who = error.problem, error.identifier
            if mode == "report-only":
                await self._let_through(scope, receive, send, problem, who, path, rule.route, started, False, "bearer")
                return
            await self._refuse(scope, receive, send, problem, who, path, rule.route, mode, started, False, "bearer")
            return
        except Exception as exc:  # the app's check failed: fail closed, never wave it through
            log_internal_error(scope, exc, path)
            if mode == "report-only":
                await self._let_through(scope, receive, send, self._internal, None, path, rule.route, started, True, "bearer")
                return
            await self._refuse(scope, receive, send, self._internal, None, path, rule.route, mode, started, True, "bearer")
            return
        if self._observed:
            self._emit(scope, "accepted", None, identifier, rule.route, mode, 200, started, "bearer")
        scope["state"] = {**scope.get("state", {}), "bearer_caller": identifier}
        scope["user"] = BearerUser(identifier)
        scope["auth"] = AuthCredentials(BEARER_SCOPES)
        await self.app(scope, receive, send)

    def _route(self, scope: Scope) -> tuple[RequestPath, bool, _Rule, Mode]:
        """The request's canonical path, whether it is excluded, its rule and its mode: a pure
        function of the scope's path, raw_path and root_path, so remembered for short paths
        (clients call the same few routes). Bounded: cleared when full. Raises ``Reject``."""
        raw = scope.get("raw_path")
        key = (scope["path"], raw, scope.get("root_path", "")) if type(raw) is bytes and len(raw) <= _ROUTE_KEY_BYTES else None
        if key is not None:
            known = self._routes.get(key)
            if known is not None:
                return known
        where = canonical_path(scope, self._paths)
        path = where.route
        rule = self._rule(path)
        mode = rule.mode
        if len(path) > 1 and path[-1] == "/":  # "/x/" is served as "/x": the stricter mode of both
            twin = self._rule(path[:-1]).mode
            if _STRICTNESS[twin] > _STRICTNESS[mode]:
                mode = twin
        decided = (where, self._excluded(path), rule, mode)
        if key is not None:
            if len(self._routes) >= _ROUTES_KEPT:
                self._routes.clear()
            self._routes[key] = decided
        return decided

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

    def _emit(
        self,
        scope: Scope,
        outcome: Any,
        problem: Problem | None,
        identifier: str | None,
        route: str,
        mode: str,
        status: int,
        started: float,
        credential: str | None = None,
    ) -> VerificationEvent:
        event = VerificationEvent.of(
            outcome,
            problem.code if problem is not None else None,
            workload=identifier,
            route=route,
            profile=self._judged.profile,
            duration=_clock() - started if self._observed else 0.0,
            status=status,
            method=scope.get("method", "WEBSOCKET"),
            mode=mode,
            credential=credential,
        )
        if self._observed:
            self._observers.emit(event)
        return event

    async def _let_through(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        problem: Problem,
        identifier: str | None,
        path: str,
        route: str,
        started: float,
        logged: bool = False,
        credential: str | None = "wpt",
    ) -> None:
        """Report-only: record what enforce would have refused, then call the app with no
        workload (nothing enforce would not have let it see)."""
        event = self._emit(scope, "reported", problem, identifier, route, "report-only", problem.status, started, credential)
        if not logged:
            log_rejection(scope, problem, identifier, path, event=event)
        scope = dict(scope)
        scope[SCOPE_KEY] = self._judged
        if self._strip:
            # The WIMSE credentials only: an Authorization field of another scheme (the app's
            # own bearer auth, still in use while this is report-only) reaches the app as sent.
            scope["headers"] = [h for h in scope["headers"] if not _is_wimse_field(h)]
        scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()
        await self.app(scope, receive, send)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        problem: Problem,
        identifier: str | None,
        path: str,
        route: str,
        mode: str,
        started: float,
        logged: bool = False,
        credential: str | None = "wpt",
    ) -> None:
        event = self._emit(scope, "refused", problem, identifier, route, mode, problem.status, started, credential)
        if not logged:
            log_rejection(scope, problem, identifier, path, event=event)
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
