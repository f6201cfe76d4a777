"""Attacks on today's fast paths and caches (review of ad88c4e..): each test is an attempt to get
a request judged differently because a result was remembered or computed a new way. Every
one here failed (the defence held); they stay as regression tests of the property attacked."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import websockets.sync.client
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus

from wimse_wpt import DevIssuer, JWKSFile, SigningKey, TrustAnchors, Verifier, WPTAuth, mint_wpt
from wimse_wpt.fastapi import Workload, install, workload_of
from wimse_wpt.middleware import RouteRule, WPTMiddleware
from wimse_wpt.paths import PathPolicy
from wimse_wpt.problems import Reject, VerificationError
from wimse_wpt.tokens import TokenError, b64url_decode, import_public_key

from .conftest import IDENTIFIER, NOW, ORIGIN, World
from .servers import free_port, serve
from .test_paths import NORMALIZE, OPS, OTHER, PIECES, Recorder

# --- 1. routing decisions remembered per (path, raw_path, root_path) -------------------------


def _middleware(policy: PathPolicy) -> WPTMiddleware:
    world = World()
    return WPTMiddleware(
        Recorder(),
        world.verifier,
        exclude=["/static/pub/*", "/healthz"],
        routes=[
            RouteRule("/static/secret/*", allow=[OPS], mode="enforce"),
            RouteRule("/static/x", allow=[OPS]),
            RouteRule("/report/*", mode="report-only"),
            RouteRule("/opt/*", mode="optional"),
        ],
        path_policy=policy,
    )


def _decision(middleware: WPTMiddleware, scope: dict[str, Any]) -> Any:
    try:
        where, excluded, rule, mode = middleware._route(scope)
    except Reject as reject:
        return ("refused", reject.code)
    return (where, excluded, rule.route, mode)


_ROOTS = ["", "/static", "/api", "/static/pub", "/static/"]
_KNOWN = ["/static/pub/x", "/static/secret/x", "/static/x", "/static/x/", "/static/pub/", "/static", "/pub/x",
          "/secret/x", "/api/static/pub/x", "/static/pub/../secret/x", "/static/pub%2Fx", "/report/a", "/opt/a/"]
_SPELLINGS = st.one_of(
    st.sampled_from(_KNOWN),
    st.tuples(st.sampled_from(["", *_KNOWN]), st.lists(st.sampled_from(PIECES), max_size=4)).map(
        lambda t: t[0] + "".join("/" + p for p in t[1]) if t[1] or t[0] else "/"
    ),
)


@st.composite
def _scopes(draw: Any) -> list[dict[str, Any]]:
    """Scopes for a few spellings, each in several shapes as the servers and routers in front of
    the middleware build them (and as an outer middleware may leave them): root_path in path or
    not, raw_path absent/empty/with a query, path decoded from raw_path or not, HTTP or WebSocket.
    Shapes of one spelling share path or raw_path: what a key that omits a member would confuse."""
    scopes: list[dict[str, Any]] = []
    for raw in draw(st.lists(_SPELLINGS, min_size=1, max_size=3)):
        for _ in range(draw(st.integers(2, 6))):
            root = draw(st.sampled_from(_ROOTS))
            full = root + raw if draw(st.booleans()) else raw
            path = unquote(draw(st.sampled_from([full, raw, full.replace("%2F", "/")])))
            scope: dict[str, Any] = {"type": draw(st.sampled_from(["http", "websocket"])), "path": path, "headers": [],
                                     "query_string": b"", "method": draw(st.sampled_from(["GET", "POST"]))}
            if draw(st.booleans()):
                scope["root_path"] = root
            shape = draw(st.sampled_from(["bytes", "query", "absent", "empty", "none"]))
            if shape == "bytes":
                scope["raw_path"] = full.encode("latin-1")
            elif shape == "query":
                scope["raw_path"] = full.encode("latin-1") + b"?" + draw(st.sampled_from([b"", b"../secret/x", b"a=%2F"]))
            elif shape == "empty":
                scope["raw_path"] = b""
            elif shape == "none":
                scope["raw_path"] = None
            scopes.append(scope)
    return draw(st.permutations(scopes))


@pytest.mark.parametrize("policy", [PathPolicy(), NORMALIZE], ids=["strict", "normalize"])
def test_a_remembered_routing_decision_is_the_one_a_fresh_middleware_makes(policy: PathPolicy) -> None:
    # One middleware sees every scope shape in turn (so each key may be filled by any other
    # shape first); each of its decisions must be the decision of a middleware that remembers
    # nothing. A decision read from a scope member outside the key would show up here.
    warm = _middleware(policy)

    @given(_scopes())
    def check(scopes: list[dict[str, Any]]) -> None:
        for scope in scopes + scopes:  # the second pass is answered from the memo
            assert _decision(warm, dict(scope)) == _decision(_middleware(policy), dict(scope)), scope

    check()


async def test_evicting_the_routing_memo_never_changes_a_decision() -> None:
    # An attacker fills the memo (distinct query strings in raw_path cost nothing) to clear it
    # between a victim's requests: only cost, never another verdict.
    middleware = _middleware(PathPolicy())
    before = [_decision(middleware, _scope(p)) for p in ("/static/pub/x", "/static/secret/x", "/static/pub%2Fx")]
    for i in range(3000):
        _decision(middleware, _scope("/static/pub/x", query=f"q={i}".encode()))
        assert len(middleware._routes) <= 1024
    after = [_decision(middleware, _scope(p)) for p in ("/static/pub/x", "/static/secret/x", "/static/pub%2Fx")]
    assert before == after
    assert [d[1] if d[0] != "refused" else d for d in after] == [True, False, ("refused", "path-ambiguous")]


def _scope(raw: str, query: bytes | None = None) -> dict[str, Any]:
    wire = raw.encode() + (b"?" + query if query is not None else b"")
    return {"type": "http", "path": unquote(raw), "raw_path": wire, "root_path": "", "headers": []}


# ... against real servers: one middleware instance behind two uvicorn servers, one with a
# root_path, so that every key is reached from both conventions and from HTTP and WebSocket.


def _raw_get(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP/1.1 request with ``target`` exactly as written (no client-side normalisation)."""
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _served(body: bytes) -> str:
    try:
        return str(json.loads(body)["code"])
    except ValueError:
        return body.decode()


