"""FastAPI integration: dependencies that hand route handlers the verified workload.

    from wimse_wpt.fastapi import Workload, install, require_workload, workload_of

    install(app, verifier, exclude=["/healthz"])

    @app.post("/orders")
    async def create(workload: Workload): ...

    @app.get("/hot")                            # the same, without FastAPI's dependency resolution
    async def hot(request: Request):
        workload = workload_of(request)

    @app.post("/admin", dependencies=[Depends(require_workload("wimse://example.com/ops/*"))])
    async def admin(): ...

``install`` leaves the app's own ``docs_url``, ``redoc_url`` and ``openapi_url`` (and Swagger
UI's OAuth2 redirect) open: an app that wants them closed disables them (``FastAPI(docs_url=None,
redoc_url=None, openapi_url=None)``). It documents, on every route the middleware protects, the
WIT and WPT headers as one security requirement (both headers, per the configured profile) and
the problem responses (``application/problem+json``) the middleware may answer with. The
dependencies themselves only read the request: nothing per request is spent on documentation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from starlette.requests import HTTPConnection
from starlette.responses import Response

from .coexistence import BearerCoexistence
from .identifiers import IdentifierPattern
from .middleware import (
    SCOPE_KEY,
    Judged,
    ProblemResponse,
    RouteRule,
    WPTMiddleware,
    log_rejection,
    verified_workload,
)
from .observability import Hook, Observers
from .paths import PathPattern, PathPolicy
from .problems import Problem, VerificationError
from .settings import Mode
from .verifier import VerifiedWorkload, Verifier


def _security_schemes(profile: str) -> dict[str, dict[str, str]]:
    wit = {
        "type": "apiKey",
        "in": "header",
        "name": "Workload-Identity-Token",
        "description": "The caller's Workload Identity Token (WIT), a JWT from its trust domain's issuer.",
    }
    if profile == "wpt-02":
        wpt = {
            "type": "http",
            "scheme": "WPT",
            "description": "`Authorization: WPT <token>`: a fresh Workload Proof Token signed with the WIT's key.",
        }
    else:
        wpt = {
            "type": "apiKey",
            "in": "header",
            "name": "Workload-Proof-Token",
            "description": "A fresh Workload Proof Token (WPT) signed with the WIT's key, bound to this request.",
        }
    return {"WorkloadIdentityToken": wit, "WorkloadProofToken": wpt}


def _refusal(request: HTTPConnection, code: str, detail: str) -> Problem:
    """The problem the middleware itself would send for ``code``: same profile, same status."""
    judged = request.scope.get(SCOPE_KEY)
    if not isinstance(judged, Judged):
        # No WPTMiddleware in front of this route: nothing was verified, and the profile to
        # answer in is unknown. A check that cannot run refuses, with its own code.
        return Problem.of("internal-error", "The request could not be verified.")
    return Problem.of(code, detail, judged.profile)


def workload_of(request: HTTPConnection) -> VerifiedWorkload:
    """The verified workload of this request, refused as the ``Workload`` dependency refuses:
    the same check without FastAPI's dependency resolution, which costs more per request than
    the middleware's own Python (README, Benchmarks). For hot routes without parameters: it runs
    in the handler, after FastAPI validated them, where the dependency refuses before (a request
    the middleware let through unverified, in report-only or optional mode or on an excluded
    route, would meet FastAPI's 422 first)."""
    found = verified_workload(request.scope)
    if found is None:
        # The route was excluded from the middleware, or the middleware is not installed.
        raise VerificationError(_refusal(request, "wit-missing", "This route needs a verified workload."))
    return found


async def workload(request: Request) -> VerifiedWorkload:
    """The verified workload of this request; refuses if the middleware verified none."""
    return workload_of(request)


#: Annotate a handler parameter with this to receive the verified workload.
Workload = Annotated[VerifiedWorkload, Depends(workload)]


def require_workload(*patterns: str) -> Callable[..., Awaitable[VerifiedWorkload]]:
    """A dependency that also requires the workload to match one of ``patterns``
    (exact identifiers, or prefixes ending in ``/*``); others get a 403 problem."""
    allowed = tuple(IdentifierPattern(p) for p in patterns)
    if not allowed:
        raise ValueError("require_workload needs at least one identifier pattern")

    async def dependency(found: Workload, request: Request) -> VerifiedWorkload:
        if not any(p.matches(found.identifier) for p in allowed):
            problem = _refusal(request, "workload-forbidden", "This workload is not allowed to call this route.")
            raise VerificationError(problem, found.identifier)
        return found

    return dependency


async def problem_handler(request: Request, exc: Exception) -> Response:
    """Render a :class:`VerificationError` raised by a dependency exactly as the middleware
    renders its own refusals (same status, headers and body for the same problem)."""
    if not isinstance(exc, VerificationError):  # registered for VerificationError only
        raise exc
    if exc.problem.code == "internal-error":
        logging.getLogger("wimse_wpt").error(
            "wpt internal error method=%s: a workload dependency runs without WPTMiddleware in front",
            request.scope.get("method", "WEBSOCKET"),
        )
    else:
        log_rejection(request.scope, exc.problem, exc.identifier)
    return ProblemResponse(exc.problem)


def install(
    app: FastAPI,
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
    """Add :class:`WPTMiddleware` to ``app`` and render the dependencies' refusals as problems.
    The options are the middleware's (see :class:`~wimse_wpt.middleware.WPTMiddleware`)."""
    options: dict[str, Any] = {
        "verifier": verifier,
        "exclude": [exclude] if isinstance(exclude, str) else list(exclude),
        "routes": list(routes),
        "allow": [allow] if isinstance(allow, str) else list(allow),
        "strip_credentials": strip_credentials,
        "path_policy": path_policy,
        "mode": mode,
        "observers": observers if isinstance(observers, Observers) else Observers(observers),
        "bearer": bearer,
    }
    # The app's own documentation stays reachable: FastAPI serves it only when enabled.
    docs = [app.docs_url, app.redoc_url, app.openapi_url]
    if app.docs_url:
        docs.append(app.swagger_ui_oauth2_redirect_url)
    options["exclude"] += [url for url in docs if url and url not in options["exclude"]]
    app.add_middleware(WPTMiddleware, **options)
    app.add_exception_handler(VerificationError, problem_handler)
    _document(app, verifier.profile, [PathPattern.parse(p) for p in options["exclude"]])


#: RFC 9457 problem details as the middleware renders them (plus its stable ``code``).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; `code` is the stable wimse-wpt problem code.",
    "properties": {
        "type": {"type": "string", "format": "uri-reference", "example": "urn:wimse-wpt:problem:wit-missing"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "example": "wit-missing"},
    },
    "required": ["type", "title", "status", "detail", "code"],
}


def _problem_responses(profile: str) -> dict[str, dict[str, Any]]:
    credential = "The workload's credentials are missing or invalid (wit-*, wpt-*, ath/tth/oth-*, bearer-invalid)"
    descriptions = {
        "400": "The request path is ambiguous (path-ambiguous)"
        + ("" if profile == "wpt-02" else "; or: " + credential[0].lower() + credential[1:]),
        "401": credential + "; with WWW-Authenticate: WPT" if profile == "wpt-02" else None,
        "403": "The workload is not allowed on this route (workload-forbidden, bearer-refused)",
        "429": "The workload holds its whole share of the replay cache (replay-quota-exceeded)",
        "503": "A check could not run: replay store or trust anchor keys unavailable; refused, not waved through",
    }
    content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {status: {"description": text, "content": content} for status, text in descriptions.items() if text}


def _document(app: FastAPI, profile: str, excluded: list[PathPattern]) -> None:
    """Add the two headers and the problem responses to every protected operation's schema."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {}).update(_security_schemes(profile))
        components.setdefault("schemas", {}).setdefault("Problem", PROBLEM_SCHEMA)
        requirement: dict[str, list[str]] = {"WorkloadIdentityToken": [], "WorkloadProofToken": []}
        problems = _problem_responses(profile)
        for path, operations in schema.get("paths", {}).items():
            if any(p.matches(path) for p in excluded):
                continue
            for operation in operations.values():
                if isinstance(operation, dict):
                    operation.setdefault("security", []).append(requirement)
                    responses = operation.setdefault("responses", {})
                    for status, response in problems.items():
                        responses.setdefault(status, response)  # the app's own description wins
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
