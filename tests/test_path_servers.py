"""Issue 15 through real servers: every spelling of a protected file is refused as ambiguous or
judged as that file, never served under an exclusion or a weaker rule.

The app holds StaticFiles mounts over a directory with ``pub/`` and ``secret/`` files and a
FastAPI ``APIRouter(prefix="/admin")``; it runs under uvicorn (with and without ``root_path``),
inside a Starlette ``Mount``, and under hypercorn (which keeps ``root_path`` out of ``path``).
Requests go out on a plain socket so that each spelling reaches the server byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from wimse_wpt import DevIssuer, SigningKey, Verifier, mint_wpt
from wimse_wpt.middleware import RouteRule, WPTMiddleware
from wimse_wpt.paths import PathPolicy

from .servers import free_port, serve

SECRET = b"TOP-SECRET-CONTENT"
PUBLIC = b"public-content"
OPS = "wimse://example.com/ops/reader"
OTHER = "wimse://example.com/billing/api"
NORMALIZE = PathPolicy(normalize=True, merge_slashes=True, escaped_slashes="unescape")

#: Spellings, relative to a StaticFiles mount, that reach (or once reached) secret/x from pub/.
ESCAPES = [
    "pub/../secret/x", "pub/%2e%2e/secret/x", "pub/%2E%2E/secret/x", "pub/%2e./secret/x", "pub/.%2E/secret/x",
    "pub/.%2e/secret/x", "pub/..%2fsecret/x", "pub/..%2Fsecret/x", "pub/%2e%2e%2fsecret%2fx", "pub/..%5csecret/x",
    "pub/..%5Csecret/x", "pub/..\\secret/x", "pub\\..\\secret/x", "pub/%252e%252e/secret/x",
    "pub/%252E%252E%252Fsecret/x", "pub/..;/secret/x", "pub/..;x=1/secret/x", "pub//../secret/x",
    "pub/./../secret/x", "pub/x/../../secret/x", "pub/.../secret/x", "pub/../secret/x/.", "pub/../secret/./x",
    "pub/..%00/secret/x", "pub/%00/../secret/x", "pub/%C0%AE%C0%AE/secret/x", "pub/%E0%80%AE%E0%80%AE/secret/x",
    "pub/%EF%BC%8E%EF%BC%8E/secret/x", "pub/..%EF%BC%8Fsecret/x", "pub/%2e%2e%5c%2e%2e%5csecret/x",
    "pub/..%2F..%2Fstatic%2Fsecret/x", "pub/%2%65%2e/secret/x", "pub/..%20/secret/x", "pub/%2e%2e%20/secret/x",
    "pub/..%09/secret/x", "pub/../secret/x?a=1", "pub/../secret/x#frag", "pub/..%3Bsecret/x", "pub/../SECRET/x",
    "./secret/x", "/secret/x", "%2Fsecret/x", "%2fsecret/x", "pub/../secret//x", "pub%2F..%2Fsecret%2Fx",
    ".%2Fsecret/x", "pub/..%252Fsecret/x", "pub/%u002e%u002e/secret/x", "secret./x", "secret%20/x", "secret;/x",
    "secret%3B/x", "%C5%BFecret/x", "s%65cret/x/", "pub/%2e%2e%2f%2e%2e%2fstatic/secret/x", "pub/%252e%252e%252fsecret/x",
]
#: Whole request targets that play with the prefix before the app (root_path, a Mount) or the
#: request-target form itself.
TARGET_TRICKS = [
    "/api/../api/static/secret/x", "/api//static/secret/x", "/api/./static/secret/x", "/%61pi/static/pub/../secret/x",
    "/api%2Fstatic/pub/../secret/x", "/apistatic/pub/../secret/x", "/api/static/pub/..%2f..%2f..%2fapi/static/secret/x",
    "/../static/secret/x", "/static/pub/../../api/static/secret/x", "//static/secret/x", "/./static/secret/x",
    "/api/static/pub/%2e%2e/secret/x", "/static/pub/%2e%2e/secret/x",
]


def tree(root: Path) -> Path:
    (root / "pub").mkdir()
    (root / "secret").mkdir()
    (root / "pub" / "x").write_bytes(PUBLIC)
    (root / "secret" / "x").write_bytes(SECRET)
    (root / "report").write_bytes(SECRET)
    return root


def protected(directory: Path, verifier: Verifier, policy: PathPolicy) -> WPTMiddleware:
    app = FastAPI()
    admin = APIRouter(prefix="/admin")

    @admin.get("")
    async def index() -> dict[str, str]:
        return {"admin": "index"}

    @admin.get("/users")
    async def users() -> dict[str, str]:
        return {"admin": "users"}

    app.include_router(admin)
    app.mount("/static", StaticFiles(directory=directory))
    app.mount("/files", StaticFiles(directory=directory))
    ops = ["wimse://example.com/ops/*"]
    return WPTMiddleware(
        app,
        verifier,
        exclude=["/static/pub/*"],
        routes=[RouteRule("/files/secret/*", allow=ops), RouteRule("/admin/*", allow=ops), RouteRule("/files/report", allow=ops)],
        path_policy=policy,
    )


@contextlib.contextmanager
def serve_hypercorn(app: Any, port: int, root_path: str) -> Iterator[None]:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.root_path = root_path
    config.accesslog = None
    state: dict[str, Any] = {}

    async def main() -> None:
        state["stop"], state["loop"] = asyncio.Event(), asyncio.get_running_loop()
        await hypercorn_serve(app, config, shutdown_trigger=state["stop"].wait)  # type: ignore[arg-type]

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            break
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("hypercorn did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(timeout=10)


class Deployment:
    """One server shape: how the client addresses the app and what ``aud`` the app expects."""

    def __init__(self, shape: str, policy: PathPolicy, directory: Path) -> None:
        self.shape = shape
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.issuer = DevIssuer("example.com")
        verifier = Verifier({"example.com": self.issuer.jwks}, [self.origin])
        self.app: Any = protected(directory, verifier, policy)
        # client_prefix: what the client puts before the app's own paths; aud_prefix: what the
        # target URI holds before them (root_path, re-added by the proxy the client talks to).
        self.client_prefix, self.aud_prefix, self.root_path = "", "", ""
        if shape == "uvicorn-root_path":
            self.aud_prefix = self.root_path = "/api"
        elif shape == "mount":
            self.client_prefix = self.aud_prefix = "/api"
            self.app = Starlette(routes=[Mount("/api", app=self.app)])
        elif shape == "hypercorn-root_path":
            # hypercorn keeps root_path out of path; Starlette's mounts then route only requests
            # whose path repeats it (a proxy that forwards the prefix).
            self.client_prefix = self.aud_prefix = self.root_path = "/api"
        self.keys = {who: SigningKey.generate("Ed25519") for who in (OPS, OTHER)}
        self.wits = {who: self.issuer.issue_wit(who, key) for who, key in self.keys.items()}

    @contextlib.contextmanager
    def running(self) -> Iterator[Deployment]:
        if self.shape.startswith("hypercorn"):
            with serve_hypercorn(self.app, self.port, self.root_path):
                yield self
        else:
            with serve(self.app, port=self.port, root_path=self.root_path):
                yield self

    def get(
        self, path: str, who: str | None = None, aud_path: str | None = None, raw_target: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        """GET ``path`` (the app's own path, spelled as given; the whole request target if
        ``raw_target``) on a raw socket."""
        target = path if raw_target else self.client_prefix + path
        headers = {"Host": f"127.0.0.1:{self.port}", "Connection": "close"}
        if who is not None:
            aud = self.origin + self.aud_prefix + (aud_path or path).partition("?")[0].partition("#")[0]
            headers["Workload-Identity-Token"] = self.wits[who]
            headers["Workload-Proof-Token"] = mint_wpt(self.keys[who], self.wits[who], aud)
        request = f"GET {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(request.encode("latin-1"))
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in fields.items()}, body


def code(status: int, headers: dict[str, str], body: bytes) -> str:
    if headers.get("content-type") == "application/problem+json":
        return str(json.loads(body)["code"])
    return f"{status} {'secret' if SECRET in body else 'public' if PUBLIC in body else 'other'}"


SHAPES = ["uvicorn", "uvicorn-root_path", "mount", "hypercorn", "hypercorn-root_path"]


@pytest.fixture(scope="module", params=[(s, p) for s in SHAPES for p in ("strict", "normalize")], ids=lambda p: "-".join(p))
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    shape, policy = request.param
    directory = tree(tmp_path_factory.mktemp("static"))
    with Deployment(shape, NORMALIZE if policy == "normalize" else PathPolicy(), directory).running() as running:
        yield running


def test_the_controls_prove_the_set_up(deployment: Deployment) -> None:
    # Without these the corpus below could pass against a server that serves nothing.
    assert code(*deployment.get("/static/pub/x")) == "200 public"
    assert code(*deployment.get("/static/secret/x")) == "wit-missing"
    assert code(*deployment.get("/files/secret/x", OPS)) == "200 secret"
    assert code(*deployment.get("/files/secret/x", OTHER)) == "workload-forbidden"
    assert code(*deployment.get("/files/pub/x", OTHER)) == "200 public"
    assert code(*deployment.get("/files/report", OPS)) == "200 secret"
    # StaticFiles serves "report/" as "report": an exact rule holds for both spellings.
    assert code(*deployment.get("/files/report/", OPS)) == "200 secret"
    assert code(*deployment.get("/files/report", OTHER)) == "workload-forbidden"
    assert code(*deployment.get("/files/report/", OTHER)) == "workload-forbidden"
    for path in ["/admin", "/admin/users"]:  # issue 13 defect 2: the router's index route too
        assert code(*deployment.get(path, OTHER)) == "workload-forbidden", path
        assert deployment.get(path, OPS)[0] == 200, path


def test_no_spelling_opens_the_secret_through_the_exclusion(deployment: Deployment) -> None:
    outcomes = {s: code(*deployment.get("/static/" + s)) for s in ESCAPES}
    leaked = {s: c for s, c in outcomes.items() if "secret" in c}
    assert not leaked
    # Refused as ambiguous, judged as the protected file it names, or refused by the server itself.
    allowed = {"path-ambiguous", "wit-missing", "400 other", "404 other"}
    assert {s: c for s, c in outcomes.items() if c not in allowed} == {}
    if deployment_policy(deployment) == "strict":  # and by default, every escape is refused as such
        assert {s: c for s, c in outcomes.items() if s.startswith("pub") and c != "path-ambiguous"} == {}


def test_no_prefix_trick_opens_the_secret(deployment: Deployment) -> None:
    origin = deployment.origin
    targets = TARGET_TRICKS + [origin + "/static/pub/../secret/x", origin + "/api/static/pub/../secret/x",
                               origin + "/static/secret/x", origin + "/api/static/secret/x"]  # absolute form
    outcomes = {t: code(*deployment.get(t, raw_target=True)) for t in targets}
    assert {t: c for t, c in outcomes.items() if "secret" in c} == {}
    allowed = {"path-ambiguous", "wit-missing", "400 other", "404 other"}
    assert {t: c for t, c in outcomes.items() if c not in allowed} == {}


def test_no_spelling_escapes_the_allow_list(deployment: Deployment) -> None:
    outcomes: dict[str, str] = {}
    for spelling in ESCAPES:
        path = "/files/" + spelling
        # The outsider signs aud for its own spelling, then for the file it is after.
        outcomes[spelling] = code(*deployment.get(path, OTHER))
        outcomes[spelling + " (aud normalised)"] = code(*deployment.get(path, OTHER, aud_path="/files/secret/x"))
    assert {s: c for s, c in outcomes.items() if "secret" in c} == {}
    allowed = {"path-ambiguous", "workload-forbidden", "wpt-audience", "400 other", "404 other"}
    assert {s: c for s, c in outcomes.items() if c not in allowed} == {}


def test_the_issue_reproductions(deployment: Deployment) -> None:
    strict = deployment_policy(deployment) == "strict"
    for spelling in ["/static/pub/../secret/x", "/static/pub/%2e%2e/secret/x", "/static/pub/..%2fsecret/x",
                     "/static/pub/%2E%2E/secret/x", "/static/pub/..%2Fsecret/x"]:
        assert code(*deployment.get(spelling)) == ("path-ambiguous" if strict else "wit-missing"), spelling
    for spelling in ["/files//secret/x", "/files/./secret/x", "/files/%2Fsecret/x", "/files/pub/../secret/x"]:
        if strict:
            assert code(*deployment.get(spelling, OTHER)) == "path-ambiguous", spelling
        else:
            assert code(*deployment.get(spelling, OTHER, aud_path="/files/secret/x")) == "workload-forbidden"
            assert code(*deployment.get(spelling, OPS, aud_path="/files/secret/x")) == "200 secret"


def deployment_policy(deployment: Deployment) -> str:
    middleware = deployment.app
    while not isinstance(middleware, WPTMiddleware):
        middleware = middleware.routes[0].app  # the Mount shape
    return "strict" if middleware._paths.strict else "normalize"
