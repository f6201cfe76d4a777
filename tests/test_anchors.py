"""Trust anchors from real sources: a JWKS served by uvicorn on 127.0.0.1, files rewritten
while the verifier runs, SPIFFE bundles, and the example service pointed at them."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wimse_wpt import DevIssuer, JWKSFile, RemoteJWKS, SigningKey, TrustAnchors, WPTAuth

from .conftest import IDENTIFIER, NOW, World
from .servers import example_service, free_port, serve


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class JWKSServer:
    """A JWKS endpoint whose answers the test changes as it goes."""

    def __init__(self, *issuers: DevIssuer) -> None:
        self.keys = [k for issuer in issuers for k in issuer.jwks["keys"]]
        self.status = 200
        self.delay = 0.0
        self.body: bytes | None = None
        self.max_age: int | None = None
        self.fetches = 0

    def serve(self, issuers: list[DevIssuer]) -> None:
        self.keys = [k for issuer in issuers for k in issuer.jwks["keys"]]

    async def endpoint(self, request: Request) -> Response:
        self.fetches += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.body is not None:
            return Response(self.body, media_type="application/json")
        headers = {"cache-control": f"max-age={self.max_age}"} if self.max_age is not None else {}
        return JSONResponse({"keys": self.keys}, status_code=self.status, headers=headers)


@pytest.fixture
def issuers() -> tuple[DevIssuer, DevIssuer]:
    return DevIssuer("example.com", kid="key-a"), DevIssuer("example.com", kid="key-b")


@pytest.fixture
def server(issuers: tuple[DevIssuer, DevIssuer]) -> Iterator[tuple[JWKSServer, str]]:
    jwks = JWKSServer(issuers[0])
    app = Starlette(routes=[Route("/jwks.json", jwks.endpoint)])
    with serve(app) as origin:
        yield jwks, origin + "/jwks.json"


def remote(url: str, clock: FakeClock, **options: Any) -> RemoteJWKS:
    options.setdefault("min_refresh", 5)
    options.setdefault("default_refresh", 60)
    options.setdefault("max_refresh", 600)
    options.setdefault("max_stale", 3600)
    options.setdefault("timeout", 2)
    return RemoteJWKS(url, allow_insecure=True, clock=clock, **options)


def world_with(source: Any, issuer: DevIssuer) -> World:
    world = World(anchors=TrustAnchors({"example.com": source}))
    world.issuer = issuer
    world.wit = issuer.issue_wit(IDENTIFIER, world.key, now=NOW)
    return world


def wit_from(world: World, issuer: DevIssuer) -> str:
    return issuer.issue_wit(IDENTIFIER, world.key, now=NOW)


async def settle(source: RemoteJWKS, fetches: int) -> None:
    """Let a background refresh finish (it runs on this loop, against the real server)."""
    for _ in range(200):
        if source.fetches >= fetches and (source._inflight is None or source._inflight.done()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the background refresh did not finish")


async def test_rotation_new_key_added_then_old_key_removed(server: tuple[JWKSServer, str], issuers: Any) -> None:
    jwks, url = server
    a, b = issuers
    clock = FakeClock()
    source = remote(url, clock)
    world = world_with(source, a)
    assert (await world.verify()).identifier == IDENTIFIER
    # The issuer adds key b: a WIT under it has an unknown kid, which triggers one refresh.
    jwks.serve([a, b])
    clock.now += 5
    wit_b = wit_from(world, b)
    assert await world.verify(world.headers(world.wpt(wit=wit_b), wit_b))
    assert jwks.fetches == 2
    # The issuer removes key a. Once the keys are due for refresh, the cached WIT under a is
    # checked again and refused, although it verified before.
    jwks.serve([b])
    clock.now += 61
    assert await world.verify(world.headers(world.wpt()))  # served from cache; refresh starts
    await settle(source, 3)
    assert (await world.reject(world.headers(world.wpt()))).code == "wit-key-unknown"
    assert await world.verify(world.headers(world.wpt(wit=wit_b), wit_b))


async def test_cache_control_max_age_sets_the_refresh_within_bounds(server: tuple[JWKSServer, str], issuers: Any) -> None:
    jwks, url = server
    clock = FakeClock()
    jwks.max_age = 20
    source = remote(url, clock)
    world = world_with(source, issuers[0])
    await world.verify()
    clock.now += 19
    _ = source.generation
    assert jwks.fetches == 1  # not due yet
    clock.now += 2
    _ = source.generation
    await settle(source, 2)
    assert jwks.fetches == 2
    jwks.max_age = 1  # below min_refresh: clamped up to 5 s
    clock.now += 100
    _ = source.generation
    await settle(source, 3)
    clock.now += 4
    _ = source.generation
    await asyncio.sleep(0.05)
    assert jwks.fetches == 3


async def test_unknown_kid_flood_is_one_fetch(server: tuple[JWKSServer, str], issuers: Any) -> None:
    jwks, url = server
    clock = FakeClock()
    source = remote(url, clock)
    world = world_with(source, issuers[0])
    stranger = DevIssuer("example.com", kid="not-served")
    requests = []
    for _ in range(100):
        wit = wit_from(world, stranger)
        requests.append(world.headers(world.wpt(wit=wit), wit))
    outcomes = await asyncio.gather(*(world.reject(h) for h in requests))
    assert {p.code for p in outcomes} == {"wit-key-unknown"}
    assert jwks.fetches == 1
    # Later floods still cost at most one fetch per min_refresh.
    clock.now += 5
    await asyncio.gather(*(world.reject(h) for h in requests[:50]))
    assert jwks.fetches == 2


async def test_endpoint_down_stale_keys_serve_then_fail_closed(server: tuple[JWKSServer, str], issuers: Any) -> None:
    jwks, url = server
    clock = FakeClock()
    source = remote(url, clock, max_stale=300)
    world = world_with(source, issuers[0])
    await world.verify()
    jwks.status = 500
    clock.now += 100  # past the refresh: the fetch fails, the last good keys keep serving
    assert await world.verify(world.headers(world.wpt()))
    await settle(source, 2)
    fresh_wit = wit_from(world, issuers[0])  # not cached: verified with the stale keys
    assert await world.verify(world.headers(world.wpt(wit=fresh_wit), fresh_wit))
    clock.now += 250  # now older than max_stale
    problem = await world.reject(world.headers(world.wpt()))
    assert (problem.code, problem.status) == ("trust-anchors-unavailable", 503)
    # The endpoint comes back: verification recovers by itself.
    jwks.status = 200
    clock.now += 10
    for _ in range(100):
        try:
            await world.verify(world.headers(world.wpt()))
            break
        except Exception:
            await asyncio.sleep(0.02)
    else:
        raise AssertionError("did not recover")


async def test_slow_endpoint_times_out_and_fails_closed(server: tuple[JWKSServer, str], issuers: Any) -> None:
    jwks, url = server
    jwks.delay = 3
    world = world_with(remote(url, FakeClock(), timeout=0.3), issuers[0])
    started = time.monotonic()
    problem = await world.reject()
    assert (problem.code, problem.status) == ("trust-anchors-unavailable", 503)
    assert time.monotonic() - started < 2


async def test_oversized_response_is_refused(server: tuple[JWKSServer, str], issuers: Any) -> None:
    jwks, url = server
    jwks.body = b'{"keys": [' + b" " * 300_000 + b"]}"
    world = world_with(remote(url, FakeClock()), issuers[0])
    assert (await world.reject()).code == "trust-anchors-unavailable"


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"keys": [{"use": []}, {"use": {"a": 1}}]}', b'{"keys": "x"}', b"\xff\xfe"],
    ids=["deep-nesting", "unhashable-use", "keys-not-a-list", "not-utf8"],
)
async def test_hostile_jwks_bodies_fail_closed_never_500(
    server: tuple[JWKSServer, str], issuers: Any, body: bytes
) -> None:
    jwks, url = server
    jwks.body = body
    world = world_with(remote(url, FakeClock()), issuers[0])
    assert (await world.reject()).code == "trust-anchors-unavailable"


async def test_source_down_at_startup_fails_requests_closed_until_keys_arrive(issuers: Any) -> None:
    clock = FakeClock()
    port = free_port()
    source = remote(f"http://127.0.0.1:{port}/jwks.json", clock)
    world = world_with(source, issuers[0])  # construction does not fetch, and does not crash
    assert (await world.reject()).code == "trust-anchors-unavailable"
    jwks = JWKSServer(issuers[0])
    with serve(Starlette(routes=[Route("/jwks.json", jwks.endpoint)]), port=port):
        clock.now += 5
        assert (await world.verify(world.headers(world.wpt()))).identifier == IDENTIFIER


def test_remote_sources_are_https_only_unless_allowed() -> None:
    with pytest.raises(ValueError, match="https"):
        RemoteJWKS("http://127.0.0.1/jwks.json")
    with pytest.raises(ValueError):
        RemoteJWKS("ftp://example.com/jwks.json", allow_insecure=True)
    with pytest.raises(ValueError, match="loopback"):
        RemoteJWKS("http://issuer.example/jwks.json", allow_insecure=True)
    for local in ("http://127.0.0.1:8080/jwks.json", "http://localhost/jwks.json", "http://[::1]/jwks.json"):
        assert RemoteJWKS(local, allow_insecure=True).url == local
    assert RemoteJWKS("https://issuer.example/jwks.json").url.startswith("https://")


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document))
    os.replace(temporary, path)


async def test_file_rewritten_while_running(tmp_path: Path, issuers: Any) -> None:
    a, b = issuers
    path = tmp_path / "bundle.json"
    write_atomically(path, a.jwks)
    clock = FakeClock()
    source = JWKSFile(path, check_interval=1.0, clock=clock)
    world = world_with(source, a)
    assert await world.verify()
    write_atomically(path, {"keys": a.jwks["keys"] + b.jwks["keys"]})
    wit_b = wit_from(world, b)
    assert await world.verify(world.headers(world.wpt(wit=wit_b), wit_b))  # unknown kid: re-read
    write_atomically(path, b.jwks)
    clock.now += 1
    assert (await world.reject(world.headers(world.wpt()))).code == "wit-key-unknown"
    # A bad rewrite keeps the last good keys, whatever it holds.
    for bad in ("{not json", "[" * 100_000, '{"keys": "x"}'):
        path.write_text(bad)
        clock.now += 1
        assert await world.verify(world.headers(world.wpt(wit=wit_b), wit_b))
    # A valid file is authoritative: emptied of usable keys, it revokes them all.
    path.write_text('{"keys": [{"use": []}]}')
    clock.now += 1
    assert (await world.reject(world.headers(world.wpt(wit=wit_b), wit_b))).code == "wit-key-unknown"


def test_bad_files_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trust anchor file"):
        JWKSFile(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="trust anchor file"):
        JWKSFile(bad)
    with pytest.raises(ValueError):
        TrustAnchors.from_config({"example.com": 42})


async def test_spiffe_bundle_uses_wit_svid_keys_and_ignores_the_rest(tmp_path: Path, issuers: Any) -> None:
    a, b = issuers
    bundle = {
        "spiffe_sequence": 12,
        "spiffe_refresh_hint": 300,
        "keys": [
            dict(a.jwks["keys"][0], use="wit-svid"),
            dict(b.jwks["keys"][0], use="x509-svid", x5c=["MIIB..."]),
            dict(DevIssuer(kid="enc").jwks["keys"][0], use="enc"),
        ],
    }
    path = tmp_path / "bundle.spiffe"
    path.write_text(json.dumps(bundle))
    world = world_with(JWKSFile(path), a)
    assert await world.verify()
    wit_b = wit_from(world, b)
    assert (await world.reject(world.headers(world.wpt(wit=wit_b), wit_b))).code == "wit-key-unknown"


def test_from_config_mixes_sources(tmp_path: Path, server: tuple[JWKSServer, str], issuers: Any) -> None:
    _, url = server
    (tmp_path / "b.json").write_text(json.dumps(issuers[1].jwks))
    anchors = TrustAnchors.from_config(
        {"example.com": [url, "b.json"], "other.example": DevIssuer("other.example").jwks},
        base_dir=tmp_path,
        allow_insecure=True,
    )
    assert anchors.trust_domains == {"example.com", "other.example"}
    assert [type(s).__name__ for s in anchors.sources("example.com")] == ["RemoteJWKS", "JWKSFile"]
    with pytest.raises(ValueError, match="https"):
        TrustAnchors.from_config({"example.com": url})


def test_example_service_reads_a_jwks_url_and_a_bundle_file(
    tmp_path: Path, server: tuple[JWKSServer, str], issuers: Any
) -> None:
    _, url = server
    partner = DevIssuer("partner.example", kid="p")
    (tmp_path / "partner.json").write_text(json.dumps({"spiffe_sequence": 1, **partner.jwks}))
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"example.com": url, "partner.example": "partner.json"}))
    env = {"WIMSE_TRUST_ANCHORS": str(anchors), "WIMSE_ALLOW_INSECURE_JWKS": "1"}
    with example_service(env) as origin:
        for issuer, identifier in ((issuers[0], "wimse://example.com/a"), (partner, "wimse://partner.example/b")):
            key = SigningKey.generate("ES256")
            with httpx.Client(base_url=origin, auth=WPTAuth(key, issuer.issue_wit(identifier, key))) as client:
                assert client.post("/path").json() == {"workload": identifier}


# --- the JWKS size cap, each half alone (issue 13: the old oversized body held no usable key) --


def padded_jwks(issuer: DevIssuer, size: int) -> bytes:
    """A JWKS holding a valid key, padded with an unknown member to `size` bytes."""
    head = json.dumps({"keys": issuer.jwks["keys"], "padding": ""}).encode()
    return head[:-2] + b"x" * (size - len(head)) + b'"}'


async def test_streamed_body_over_the_cap_is_refused_though_it_holds_a_valid_key(issuers: Any) -> None:
    from starlette.responses import StreamingResponse

    body = padded_jwks(issuers[0], 300_000)

    async def chunks() -> Any:
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    async def endpoint(request: Request) -> Response:
        # No Content-Length: only the count of bytes read can stop it.
        return StreamingResponse(chunks(), media_type="application/json")

    with serve(Starlette(routes=[Route("/jwks.json", endpoint)])) as origin:
        refused = world_with(remote(origin + "/jwks.json", FakeClock(), max_bytes=256 * 1024), issuers[0])
        assert (await refused.reject()).code == "trust-anchors-unavailable"
        # The same body under a larger cap verifies: the size alone was refused.
        allowed = world_with(remote(origin + "/jwks.json", FakeClock(), max_bytes=512 * 1024), issuers[0])
        assert (await allowed.verify()).identifier == IDENTIFIER


async def test_declared_content_length_over_the_cap_is_refused_before_reading(
    issuers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A server declaring 300,000 bytes sends a valid JWKS of a few hundred and waits: only the
    Content-Length check refuses it as too large (reading would wait for bytes never sent)."""
    small = json.dumps(issuers[0].jwks).encode()
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 300000\r\n\r\n" + small)
        await writer.drain()
        await stop.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        world = world_with(remote(f"http://127.0.0.1:{port}/jwks.json", FakeClock(), timeout=1), issuers[0])
        with caplog.at_level("WARNING", logger="wimse_wpt"):
            assert (await world.reject()).code == "trust-anchors-unavailable"
        assert "response too large" in caplog.text
    finally:
        stop.set()
        server.close()
        await server.wait_closed()