def test_real_servers_sharing_one_memo_judge_every_spelling_as_itself() -> None:
    issuer = DevIssuer("example.com")
    plain_port, rooted_port = free_port(), free_port()
    origins = [f"http://127.0.0.1:{plain_port}", f"http://127.0.0.1:{rooted_port}"]
    verifier = Verifier({"example.com": issuer.jwks}, origins)

    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("page:" + request.url.path)

    async def socket_app(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("open")
        await websocket.close()

    app = WPTMiddleware(
        Starlette(routes=[WebSocketRoute("/pub/ws", socket_app), WebSocketRoute("/secret/ws", socket_app),
                          Route("/{p:path}", page)]),
        verifier,
        exclude=["/pub/*"],
        routes=[RouteRule("/secret/*", allow=[OPS])],
    )
    attacks = {
        "/pub/x": (200, "page:/pub/x"),
        "/pub/x?/../../secret/x": (200, "page:/pub/x"),  # the query is no part of the path
        "/secret/x": (400, "wit-missing"),
        "/pub/..%2Fsecret/x": (400, "path-ambiguous"),
        "/pub/%2e%2e/secret/x": (400, "path-ambiguous"),
        "/pub/../secret/x": (400, "path-ambiguous"),
        "/pub%2Fx": (400, "path-ambiguous"),
        "/pub/x/..": (400, "path-ambiguous"),
        "/%70ub/x": (200, "page:/pub/x"),  # an escaped unreserved character: the same resource
        "/secret%2Fx": (400, "path-ambiguous"),
        "http://127.0.0.1/pub/../secret/x": (400, "path-ambiguous"),  # absolute form
    }
    with serve(app, port=plain_port), serve(app, port=rooted_port, root_path="/api"):
        for _ in range(2):  # the second round is answered from what the first remembered
            for target, (status, code) in attacks.items():
                for port in (plain_port, rooted_port):
                    got_status, body = _raw_get(port, target)
                    got = _served(body)
                    if port == rooted_port and got.startswith("page:"):
                        assert got == "page:/api" + code[len("page:"):], target
                    else:
                        assert (got_status, got) == (status, code), (port, target)
            for port in (plain_port, rooted_port):
                with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/pub/ws") as connection:
                    assert connection.recv() == "open"
                for target in ("/secret/ws", "/pub/../secret/ws", "/pub/%2e%2e/secret/ws", "/pub%2Fws"):
                    with pytest.raises(InvalidStatus):
                        websockets.sync.client.connect(f"ws://127.0.0.1:{port}{target}").close()
        # A signed caller is judged by the rule of the route, from the memo as well.
        for who, expected in ((OPS, 200), (OTHER, 403)):
            key = SigningKey.generate("Ed25519")
            auth = WPTAuth(key, issuer.issue_wit(who, key))
            with httpx.Client(base_url=origins[0], auth=auth) as client:
                for _ in range(2):
                    assert client.get("/secret/x").status_code == expected
    assert app._routes  # the memo was in use


# --- 2. signatures: libsodium called directly, DER of r || s laid out by hand -------------------

_L25519 = 2**252 + 27742317777372353535851937790883648493
# Encodings of points of small order (libsodium's blocklist, the first two being 0 and 1).
_SMALL_ORDER = [bytes(32), (1).to_bytes(32, "little"),
                bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
                bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
                bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")]


def _ed25519_forgeries(key: SigningKey, message: bytes) -> list[tuple[bytes, bytes]]:
    from joserfc.jws import JWSRegistry

    signature = JWSRegistry.algorithms["Ed25519"].sign(message, key.key)
    r, s = signature[:32], signature[32:]
    s_plus_l = (int.from_bytes(s, "little") + _L25519).to_bytes(32, "little")  # the same scalar, not canonical
    out = [(message, signature), (message, r + s_plus_l), (message + b"x", signature), (message[:-1], signature),
           (message, signature[:63]), (message, signature + b"\x00"), (message, b""), (message, signature * 2),
           (b"", signature), (signature[32:] + message, signature[:32]), (message, bytes(64)),
           (message, r + bytes(32)), (message, bytes(32) + s), (message, signature[32:] + signature[:32])]
    out += [(message, small + s) for small in _SMALL_ORDER]
    out += [(message, signature[:i] + bytes([signature[i] ^ 1]) + signature[i + 1:]) for i in (0, 31, 32, 63)]
    return out


@pytest.mark.parametrize("alg", ["Ed25519", "EdDSA"])
def test_ed25519_verdicts_are_pynacls_public_api_verdicts(alg: str) -> None:
    from wimse_wpt.tokens import ED25519_BACKEND

    if ED25519_BACKEND != "libsodium":  # the run without PyNaCl (.ci/without-pynacl)
        pytest.skip("PyNaCl's libsodium is not loaded here: the cryptography backend verifies Ed25519")
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    key = SigningKey.generate("Ed25519")
    public = import_public_key(key.public_jwk(alg=alg))
    reference = VerifyKey(b64url_decode(key.public_jwk()["x"].encode()))
    for message in (b"", b"a", b"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0", bytes(range(256)) * 40):
        for signed, signature in _ed25519_forgeries(key, message or b"m"):
            try:
                reference.verify(signed, signature)
                expected = len(signature) == 64  # PyNaCl accepts other lengths as a shifted boundary
            except (BadSignatureError, ValueError, TypeError):
                expected = False
            assert public.verify(alg, signed, signature) is expected, (signed[:16], signature.hex())
    # The one valid signature verifies; nothing else does.
    assert sum(public.verify(alg, m, s) for m, s in _ed25519_forgeries(key, b"m")) == 1


_ORDERS = {
    "ES256": (32, 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551, hashes.SHA256()),
    "ES384": (48, int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16),
              hashes.SHA384()),
}


@pytest.mark.parametrize("alg", sorted(_ORDERS))
def test_ecdsa_verdicts_are_cryptographys_over_edge_and_mutated_signatures(alg: str) -> None:
    from joserfc.jws import JWSRegistry

    size, order, hash_alg = _ORDERS[alg]
    key = SigningKey.generate(alg)
    public = import_public_key(key.public_jwk())
    raw: ec.EllipticCurvePublicKey = public.raw
    message = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0"
    signature = JWSRegistry.algorithms[alg].sign(message, key.key)
    r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")

    def rs(a: int, b: int) -> bytes | None:
        if a >= 256**size or b >= 256**size:
            return None
        return a.to_bytes(size, "big") + b.to_bytes(size, "big")

    candidates = [rs(r, s), rs(r, order - s), rs(r + order, s), rs(r, s + order), rs(0, s), rs(r, 0), rs(0, 0),
                  rs(order, s), rs(r, order), rs(s, r), rs(r, 1), rs(1, s), rs(order - 1, order - 1),
                  rs(r >> 8, s), rs(r, s >> 8), signature[:-1], signature + b"\x00", b"\x00" + signature[:-1],
                  signature[1:] + b"\x00", b"", bytes(2 * size), b"\xff" * (2 * size)]
    accepted = 0
    for candidate in [c for c in candidates if c is not None]:
        if len(candidate) != 2 * size:
            expected = False
        else:
            try:
                der = encode_dss_signature(int.from_bytes(candidate[:size], "big"), int.from_bytes(candidate[size:], "big"))
                raw.verify(der, message, ec.ECDSA(hash_alg))
                expected = True
            except InvalidSignature:
                expected = False
        got = public.verify(alg, message, candidate)
        assert got is expected, candidate.hex()
        accepted += got
    assert accepted == 2  # the signature and its high-S twin, as cryptography itself accepts


# --- 3. WIT path: keys remembered by (trust domain, kid, alg), workloads remembered by sub ------


async def test_a_remembered_anchor_key_serves_only_its_own_trust_domain() -> None:
    # Two trust domains whose issuers both name their key "k1": once a's key is remembered for
    # ("a.example", "k1", "ES256"), a WIT for b signed with a's key must still be refused.
    a, b = DevIssuer("a.example", kid="k1"), DevIssuer("b.example", kid="k1")
    verifier = Verifier({"a.example": a.jwks, "b.example": b.jwks}, [ORIGIN], clock=lambda: NOW)
    key = SigningKey.generate("ES256")
    forged = a.issue_wit("wimse://b.example/w", key, now=NOW)  # b's subject, a's key and kid
    for _ in range(2):
        for who, issuer in (("wimse://a.example/w", a), ("wimse://b.example/w", b)):
            wit = issuer.issue_wit(who, key, now=NOW)
            await verifier.verify(_headers(key, wit), path="/path")
        with pytest.raises(VerificationError) as refused:
            await verifier.verify(_headers(key, forged), path="/path")
        assert refused.value.problem.code == "wit-signature"


async def test_a_key_file_rotated_on_disk_is_never_remembered_past_its_rotation(tmp_path: Path) -> None:
    # Only a domain whose one source is StaticKeys has its keys remembered: a JWKS file (one
    # source too) that replaces a revoked key under the same kid must refuse the revoked key.
    old, new = DevIssuer("example.com", kid="k1"), DevIssuer("example.com", kid="k1")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(old.jwks))
    source = JWKSFile(path, check_interval=0)
    verifier = Verifier(TrustAnchors({"example.com": source}), [ORIGIN], clock=lambda: NOW)
    key = SigningKey.generate("ES256")
    for lifetime in (3600, 3601):  # two WITs: the second is not answered from the WIT cache
        await verifier.verify(_headers(key, old.issue_wit(IDENTIFIER, key, now=NOW, lifetime=lifetime)), path="/path")
    path.write_text(json.dumps(new.jwks) + " ")  # another size: the stat check sees the change
    for lifetime in (3602, 3603):
        with pytest.raises(VerificationError) as refused:
            await verifier.verify(_headers(key, old.issue_wit(IDENTIFIER, key, now=NOW, lifetime=lifetime)), path="/path")
        assert refused.value.problem.code == "wit-signature"
    await verifier.verify(_headers(key, new.issue_wit(IDENTIFIER, key, now=NOW)), path="/path")


