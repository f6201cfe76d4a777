"""The canonical request path: what every middleware decision judges (issue 15, issue 13 defect 2).

Unit cases for the path view and the patterns, then the middleware as a raw ASGI app (the shape
of a server that omits ``raw_path``, and of one that sends it), then a property: for paths
generated from the RFC 3986 grammar with dot segments, empty segments and percent-encodings
sprinkled in, the middleware's decision is the decision for the file StaticFiles would serve.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from wimse_wpt.middleware import RouteRule, WPTMiddleware
from wimse_wpt.paths import PathPattern, PathPolicy, canonical_path, route_path
from wimse_wpt.problems import Reject

from .conftest import NOW, ORIGIN, World

STRICT = PathPolicy()
NORMALIZE = PathPolicy(normalize=True, merge_slashes=True, escaped_slashes="unescape")
OPS = "wimse://example.com/ops/reader"
OTHER = "wimse://example.com/billing/api"

#: Spellings that name a resource in more than one way: refused by default, whatever the server.
AMBIGUOUS = [
    "/static/pub/../secret/x", "/static/pub/%2e%2e/secret/x", "/static/pub/%2E%2E/secret/x",
    "/static/pub/%2e./secret/x", "/static/pub/.%2E/secret/x", "/static/pub/..%2fsecret/x",
    "/static/pub/..%2Fsecret/x", "/static/pub/..%5csecret/x", "/static/pub/..%5Csecret/x",
    "/static/pub/..\\secret/x", "/static/pub\\..\\secret/x", "/static/pub/%252e%252e/secret/x",
    "/static/pub/%252E%252E%252Fsecret/x", "/static/pub/..;/secret/x", "/static/pub/..;x=1/secret/x",
    "/static/pub//../secret/x", "/static/pub/./../secret/x", "/static/pub/x/../../secret/x",
    "/static/pub/.../secret/x", "/static/pub/..%00/secret/x", "/static/pub/%00/x",
    "/static/pub/%C0%AE%C0%AE/secret/x", "/static/pub/%E0%80%AE%E0%80%AE/secret/x",
    "/static/pub/%EF%BC%8E%EF%BC%8E/secret/x", "/static/pub/..%EF%BC%8Fsecret/x",
    "/static/pub/%EF%BC%85%EF%BC%92%EF%BD%85/x", "/static/pub/%2e%2e%5c%2e%2e%5csecret/x",
    "/static/pub/..%20/secret/x", "/static/pub/.%20/x", "/static/pub/..%09/secret/x", "/files//secret/x", "/files/./secret/x",
    "/files/%2Fsecret/x", "/files/%2fsecret/x", "/files/pub/../secret/x", "/files/secret/x/.",
    "/files/secret/x/..", "/static/pub/%2%65%2e/x", "/static/pub/%zz", "/static/pub/%e9", "/static/pub/%",
    "//static/pub/x", "/static/pub/x%2F..%2F..%2Fsecret%2Fx",
]
#: Clean spellings and the route they are judged as.
CLEAN = {
    "/": "/", "/static/pub/x": "/static/pub/x", "/a/b/": "/a/b/", "/.well-known/jwks": "/.well-known/jwks",
    "/a%20b": "/a b", "/a%2eb": "/a.b", "/caf%C3%A9": "/café", "/a/..b": "/a/..b", "/a/b..": "/a/b..",
    "/a;b=1": "/a;b=1", "/a/.x/y": "/a/.x/y", "/100%25": "/100%",
}
#: Under NORMALIZE: spelling -> the route judged (and the path the app is then given).
NORMALIZED = {
    "/static/pub/../secret/x": "/static/secret/x", "/static/pub/%2e%2E/secret/x": "/static/secret/x",
    "/static/pub/..%2fsecret/x": "/static/secret/x", "/static/pub/..%5Csecret/x": "/static/secret/x",
    "/static/pub/..\\secret/x": "/static/secret/x", "/files//secret/x": "/files/secret/x",
    "/files/./secret/x": "/files/secret/x", "/files/%2Fsecret/x": "/files/secret/x",
    "/a/b/..": "/a/", "/a/.": "/a/", "/..": "/", "/../../a": "/a", "/a//../b": "/b", "/a/./b/../../c": "/c",
}
#: Refused under every policy: not one resource whatever a normaliser makes of them.
ALWAYS_AMBIGUOUS = [
    "/static/pub/%252e%252e/secret/x", "/static/pub/..;/secret/x", "/static/pub/.../secret/x",
    "/static/pub/%00/x", "/static/pub/%C0%AE%C0%AE/secret/x", "/static/pub/%EF%BC%8E%EF%BC%8E/secret/x",
    "/static/pub/%zz", "/static/pub/%e9", "/static/pub/..%20/secret/x",
]


def scope_for(
    raw: str, root_path: str = "", with_raw_path: bool = True, server_prefixes_root: bool = True, moved: bool = False
) -> Scope:
    """The scope a server builds for request target ``raw``: uvicorn prefixes root_path to path
    and raw_path; hypercorn does not; some servers send no raw_path at all; a router that moves
    a prefix into root_path (Starlette's Mount before 0.33) leaves it out of path only."""
    full = root_path + raw if server_prefixes_root else raw
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": unquote(raw if moved else full),
                             "root_path": root_path, "query_string": b"", "headers": [], "scheme": "https"}
    if with_raw_path:
        scope["raw_path"] = full.encode("latin-1")
    return scope