async def test_a_kid_published_after_the_last_fetch_is_accepted_within_the_unknown_kid_interval(
    server: tuple[JWKSServer, str], issuers: Any
) -> None:
    jwks, url = server
    a, b = issuers
    clock = FakeClock()
    source = remote(url, clock, min_refresh=30, default_refresh=300)  # unknown_kid_refresh: 5 s by default
    world = world_with(source, a)
    assert await world.verify()
    assert jwks.fetches == 1
    jwks.serve([a, b])  # the issuer rotates right after our fetch
    wit_b = wit_from(world, b)
    clock.now += 1
    refused = await world.reject(world.headers(world.wpt(wit=wit_b), wit_b))
    # Meanwhile the caller is told this kid is not known yet, and when to retry.
    assert refused.code == "wit-key-unknown" and "looked up again within 5 s" in refused.detail
    assert jwks.fetches == 1
    clock.now += 4  # 5 s after the last fetch, not min_refresh's 30
    assert (await world.verify(world.headers(world.wpt(wit=wit_b), wit_b))).identifier == IDENTIFIER
    assert jwks.fetches == 2


async def test_unknown_kids_for_a_minute_cost_one_fetch_per_interval(server: tuple[JWKSServer, str], issuers: Any) -> None:
    jwks, url = server
    clock = FakeClock()
    source = remote(url, clock, min_refresh=30, default_refresh=300, unknown_kid_refresh=5)
    world = world_with(source, issuers[0])
    await world.verify()
    strangers = [DevIssuer("example.com", kid=f"random-{i}") for i in range(20)]
    flood = [world.headers(world.wpt(wit=wit_from(world, s)), wit_from(world, s)) for s in strangers]
    for _ in range(60):  # 60 s of 20 concurrent unknown kids every second
        clock.now += 1
        await asyncio.gather(*(world.reject(h) for h in flood))
    assert jwks.fetches == 1 + 60 // 5  # the first fetch, then one per 5 s: never one per request


