"""The ASGI middleware under a real uvicorn server, called by a real httpx client."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets.sync.client
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus

from wimse_wpt import DevIssuer, SigningKey, StaticKeys, TrustAnchors, Verifier, WPTAuth, mint_wpt
from wimse_wpt.fastapi import Workload, install, problem_handler, require_workload, workload_of
from wimse_wpt.middleware import RouteRule, WPTMiddleware, verified_workload
from wimse_wpt.problems import VerificationError

from .servers import free_port, serve

IDENTIFIER = "wimse://example.com/billing/api"
LIFESPAN = {"started": False}


async def who(request: Request) -> JSONResponse:
    workload = request.state.workload
    return JSONResponse({"workload": workload.identifier, "headers": sorted(request.headers.keys())})


@requires("workload")
async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.user.display_name, "scopes": request.auth.scopes})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "authenticated": request.user.is_authenticated})


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    workload = verified_workload(websocket.scope)
    await websocket.send_json({"workload": workload.identifier if workload else None})
    await websocket.close()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    LIFESPAN["started"] = True
    yield


class Service:
    def __init__(self, profile: str = "wpt-01", **options: Any) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.issuer = DevIssuer("example.com")
        self.key = SigningKey.generate("ES256")
        self.wit = self.issuer.issue_wit(IDENTIFIER, self.key)
        self.profile = profile
        self.verifier = Verifier({"example.com": self.issuer.jwks}, [self.origin], profile=profile)  # type: ignore[arg-type]
        app = Starlette(
            routes=[
                StarletteRoute("/path", who, methods=["GET", "POST"]),
                StarletteRoute("/admin", who, methods=["POST"]),
                StarletteRoute("/aliased", who, methods=["POST"]),
                StarletteRoute("/whoami", whoami),
                StarletteRoute("/healthz", health),
                StarletteRoute("/public/info", health),
                WebSocketRoute("/ws", ws),
            ],
            lifespan=lifespan,
        )
        self.app = WPTMiddleware(app, self.verifier, **options)

    def auth(self, identifier: str = IDENTIFIER, **options: Any) -> WPTAuth:
        key = SigningKey.generate("Ed25519")
        wit = self.issuer.issue_wit(identifier, key)
        return WPTAuth(key, wit, profile=self.profile, **options)  # type: ignore[arg-type]

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.origin, auth=self.auth(**options) if options.pop("signed", True) else None)


@contextlib.contextmanager
def running(profile: str = "wpt-01", **options: Any) -> Iterator[Service]:
    service = Service(profile, **options)
    with serve(service.app, port=service.port):
        yield service


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with running(
        exclude=["/healthz", "/public/*"],
        routes=[
            RouteRule("/admin", allow=["wimse://example.com/ops/*"]),
            RouteRule("/aliased", audiences=["https://api.example.com/aliased"]),
        ],
    ) as service:
        yield service


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "code"}
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] == f"urn:wimse-wpt:problem:{code}"
    return body


def test_signed_call_accepted(service: Service) -> None:
    with service.client() as client:
        response = client.post("/path", json={"do stuff": "please"})
    assert response.status_code == 200
    assert response.json()["workload"] == IDENTIFIER


async def test_async_client_uses_the_same_auth(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.origin, auth=service.auth()) as client:
        responses = [await client.get("/path") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]


def test_query_string_is_not_part_of_the_audience(service: Service) -> None:
    with service.client() as client:
        assert client.get("/path?a=1&b=%2F").status_code == 200


async def test_middleware_ignores_a_query_left_in_raw_path(service: Service) -> None:
    # Some servers leave the query in raw_path; the target URI must not include it.
    sent: list[dict[str, Any]] = []
    request = httpx.Request("GET", service.origin + "/path")
    service.auth().auth_flow(request).send(None)
    headers = [(k.lower(), v) for k, v in request.headers.raw]
    scope = {"type": "http", "method": "GET", "path": "/path", "raw_path": b"/path?x=1", "root_path": "",
             "query_string": b"x=1", "headers": headers, "scheme": "http", "server": ("127.0.0.1", service.port)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await service.app(scope, receive, send)
    assert sent[0]["status"] == 200


def test_unsigned_call_gets_a_problem(service: Service) -> None:
    with httpx.Client(base_url=service.origin) as client:
        body = assert_problem(client.post("/path"), 400, "wit-missing")
    assert "www-authenticate" not in body


def test_every_rejection_class_is_a_problem(service: Service) -> None:
    key, wit = service.key, service.wit
    target = service.origin + "/path"
    with httpx.Client(base_url=service.origin) as client:
        headers = {"Workload-Identity-Token": wit, "Workload-Proof-Token": mint_wpt(key, wit, target)}
        assert client.post("/path", headers=headers).status_code == 200
        assert_problem(client.post("/path", headers=headers), 400, "wpt-replayed")
        wrong_aud = {**headers, "Workload-Proof-Token": mint_wpt(key, wit, "https://elsewhere.example/path")}
        assert_problem(client.post("/path", headers=wrong_aud), 400, "wpt-audience")
        other = SigningKey.generate("ES256")
        forged = {**headers, "Workload-Proof-Token": mint_wpt(other, wit, target)}
        assert_problem(client.post("/path", headers=forged), 400, "wpt-signature")
        expired_wit = service.issuer.issue_wit(IDENTIFIER, key, lifetime=-10)
        old_wpt = mint_wpt(key, expired_wit, target, allow_expired_wit=True)
        old = {"Workload-Identity-Token": expired_wit, "Workload-Proof-Token": old_wpt}
        assert_problem(client.post("/path", headers=old), 400, "wit-expired")
        untrusted = DevIssuer("other.example").issue_wit("wimse://other.example/x", key)
        foreign = {"Workload-Identity-Token": untrusted, "Workload-Proof-Token": mint_wpt(key, untrusted, target)}
        assert_problem(client.post("/path", headers=foreign), 400, "wit-trust-domain")


def test_wpt_02_answers_401_with_www_authenticate() -> None:
    with running("wpt-02") as service:
        with service.client() as client:
            ok = client.post("/path")
            assert ok.status_code == 200
            assert "authorization" not in ok.json()["headers"]  # the WPT is stripped
        with httpx.Client(base_url=service.origin) as client:
            response = client.post("/path")
    assert_problem(response, 401, "wit-missing")
    assert response.headers["www-authenticate"] == "WPT"


def test_credentials_are_stripped_before_the_app(service: Service) -> None:
    with service.client() as client:
        seen = client.get("/path", headers={"Authorization": "Bearer at", "X-Other": "1"}).json()["headers"]
    assert "workload-identity-token" not in seen and "workload-proof-token" not in seen
    assert "authorization" in seen and "x-other" in seen  # the bearer token, bound by ath, stays


def test_stripping_can_be_turned_off() -> None:
    with running(strip_credentials=False) as service, service.client() as client:
        seen = client.get("/path").json()["headers"]
    assert "workload-identity-token" in seen and "workload-proof-token" in seen


def test_starlette_requires_sees_the_workload(service: Service) -> None:
    with service.client() as client:
        body = client.get("/whoami").json()
    assert body == {"user": IDENTIFIER, "scopes": ["authenticated", "workload"]}


def test_excluded_paths_are_open_and_unauthenticated(service: Service) -> None:
    with httpx.Client(base_url=service.origin) as client:
        assert client.get("/healthz").json() == {"ok": True, "authenticated": False}
        assert client.get("/public/info").status_code == 200
        assert_problem(client.get("/path"), 400, "wit-missing")


def test_route_allow_list_gives_403(service: Service) -> None:
    with service.client() as client:
        assert_problem(client.post("/admin"), 403, "workload-forbidden")
    with service.client(identifier="wimse://example.com/ops/deployer") as client:
        assert client.post("/admin").json()["workload"] == "wimse://example.com/ops/deployer"


def test_route_audience_alias(service: Service) -> None:
    with httpx.Client(base_url=service.origin) as client:
        proof = mint_wpt(service.key, service.wit, "https://api.example.com/aliased")
        headers = {"Workload-Identity-Token": service.wit, "Workload-Proof-Token": proof}
        assert client.post("/aliased", headers=headers).status_code == 200
        proof = mint_wpt(service.key, service.wit, "https://api.example.com/aliased")
        assert_problem(client.post("/path", headers={**headers, "Workload-Proof-Token": proof}), 400, "wpt-audience")


def test_auth_rereads_a_rotating_wit_on_every_request(service: Service) -> None:
    key = SigningKey.generate("ES256")
    wits = iter([service.issuer.issue_wit(IDENTIFIER, key), service.issuer.issue_wit("wimse://example.com/rotated", key)])
    with httpx.Client(base_url=service.origin, auth=WPTAuth(key, lambda: next(wits))) as client:
        first, second = client.get("/path").json(), client.get("/path").json()
    assert (first["workload"], second["workload"]) == (IDENTIFIER, "wimse://example.com/rotated")


def test_bearer_and_txn_token_are_bound_by_the_client(service: Service) -> None:
    with service.client() as client:
        response = client.get("/path", headers={"Authorization": "Bearer at-1", "Txn-Token": "txn.token.value"})
    assert response.status_code == 200


def test_websocket_accepted_with_proof_and_refused_without(service: Service) -> None:
    url = f"ws://127.0.0.1:{service.port}/ws"
    proof = mint_wpt(service.key, service.wit, url)
    headers = {"Workload-Identity-Token": service.wit, "Workload-Proof-Token": proof}
    with websockets.sync.client.connect(url, additional_headers=headers) as connection:
        assert json.loads(connection.recv()) == {"workload": IDENTIFIER}
    with pytest.raises(InvalidStatus) as refused:
        websockets.sync.client.connect(url, additional_headers={"Workload-Identity-Token": service.wit}).close()
    assert refused.value.response.status_code == 400
    assert json.loads(refused.value.response.body)["code"] == "wpt-missing"


def test_lifespan_passes_through(service: Service) -> None:
    assert LIFESPAN["started"]


def test_one_log_line_per_rejection_without_tokens(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wimse_wpt")
    proof = mint_wpt(service.key, service.wit, "https://elsewhere.example/x")
    with httpx.Client(base_url=service.origin) as client:
        client.post("/path", headers={"Workload-Identity-Token": service.wit, "Workload-Proof-Token": proof})
    lines = [r.getMessage() for r in caplog.records if r.name == "wimse_wpt"]
    assert len(lines) == 1
    assert "code=wpt-audience" in lines[0] and f"workload={IDENTIFIER}" in lines[0]
    # What to fix, for the operator: the audience expected here and the one the proof named.
    assert f"expected_aud='{service.origin}/path'" in lines[0]
    assert "received_aud='https://elsewhere.example/x'" in lines[0]
    assert service.wit not in lines[0] and proof not in lines[0]
    for part in service.wit.split(".") + proof.split("."):
        assert part not in caplog.text


@pytest.mark.parametrize(
    "headers",
    [
        [("workload-identity-token", b"\xff\xfegarbage"), ("workload-proof-token", b"\xc3\xa9")],
        [("workload-identity-token", b"a" * 12000)],  # over our cap, under the server's
        [("workload-identity-token", b""), ("workload-proof-token", b"")],
        [("workload-identity-token", b"e30.e30.e30"), ("workload-proof-token", b"e30.e30.e30")],
        [("workload-identity-token", b"...."), ("authorization", b"WPT")],
        [("authorization", b"\x80\x81 \xff"), ("txn-token", b",,,")],
    ],
)
def test_no_header_value_causes_a_500(service: Service, headers: list[tuple[str, bytes]]) -> None:
    with httpx.Client(base_url=service.origin) as client:
        response = client.post("/path", headers=headers)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    for _, value in headers:
        if len(value) > 8:
            assert value.decode("latin-1") not in response.text


# --- one render path for every refusal (issue 13 defect 8) -----------------------------------


def fastapi_service(profile: str, installed: bool = True) -> tuple[Any, Verifier, DevIssuer]:
    issuer = DevIssuer("example.com")
    port = free_port()
    verifier = Verifier({"example.com": issuer.jwks}, [f"http://127.0.0.1:{port}"], profile=profile)  # type: ignore[arg-type]
    app = FastAPI()

    @app.get("/open")  # excluded from the middleware, yet asks for a workload
    async def open_route(workload: Workload) -> dict[str, str]:
        return {"workload": workload.identifier}

    @app.get("/open-direct")  # the same, read with workload_of() instead of the dependency
    async def open_direct(request: Request) -> dict[str, str]:
        return {"workload": workload_of(request).identifier}

    @app.get("/ops", dependencies=[Depends(require_workload("wimse://example.com/ops/*"))])
    async def ops() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/ruled")  # the middleware's own allow-list, for comparison
    async def ruled() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/protected")
    async def protected_route() -> dict[str, bool]:
        return {"ok": True}

    if installed:
        install(app, verifier, exclude=["/open", "/open-direct"], routes=[RouteRule("/ruled", allow=["wimse://example.com/ops/*"])])
    app.state.port = port
    return app, verifier, issuer


def rendered(response: httpx.Response) -> tuple[int, dict[str, str | None], dict[str, Any]]:
    names = ["content-type", "cache-control", "www-authenticate"]
    body = response.json()
    body.pop("detail")  # a fixed sentence per refusal site; everything else must be equal
    return response.status_code, {n: response.headers.get(n) for n in names}, body


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
def test_fastapi_dependencies_refuse_exactly_as_the_middleware(profile: str) -> None:
    app, verifier, issuer = fastapi_service(profile)
    key = SigningKey.generate("Ed25519")
    outsider = WPTAuth(key, issuer.issue_wit("wimse://example.com/billing/api", key), profile=profile)  # type: ignore[arg-type]
    with serve(app, port=app.state.port) as origin, httpx.Client(base_url=origin) as client:
        by_middleware = client.get("/protected")
        by_dependency = client.get("/open")
        by_workload_of = client.get("/open-direct")
        forbidden_by_middleware = client.get("/ruled", auth=outsider)
        forbidden_by_dependency = client.get("/ops", auth=outsider)
    expected_status = 401 if profile == "wpt-02" else 400
    assert rendered(by_dependency) == rendered(by_middleware)
    # workload_of() refuses byte for byte as the dependency does.
    assert rendered(by_workload_of) == rendered(by_dependency)
    assert by_workload_of.content == by_dependency.content
    assert by_dependency.status_code == expected_status
    assert by_dependency.json()["code"] == "wit-missing"
    assert by_dependency.headers.get("www-authenticate") == ("WPT" if profile == "wpt-02" else None)
    assert by_dependency.headers["cache-control"] == "no-store"
    assert by_dependency.headers["content-type"] == "application/problem+json"
    # Same problem, same sentence: the bytes are the same.
    assert forbidden_by_dependency.status_code == forbidden_by_middleware.status_code == 403
    assert forbidden_by_dependency.content == forbidden_by_middleware.content
    assert rendered(forbidden_by_dependency) == rendered(forbidden_by_middleware)


def test_a_dependency_without_the_middleware_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    app, _, _ = fastapi_service("wpt-02", installed=False)
    app.add_exception_handler(VerificationError, problem_handler)
    caplog.set_level(logging.INFO, logger="wimse_wpt")
    with serve(app, port=app.state.port) as origin:
        response = httpx.get(origin + "/open")
        direct = httpx.get(origin + "/open-direct")
    assert_problem(response, 500, "internal-error")
    assert_problem(direct, 500, "internal-error")
    lines = [r for r in caplog.records if r.name == "wimse_wpt" and r.levelno >= logging.ERROR]
    assert len(lines) == 2 and all("without WPTMiddleware" in line.getMessage() for line in lines)


# --- unexpected exceptions never reach the server (issue 13 defect 9) ------------------------


class BrokenVerifier(Verifier):
    """A verifier whose every call fails in a way nothing anticipated, quoting what it got."""

    async def verify(self, headers: Any, **options: Any) -> Any:  # type: ignore[override]
        fields = dict(headers)
        try:
            raise KeyError(fields.get(b"workload-identity-token"))
        except KeyError as cause:
            raise RuntimeError(f"broken while reading {fields.get(b'workload-proof-token')!r}") from cause


def test_an_unexpected_exception_is_an_internal_error_problem(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    issuer = DevIssuer("example.com")
    key = SigningKey.generate("ES256")
    wit = issuer.issue_wit(IDENTIFIER, key)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    verifier = BrokenVerifier({"example.com": issuer.jwks}, [origin], profile="wpt-02")
    app = WPTMiddleware(Starlette(routes=[StarletteRoute("/path", who), WebSocketRoute("/ws", ws)]), verifier)
    proof = mint_wpt(key, wit, origin + "/path")
    with serve(app, port=port):
        response = httpx.get(origin + "/path", headers={"Workload-Identity-Token": wit, "Authorization": f"WPT {proof}"})
        with pytest.raises(InvalidStatus) as refused:
            websockets.sync.client.connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"Workload-Identity-Token": wit})
    body = assert_problem(response, 500, "internal-error")
    assert body["detail"] == "The request could not be verified."
    assert "www-authenticate" not in response.headers
    assert refused.value.response.status_code == 500
    records = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "wimse_wpt"]
    assert [r.levelname for r in records] == ["ERROR", "ERROR"]  # one line per request (HTTP, WebSocket)
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]  # not the server's
    message = records[0].getMessage()
    assert "builtins.RuntimeError" in message and "builtins.KeyError" in message and "in verify" in message
    assert records[0].exc_info is None  # the traceback is in the line, without exception messages
    for part in wit.split(".") + proof.split("."):
        assert part not in caplog.text and part not in response.text


def test_an_ambiguous_websocket_path_is_refused_before_the_handshake(service: Service) -> None:
    url = f"ws://127.0.0.1:{service.port}/public/%2e%2e/ws"  # "/public/*" is excluded; "/ws" is not
    with pytest.raises(InvalidStatus) as refused:
        websockets.sync.client.connect(url).close()
    assert refused.value.response.status_code == 400
    assert json.loads(refused.value.response.body)["code"] == "path-ambiguous"


class GenerationFails:
    """A custom key source (the KeySource protocol) with a bug: asking its generation raises."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self._keys = StaticKeys(jwks)
        self.broken = False

    @property
    def generation(self) -> int:
        if self.broken:
            raise ZeroDivisionError("a bug in user code")
        return 1

    async def keys(self) -> Any:
        return await self._keys.keys()

    async def refresh(self) -> Any:
        return await self._keys.refresh()