async def test_a_remembered_workload_lends_nothing_to_another_token_with_its_sub() -> None:
    # The sub of a verified WIT is remembered (its parse and replay prefix). Tokens carrying that
    # sub but not the issuer's signature, or another domain's, gain nothing from it, and a
    # replay by that workload is still a replay.
    world = World()
    stranger = DevIssuer("example.com", kid=world.issuer.kid)  # the same kid, another key
    await world.verify()
    validator = world.verifier._wits
    assert IDENTIFIER in validator._workloads
    forged = stranger.issue_wit(IDENTIFIER, world.key, now=NOW)
    for _ in range(2):
        problem = await world.reject(world.headers(wit=forged, wpt=world.wpt(wit=forged)))
        assert problem.code == "wit-signature"
    wpt = world.wpt()
    await world.verify(world.headers(wpt=wpt))
    assert (await world.reject(world.headers(wpt=wpt))).code == "wpt-replayed"
    # Another WIT (new key, new exp) for the same sub reuses the prefix: its jti space is the same.
    key2 = SigningKey.generate("ES256")
    wit2 = world.issuer.issue_wit(IDENTIFIER, key2, now=NOW, lifetime=1800)
    same_jti = mint_wpt(key2, wit2, ORIGIN + "/path", now=NOW, jti=json.loads(b64url_decode(wpt.split(".")[1].encode()))["jti"],
                        allow_insecure=True)
    assert (await world.reject(world.headers(wpt=same_jti, wit=wit2))).code == "wpt-replayed"