async def test_static_anchors_keep_the_plain_unknown_kid_detail(issuers: Any) -> None:
    world = world_with(issuers[0].jwks, issuers[0])
    wit_b = wit_from(world, issuers[1])
    refused = await world.reject(world.headers(world.wpt(wit=wit_b), wit_b))
    assert refused.code == "wit-key-unknown" and "retry" not in refused.detail


def test_unknown_kid_refresh_is_bounded_by_min_refresh_and_checked() -> None:
    assert RemoteJWKS("https://issuer.example/jwks", min_refresh=2).unknown_kid_refresh == 2
    assert RemoteJWKS("https://issuer.example/jwks").unknown_kid_refresh == 5
    with pytest.raises(ValueError, match="unknown_kid_refresh"):
        RemoteJWKS("https://issuer.example/jwks", unknown_kid_refresh=-1)


async def test_a_static_domains_key_once_found_is_found_again_without_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    from wimse_wpt import StaticKeys
    from wimse_wpt.problems import Reject

    asked: list[str] = []
    real_keys = StaticKeys.keys

    async def counting(self: StaticKeys) -> Any:
        asked.append("keys")
        return await real_keys(self)

    monkeypatch.setattr(StaticKeys, "keys", counting)
    one, two = DevIssuer("example.com"), DevIssuer("example.com", kid="second")
    both = {"keys": one.jwks["keys"] + two.jwks["keys"]}
    anchors = TrustAnchors({"example.com": both, "other.example": [both, {"keys": []}]})
    first = await anchors.find_key("example.com", one.kid, "ES256")
    assert await anchors.find_key("example.com", one.kid, "ES256") is first
    assert len(asked) == 1
    assert (await anchors.find_key("example.com", "second", "ES256")).kid == "second"  # its own key
    assert len(asked) == 2
    for _ in range(2):  # refusals are never remembered: asked again every time
        for kid in ("unknown", None):
            with pytest.raises(Reject):
                await anchors.find_key("example.com", kid, "ES256")  # unknown kid; two keys fit
    assert len(asked) == 2 + 2 * 2
    # Two sources for a domain: each lookup asks them (their keys may come from elsewhere).
    del asked[:]
    for _ in range(2):
        await anchors.find_key("other.example", one.kid, "ES256")
    assert len(asked) == 4
