"""FastAPI integration: dependencies that hand route handlers the verified workload.

    from wimse_wpt.fastapi import Workload, install, require_workload

    install(app, verifier, exclude=["/healthz"])

    @app.post("/orders")
    async def create(workload: Workload): ...

    @app.post("/admin", dependencies=[Depends(require_workload("wimse://example.com/ops/*"))])
    async def admin(): ...

The dependencies declare the WIT and WPT headers as security schemes, so the OpenAPI schema
documents them, without FastAPI demanding them (the middleware has already checked and
removed them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import APIKeyHeader
from starlette.responses import Response

from .identifiers import IdentifierPattern
from .middleware import RouteRule, WPTMiddleware, log_rejection, render_problem, verified_workload
from .problems import Problem, VerificationError
from .verifier import VerifiedWorkload, Verifier

_WIT_SCHEME = APIKeyHeader(
    name="Workload-Identity-Token",
    scheme_name="WorkloadIdentityToken",
    description="The caller's Workload Identity Token (WIT), a JWT from its trust domain's issuer.",
    auto_error=False,
)
_WPT_SCHEME = APIKeyHeader(
    name="Workload-Proof-Token",
    scheme_name="WorkloadProofToken",
    description=(
        "A fresh Workload Proof Token (WPT) signed with the WIT's key and bound to this request "
        "(wpt-01). Under the wpt-02 profile it is sent as `Authorization: WPT <token>` instead."
    ),
    auto_error=False,
)


async def workload(
    request: Request,
    _wit: Annotated[str | None, Security(_WIT_SCHEME)] = None,
    _wpt: Annotated[str | None, Security(_WPT_SCHEME)] = None,
) -> VerifiedWorkload:
    """The verified workload of this request; refuses if the middleware verified none."""
    found = verified_workload(request.scope)
    if found is None:
        # The route was excluded from the middleware, or the middleware is not installed.
        raise VerificationError(Problem.of("wit-missing", "This route needs a verified workload."))
    return found


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
            problem = Problem.of("workload-forbidden", "This workload is not allowed to call this route.")
            raise VerificationError(problem, found.identifier)
        return found

    return dependency


async def problem_handler(request: Request, exc: Exception) -> Response:
    """Render a :class:`VerificationError` raised by a dependency as problem+json."""
    assert isinstance(exc, VerificationError)
    log_rejection(request.scope, exc.problem, exc.identifier)
    status, headers, body = render_problem(exc.problem)
    response = Response(body, status_code=status, media_type="application/problem+json")
    for name, value in headers:
        if name not in (b"content-type", b"content-length"):
            response.headers[name.decode()] = value.decode()
    return response


def install(
    app: FastAPI,
    verifier: Verifier,
    *,
    exclude: Iterable[str] = (),
    routes: Iterable[RouteRule] = (),
    allow: Iterable[str] = (),
    strip_credentials: bool = True,
) -> None:
    """Add :class:`WPTMiddleware` to ``app`` and render the dependencies' refusals as problems."""
    options: dict[str, Any] = {
        "verifier": verifier,
        "exclude": list(exclude),
        "routes": list(routes),
        "allow": list(allow),
        "strip_credentials": strip_credentials,
    }
    app.add_middleware(WPTMiddleware, **options)
    app.add_exception_handler(VerificationError, problem_handler)