def _headers(key: SigningKey, wit: str, path: str = "/path") -> list[tuple[bytes, bytes]]:
    wpt = mint_wpt(key, wit, ORIGIN + path, now=NOW)
    return [(b"workload-identity-token", wit.encode()), (b"workload-proof-token", wpt.encode())]


# --- 4. the compact split with maxsplit, the header verdict read directly ----------------------


async def test_a_cached_token_with_a_fourth_part_is_refused_not_served_from_any_cache(world: World) -> None:
    await world.verify()  # the WIT, its header verdict and its workload are all remembered now
    wpt = world.wpt()
    for suffix in (".", ".e30", "..", ".e30.e30", "." * 3000):
        problem = await world.reject(world.headers(wit=world.wit + suffix, wpt=wpt))
        assert problem.code in ("wit-malformed", "wit-too-large"), (suffix[:5], problem.code)
        problem = await world.reject(world.headers(wpt=wpt + suffix))
        assert problem.code in ("wpt-malformed", "wpt-too-large"), (suffix[:5], problem.code)
    header, payload, signature = world.wit.split(".")
    for parts in ((header, "", signature), (header, payload, ""), ("", payload, signature)):
        assert (await world.reject(world.headers(wit=".".join(parts), wpt=wpt))).code == "wit-malformed"
    await world.verify(world.headers(wpt=wpt))  # the real pair still passes (not recorded above)