def test_a_broken_key_source_is_an_internal_error_not_a_server_crash(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    issuer = DevIssuer("example.com")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    source = GenerationFails(issuer.jwks)
    verifier = Verifier(TrustAnchors({"example.com": source}), [origin])
    source.broken = True
    app = WPTMiddleware(Starlette(routes=[StarletteRoute("/path", who)]), verifier)
    key = SigningKey.generate("ES256")
    with serve(app, port=port), httpx.Client(base_url=origin, auth=WPTAuth(key, issuer.issue_wit(IDENTIFIER, key))) as client:
        response = client.get("/path")
    assert_problem(response, 500, "internal-error")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "wimse_wpt"]
    assert len(errors) == 1
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]  # not the server's
    assert "builtins.ZeroDivisionError" in errors[0].getMessage() and "a bug in user code" not in caplog.text


def fastapi_app(profile: str = "wpt-01", **fastapi_options: Any) -> tuple[FastAPI, str, int]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    issuer = DevIssuer("example.com")
    app = FastAPI(**fastapi_options)

    @app.post("/orders")
    async def orders(workload: Workload) -> dict[str, str]:
        return {"workload": workload.identifier}

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    install(app, Verifier({"example.com": issuer.jwks}, [origin], profile=profile), exclude=["/healthz"])  # type: ignore[arg-type]
    return app, origin, port


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
def test_fastapi_docs_stay_open_and_openapi_lists_the_problem_responses(profile: str) -> None:
    app, origin, port = fastapi_app(profile)
    with serve(app, port=port):
        schema_response = httpx.get(origin + "/openapi.json")
        docs = httpx.get(origin + "/docs")
        redoc = httpx.get(origin + "/redoc")
        redirect = httpx.get(origin + "/docs/oauth2-redirect")
        refused = httpx.post(origin + "/orders")
    assert schema_response.status_code == 200 and docs.status_code == 200 and redoc.status_code == 200
    assert redirect.status_code == 200
    assert refused.status_code == (401 if profile == "wpt-02" else 400)  # the API itself stays protected
    schema = schema_response.json()
    assert schema["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail", "code"]
    responses = schema["paths"]["/orders"]["post"]["responses"]
    expected = {"400", "403", "429", "503"} | ({"401"} if profile == "wpt-02" else set())
    assert expected <= set(responses) and ("401" in responses) == (profile == "wpt-02")
    for status in expected:
        assert responses[status]["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert responses["200"]["description"] == "Successful Response"  # FastAPI's own stay
    assert set(schema["paths"]["/healthz"]["get"]["responses"]) == {"200"}  # excluded: nothing added


def test_fastapi_docs_an_app_disabled_are_not_opened_by_install() -> None:
    app, origin, port = fastapi_app(docs_url=None, redoc_url=None, openapi_url=None)
    with serve(app, port=port):
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            response = httpx.get(origin + path)
            assert response.status_code == 400 and response.json()["code"] == "wit-missing", path


def test_fastapi_custom_docs_urls_are_the_ones_left_open() -> None:
    app, origin, port = fastapi_app(docs_url="/api-docs", openapi_url="/spec.json", redoc_url=None)
    with serve(app, port=port):
        assert httpx.get(origin + "/api-docs").status_code == 200
        assert httpx.get(origin + "/spec.json").status_code == 200
        assert httpx.get(origin + "/docs").json()["code"] == "wit-missing"
        assert httpx.get(origin + "/redoc").json()["code"] == "wit-missing"