def addressed(path: str, root_path: str) -> str:
    """The path as the client addressed it: root_path in front unless the server put it there."""
    if root_path and not (path == root_path or path.startswith(root_path.rstrip("/") + "/")):
        return root_path.rstrip("/") + path
    return path


def judged(raw: str, policy: PathPolicy = STRICT, **shape: Any) -> str | None:
    try:
        return canonical_path(scope_for(raw, **shape), policy).route
    except Reject as reject:
        assert reject.code == "path-ambiguous"
        return None


SHAPES = [
    pytest.param({}, id="raw_path"),
    pytest.param({"with_raw_path": False}, id="no-raw_path"),
    pytest.param({"root_path": "/api"}, id="root-prefixed"),
    pytest.param({"root_path": "/api", "server_prefixes_root": False}, id="root-not-prefixed"),
    pytest.param({"root_path": "/api", "moved": True}, id="root-moved-out-of-path"),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("raw", AMBIGUOUS)
def test_ambiguous_spellings_are_refused_by_default(raw: str, shape: dict[str, Any]) -> None:
    route = judged(raw, **shape)
    if shape.get("with_raw_path", True):
        assert route is None
    else:
        # The server decoded already ("%zz" stays, "%e9" became U+FFFD): refused, or a path with
        # nothing left to resolve, which is then exactly what the app routes on.
        assert route is None or ("//" not in route and "/." not in route and "\\" not in route), route


def test_without_raw_path_the_decoded_path_is_judged() -> None:
    # A server that omits raw_path has already turned %2F into '/': that is the path the app
    # routes on, so it is the one judged, and refused for its empty segment.
    assert judged("/files/%2Fsecret/x", with_raw_path=False) is None
    assert judged("/files/a%2Fb", with_raw_path=False) == "/files/a/b"
    assert judged("/static/pub/%2e%2e/secret/x", with_raw_path=False) is None
    assert judged("/static/pub/%252e%252e/x", with_raw_path=False) is None
    assert judged("/static/pub/x%00", with_raw_path=False) is None  # a NUL the server decoded


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("raw", "route"), CLEAN.items())
def test_clean_spellings_are_judged_as_sent(raw: str, route: str, shape: dict[str, Any]) -> None:
    assert judged(raw, **shape) == route


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("raw", "route"), NORMALIZED.items())
def test_normalize_judges_and_serves_the_normalised_path(raw: str, route: str, shape: dict[str, Any]) -> None:
    scope = scope_for(raw, **shape)
    where = canonical_path(scope, NORMALIZE)
    assert where.route == route
    assert where.rewritten is not None
    new_path, new_raw = where.rewritten
    root = shape.get("root_path", "")
    # The app gets the path that was judged, with root_path where the server had put it.
    assert route_path(new_path, root) == route
    # raw_path keeps what the server put in it (root_path included where it was).
    assert unquote(new_raw.decode()) == (root + new_path if shape.get("moved") else new_path)
    assert where.target == new_raw.decode()


@pytest.mark.parametrize("raw", ALWAYS_AMBIGUOUS)
def test_some_spellings_are_refused_whatever_the_policy(raw: str) -> None:
    assert judged(raw, NORMALIZE) is None


def test_each_normalisation_is_its_own_choice() -> None:
    only_dots = PathPolicy(normalize=True)
    assert judged("/a/../b", only_dots) == "/b"
    assert judged("/a//b", only_dots) is None
    assert judged("/a/%2Fb", only_dots) is None
    assert judged("/a//b", PathPolicy(merge_slashes=True)) == "/a/b"
    assert judged("/a/../b", PathPolicy(merge_slashes=True)) is None
    assert judged("/a/%2Fb", PathPolicy(escaped_slashes="unescape")) is None  # '//' once unescaped
    assert judged("/a%2Fb", PathPolicy(escaped_slashes="unescape")) == "/a/b"
    with pytest.raises(ValueError):
        PathPolicy(escaped_slashes="keep")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WPTMiddleware(lambda *a: None, World().verifier, path_policy="normalize")  # type: ignore[arg-type]