def test_json_values_at_the_skipped_count_bound_decode_or_refuse_cleanly() -> None:
    # Values no longer than MAX_JSON_DEPTH skip the bracket count: they cannot nest deeper than
    # half of it. Just under and just over the length bound, the verdict is the plain one.
    from wimse_wpt.tokens import MAX_JSON_DEPTH, decode_json_object

    for depth in range(MAX_JSON_DEPTH // 2 - 6, MAX_JSON_DEPTH // 2 + 2):
        value = b'{"k":' + b"[" * depth + b"]" * depth + b"}"
        nested = decode_json_object(value)["k"]
        for _ in range(depth - 1):
            nested = nested[0]
        assert nested == [], (depth, len(value))
    for depth in (MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 5000):
        with pytest.raises(TokenError):
            decode_json_object(b'{"k":' + b"[" * depth + b"]" * depth + b"}")
    with pytest.raises(TokenError):  # short and unbalanced: refused as JSON, not by a count
        decode_json_object(b'{"k":' + b"[" * 100 + b"}")


# --- 5. workload_of() in the modes that let unverified requests through -------------------------


@pytest.mark.parametrize("mode", ["report-only", "optional"])
def test_workload_of_refuses_what_the_dependency_refuses_when_the_middleware_lets_a_request_through(mode: str) -> None:
    issuer = DevIssuer("example.com")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    verifier = Verifier({"example.com": issuer.jwks}, [origin])
    app = FastAPI()

    @app.get("/direct")
    async def direct(request: Request) -> dict[str, str]:
        return {"workload": workload_of(request).identifier}

    @app.get("/dependency")
    async def dependency(workload: Workload) -> dict[str, str]:
        return {"workload": workload.identifier}

    install(app, verifier, mode=mode)  # type: ignore[arg-type]
    key = SigningKey.generate("ES256")
    wit = issuer.issue_wit(IDENTIFIER, key)
    stranger = DevIssuer("example.com", kid=issuer.kid).issue_wit(IDENTIFIER, key)  # refused: wit-signature
    marker = stranger.split(".")[2][-24:]
    with serve(app, port=port), httpx.Client(base_url=origin) as client:
        for headers in ({}, {"Workload-Identity-Token": stranger}, {"Workload-Identity-Token": wit}):
            answers = [client.get(route, headers=headers) for route in ("/direct", "/dependency")]
            assert answers[0].status_code == answers[1].status_code == 400
            assert answers[0].content == answers[1].content
            # report-only lets every refusal through (the handler refuses: wit-missing); optional
            # lets only a request without WIMSE headers through, and refuses the others itself.
            passed = mode == "report-only" or not headers
            refused_by_middleware = "wit-signature" if headers.get("Workload-Identity-Token") == stranger else "wpt-missing"
            assert answers[0].json()["code"] == ("wit-missing" if passed else refused_by_middleware)
            assert marker not in answers[0].text
        with httpx.Client(base_url=origin, auth=WPTAuth(key, wit)) as signed:
            for route in ("/direct", "/dependency"):
                assert signed.get(route).json() == {"workload": IDENTIFIER}



# --- finding: workload_of() runs after FastAPI has validated the route's parameters ------------


def test_workload_of_runs_after_fastapis_parameter_validation_as_documented() -> None:
    # Review finding (low): workload_of() is called in the handler body, after FastAPI validated
    # the route's parameters; the Workload dependency refuses before. Where the middleware lets an
    # unverified request through (report-only, optional, an excluded route), a route with
    # parameters answers FastAPI's 422 first. Documented: such routes take the dependency.
    issuer = DevIssuer("example.com")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    app = FastAPI()

    @app.get("/direct")
    async def direct(request: Request, q: int) -> dict[str, str]:
        return {"workload": workload_of(request).identifier}

    @app.get("/dependency")
    async def dependency(workload: Workload, q: int) -> dict[str, str]:
        return {"workload": workload.identifier}

    install(app, Verifier({"example.com": issuer.jwks}, [origin]), mode="report-only")
    with serve(app, port=port), httpx.Client(base_url=origin) as client:
        by_dependency = client.get("/dependency", params={"q": "not-a-number"})
        direct_invalid = client.get("/direct", params={"q": "not-a-number"})
        direct_valid = client.get("/direct", params={"q": "1"})
    assert (by_dependency.status_code, by_dependency.json()["code"]) == (400, "wit-missing")
    assert direct_invalid.status_code == 422  # FastAPI's validation came first
    # With valid parameters workload_of refuses byte for byte as the dependency does.
    assert direct_valid.content == by_dependency.content
