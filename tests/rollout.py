"""A small protected app for the rollout tests (modes, bearer coexistence, events): real
uvicorn, real httpx, tokens minted by the package. The app answers what it was handed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from wimse_wpt import DevIssuer, SigningKey, Verifier, WPTAuth
from wimse_wpt.middleware import WPTMiddleware, verified_workload

from .servers import free_port, serve

CALLER = "wimse://example.com/billing/api"


async def seen(request: Request) -> JSONResponse:
    """What the app sees: the verified workload (or None), the user, its scopes, the headers."""
    workload = verified_workload(request.scope)
    return JSONResponse({
        "workload": workload.identifier if workload else None,
        "bearer_caller": getattr(request.state, "bearer_caller", None),
        "user": request.user.display_name if request.user.is_authenticated else None,
        "scopes": list(request.auth.scopes),
        "headers": sorted(request.headers.keys()),
    })


async def ws(websocket: WebSocket) -> None:
    workload = verified_workload(websocket.scope)
    await websocket.accept()
    await websocket.send_json({"workload": workload.identifier if workload else None})
    await websocket.close()


PATHS = ["/path", "/admin", "/admin/", "/admin/x", "/open", "/items/{id}", "/healthz", "/public/{p:path}", "/{p:path}"]


class App:
    """One trust domain, a verifier for this server's origin, and the middleware over ``seen``."""

    def __init__(self, profile: str = "wpt-01", **options: Any) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.issuer = DevIssuer("example.com")
        self.profile = profile
        self.verifier = Verifier({"example.com": self.issuer.jwks}, [self.origin], profile=profile)  # type: ignore[arg-type]
        routes: list[Any] = [WebSocketRoute("/ws", ws)]
        routes += [Route(p, seen, methods=["GET", "POST"]) for p in PATHS]
        self.app = WPTMiddleware(Starlette(routes=routes), self.verifier, **options)

    def auth(self, identifier: str = CALLER, **options: Any) -> WPTAuth:
        key = SigningKey.generate("Ed25519")
        return WPTAuth(key, self.issuer.issue_wit(identifier, key), profile=self.profile, **options)  # type: ignore[arg-type]

    def client(self, identifier: str | None = CALLER, **options: Any) -> httpx.Client:
        auth = self.auth(identifier, **options) if identifier is not None else None
        return httpx.Client(base_url=self.origin, auth=auth)


@contextlib.contextmanager
def running(profile: str = "wpt-01", **options: Any) -> Iterator[App]:
    app = App(profile, **options)
    with serve(app.app, port=app.port):
        yield app


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