def test_a_path_and_raw_path_that_disagree_are_refused() -> None:
    # A layer in front rewrote one view and not the other: which resource is served is unknown.
    scope = scope_for("/static/pub/x")
    scope["path"] = "/static/secret/x"
    with pytest.raises(Reject):
        canonical_path(scope, PathPolicy())


def test_root_path_is_removed_only_at_a_segment_boundary() -> None:
    # Issue 13 defect 2: "/api" + "/apiadmin" used to be judged as "admin".
    assert route_path("/apiadmin", "/api") == "/apiadmin"
    assert route_path("/api/admin", "/api") == "/admin"
    assert route_path("/api", "/api") == ""
    assert judged("/apiadmin", root_path="/api", server_prefixes_root=False) == "/apiadmin"
    assert judged("/api", root_path="/api", server_prefixes_root=False) == "/"
    assert judged("/admin", root_path="/api") == "/admin"


def test_patterns() -> None:
    admin = PathPattern.parse("/admin/*")
    assert admin.matches("/admin") and admin.matches("/admin/") and admin.matches("/admin/users")
    assert not admin.matches("/administrator") and not admin.matches("/adminx")
    exact = PathPattern.parse("/healthz")
    assert exact.matches("/healthz")
    assert not exact.matches("/healthzX") and not exact.matches("/healthz/x") and not exact.matches("/healthz/")
    for bad in ["admin", "/a*b", "/a/../b/*", "/a//b", "/a\\b", "/./x"]:
        with pytest.raises(ValueError):
            PathPattern.parse(bad)


# --- the middleware as a raw ASGI app --------------------------------------------------------


class Recorder:
    """An app that records the scope it was called with and answers 200."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"served"})


async def call(app: Any, scope: Scope) -> tuple[int, str]:
    """Run one request through ``app``; the status and the problem code (or "served")."""
    import json

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(body)["code"] if status != 200 else "served"


class Guarded:
    """The issue's two set-ups in one app: an excluded public tree, an allow-listed secret one."""

    def __init__(self, policy: PathPolicy = STRICT, **rules: Any) -> None:
        self.world = World()
        self.app = Recorder()
        self.middleware = WPTMiddleware(
            self.app,
            self.world.verifier,
            exclude=["/static/pub/*", "/healthz"],
            routes=[
                RouteRule("/static/secret/*", allow=["wimse://example.com/ops/*"]),
                RouteRule("/static/x", allow=["wimse://example.com/ops/*"]),  # one file, exactly
                RouteRule("/admin/*", allow=["wimse://example.com/ops/*"]),
                RouteRule("/a", allow=["wimse://example.com/ops/*"]),
                RouteRule("/apiadmin", allow=["wimse://example.com/ops/*"]),
            ],
            path_policy=policy,
            **rules,
        )
        self.wits = {who: self.world.issuer.issue_wit(who, self.world.key, now=NOW) for who in (OPS, OTHER)}

    async def request(self, raw: str, who: str | None = None, aud_path: str | None = None, **shape: Any) -> tuple[int, str]:
        """``raw`` sent by ``who`` (None: no credentials) with ``aud`` for ``aud_path`` (as the
        server hands it: root_path included where the server puts it), the raw spelling by default."""
        scope = scope_for(raw, **shape)
        if who is not None:
            sent = scope["raw_path"].decode() if "raw_path" in scope else raw
            aud = ORIGIN + addressed(aud_path or sent, shape.get("root_path", ""))
            wit = self.wits[who]
            scope["headers"] = self.world.headers(self.world.wpt(aud=aud, wit=wit), wit)
        return await call(self.middleware, scope)


@pytest.mark.parametrize("shape", SHAPES)
async def test_the_two_reproductions_are_refused(shape: dict[str, Any]) -> None:
    guarded = Guarded()
    for raw in ["/static/pub/../secret/x", "/static/pub/%2e%2e/secret/x", "/static/pub/..%2fsecret/x",
                "/static/pub/%2E%2E/secret/x", "/static/pub/..%2Fsecret/x"]:
        assert await guarded.request(raw, **shape) == (400, "path-ambiguous"), raw
    for raw in ["/static//secret/x", "/static/./secret/x", "/static/%2Fsecret/x", "/static/pub/../secret/x"]:
        assert await guarded.request(raw, OTHER, **shape) == (400, "path-ambiguous"), raw
    # The controls: the same resources, spelled plainly, are judged as themselves.
    assert await guarded.request("/static/pub/x", **shape) == (200, "served")
    assert await guarded.request("/static/secret/x", **shape) == (400, "wit-missing")
    assert await guarded.request("/static/secret/x", OTHER, **shape) == (403, "workload-forbidden")
    assert await guarded.request("/static/secret/x", OPS, **shape) == (200, "served")


async def test_the_reproductions_under_normalize_reach_the_rule_of_their_resource() -> None:
    guarded = Guarded(NORMALIZE)
    assert await guarded.request("/static/pub/../secret/x") == (400, "wit-missing")
    assert await guarded.request("/static/pub/%2e%2e/secret/x") == (400, "wit-missing")
    # The attacker signs its own spelling: aud must name the normalised target, so that fails...
    assert await guarded.request("/static/pub/../secret/x", OTHER) == (400, "wpt-audience")
    # ...and with aud for the normalised target the allow-list applies.
    for raw in ["/static//secret/x", "/static/./secret/x", "/static/%2Fsecret/x", "/static/pub/../secret/x"]:
        assert await guarded.request(raw, OTHER, aud_path="/static/secret/x") == (403, "workload-forbidden"), raw
    assert await guarded.request("/static/pub/../secret/x", OPS, aud_path="/static/secret/x") == (200, "served")
    assert guarded.app.scopes[-1]["path"] == "/static/secret/x"
    assert guarded.app.scopes[-1]["raw_path"] == b"/static/secret/x"
    assert await guarded.request("/static/secret/../pub/x") == (200, "served")
    assert guarded.app.scopes[-1]["path"] == "/static/pub/x"


async def test_a_prefix_rule_covers_its_own_root() -> None:
    # Issue 13 defect 2: RouteRule("/admin/*") guards /admin itself (an APIRouter index route).
    guarded = Guarded()
    for raw in ["/admin", "/admin/", "/admin/users"]:
        assert await guarded.request(raw, OTHER) == (403, "workload-forbidden"), raw
        assert await guarded.request(raw, OPS) == (200, "served"), raw
    assert await guarded.request("/administrator", OTHER) == (200, "served")  # not below /admin/
    # And exclusions read patterns the same way: "/static/pub/*" opens "/static/pub".
    assert await guarded.request("/static/pub") == (200, "served")
    assert await guarded.request("/static/public") == (400, "wit-missing")


async def test_exact_patterns_stay_exact() -> None:
    guarded = Guarded()
    assert await guarded.request("/healthz") == (200, "served")
    for raw in ["/healthzX", "/healthz/x", "/healthz/"]:
        assert await guarded.request(raw) == (400, "wit-missing"), raw
    assert await guarded.request("/a", OTHER) == (403, "workload-forbidden")
    assert await guarded.request("/a/", OTHER) == (403, "workload-forbidden")  # served as "/a" by StaticFiles
    assert await guarded.request("/a/", OPS) == (200, "served")
    assert await guarded.request("/ab", OTHER) == (200, "served")
    assert await guarded.request("/a/b", OTHER) == (200, "served")


async def test_root_path_without_a_boundary_is_not_stripped() -> None:
    # A server that keeps root_path out of path (hypercorn) hands "/apiadmin" with root "/api":
    # Starlette routes it as "/apiadmin", so its rule applies, not the default.
    guarded = Guarded()
    shape = {"root_path": "/api", "server_prefixes_root": False}
    assert await guarded.request("/apiadmin", OTHER, **shape) == (403, "workload-forbidden")
    assert await guarded.request("/apiadmin", OPS, **shape) == (200, "served")
    assert await guarded.request("/api/admin", OTHER, **shape) == (403, "workload-forbidden")


async def test_no_exclusion_applies_to_a_dot_segment_whatever_the_policy() -> None:
    # Belt and braces: even if a policy let a dot segment through, no exclusion would open it.
    guarded = Guarded()
    assert guarded.middleware._excluded("/static/pub/x")
    assert not guarded.middleware._excluded("/static/pub/../secret/x")
    assert not guarded.middleware._excluded("/static/pub/..;/secret/x")


async def test_a_remembered_routing_decision_is_that_of_its_own_path_raw_path_and_root() -> None:
    # Routing decisions are remembered per (path, raw_path, root_path): the same path under
    # another root_path is another route, whichever was seen first.
    guarded = Guarded()
    under_root = {"root_path": "/static", "server_prefixes_root": False}  # route "/pub/x": not excluded
    for _ in range(2):  # the second pass is answered from what the first remembered
        assert await guarded.request("/static/pub/x", **under_root) == (400, "wit-missing")
        assert await guarded.request("/static/pub/x") == (200, "served")
        # The same path, another raw_path: an escaped "/" is its own (refused) decision.
        assert await guarded.request("/static/pub%2Fx") == (400, "path-ambiguous")
        assert await guarded.request("/static/secret/x", OTHER) == (403, "workload-forbidden")
        assert await guarded.request("/static/secret/x", OPS) == (200, "served")
        assert await guarded.request("/static/pub/../secret/x") == (400, "path-ambiguous")  # never remembered
    assert len(guarded.middleware._routes) == 3


async def test_remembered_routing_decisions_are_bounded() -> None:
    # Paths are the client's choice: what is remembered is bounded in count and in key size.
    guarded = Guarded()
    for i in range(3000):
        assert await guarded.request(f"/static/pub/{i}") == (200, "served")
    assert 0 < len(guarded.middleware._routes) <= 1024
    guarded.middleware._routes.clear()
    assert await guarded.request("/static/pub/" + "x" * 600) == (200, "served")
    assert not guarded.middleware._routes


# --- property: the decision is the decision for what StaticFiles would serve ----------------

PIECES = ["pub", "secret", "x", "a", ".", "..", "", "...", "%2e", "%2E", "%2e%2e", ".%2e", "%2E.", "%2f", "%2F",
          "%5c", "%5C", "\\", "%00", "%25", "%252e", "%252f", ";", "..;", "%41", "%zz", "%C3%A9", "%C0%AE",
          "%EF%BC%8E", ".well-known", "%20", "pub..", "x."]
segments = st.lists(st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map("".join), min_size=1, max_size=6)


def served_file(app_path: str, root_path: str) -> str | None:
    """What Mount("/static", StaticFiles(directory=d)) serves for this app path (as StaticFiles
    computes it: os.path.normpath within its directory), or None if it serves nothing."""
    route = route_path(app_path, root_path)
    if not route.startswith("/static/"):
        return None
    relative = os.path.normpath(os.path.join(*route[len("/static/") :].split("/"))) if route != "/static/" else "."
    if relative.startswith("..") or os.path.isabs(relative):
        return None  # outside the directory: StaticFiles refuses it
    return posixpath.normpath(relative)


def expected(file: str | None) -> tuple[str, str]:
    """(no credentials, a workload outside the allow-list) for the file that would be served."""
    if file is not None and (file == "pub" or file.startswith("pub/")):
        return "served", "served"
    if file is not None and (file == "secret" or file.startswith("secret/") or file == "x"):
        return "wit-missing", "workload-forbidden"
    return "wit-missing", "served"


async def check_decisions(policy: PathPolicy, parts: list[str], shape: dict[str, Any]) -> None:
    guarded = Guarded(policy)
    raw = "/static/" + "/".join(parts)
    root = shape.get("root_path", "")
    try:
        where = canonical_path(scope_for(raw, **shape), policy)
    except Reject:
        where = None
    aud_path = where.target if where is not None else None
    # Ground truth: the path the app is handed when an allowed workload asks for this spelling.
    status, code = await guarded.request(raw, OPS, aud_path=aud_path, **shape)
    if where is None:
        assert (status, code) == (400, "path-ambiguous"), raw
        assert await guarded.request(raw, **shape) == (400, "path-ambiguous"), raw
        assert await guarded.request(raw, OTHER, aud_path=aud_path, **shape) == (400, "path-ambiguous"), raw
        return
    assert (status, code) == (200, "served"), raw
    app_scope = guarded.app.scopes[-1]
    file = served_file(app_scope["path"], root)
    if policy.strict:  # nothing rewritten: the app serves exactly what was sent
        assert app_scope["path"] == scope_for(raw, **shape)["path"]
    no_credentials, outsider = expected(file)
    assert (await guarded.request(raw, **shape))[1] == no_credentials, (raw, file)
    assert (await guarded.request(raw, OTHER, aud_path=aud_path, **shape))[1] == outsider, (raw, file)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("policy", [PathPolicy(), NORMALIZE], ids=["strict", "normalize"])
def test_decisions_follow_what_static_files_serves(policy: PathPolicy, shape: dict[str, Any]) -> None:
    import asyncio

    @given(segments)
    @example(["x", ""])  # served as "x": the exact rule applies
    @example(["pub", "..", "secret", "x"])
    @example(["pub", "%2e%2e", "secret", "x"])
    @example(["", "secret", "x"])
    @example(["pub", "..%2f", "x"])
    def check(parts: list[str]) -> None:
        asyncio.run(check_decisions(policy, parts, shape))

    check()
