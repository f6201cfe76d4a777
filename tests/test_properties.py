"""Property-based fuzzing of everything the middleware reads.

Requests are generated from the token grammar, not from random bytes alone: a valid WIT and
WPT, then some of their header members and claims replaced by near misses (other spellings,
other types, odd numbers, wrong hashes), signed by the right or a wrong key, optionally with
the compact serialization edited byte by byte, and sent with the WIT, WPT, Authorization,
Txn-Token and oth header fields present, absent, doubled, padded or changed. Whatever comes
out, the properties are the same:

- the answer is 200 or a documented problem (a code in CATALOG with its documented status);
- never an exception, never a 500, never a token in the response body or in a log record;
- a request that was not mutated is accepted, and one carrying a mutation that must be
  refused (a wrong signature, a changed signed byte, an unbound token, a passed exp) is refused.

Run bounded by the default profile in ``make test``; ``make fuzz`` runs the ``fuzz`` profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wimse_wpt import CATALOG, SigningKey, VerificationError
from wimse_wpt.problems import status_for
from wimse_wpt.tokens import token_hash

from .conftest import IDENTIFIER, NOW, ORIGIN, TARGET, World
from .test_corpus import asgi_call, b64, jbytes, make_app, secrets_in, sign_bytes, unb64

OTH = "x-session"
LOGGER_NAMES = ("", "wimse_wpt", "uvicorn", "uvicorn.error", "starlette")


# --- the world under test: one per profile, kept across examples -----------------------------


@dataclass
class Target:
    world: World
    app: Any
    wrong_issuer: SigningKey
    wrong_key: SigningKey
    loop: asyncio.AbstractEventLoop


_TARGETS: dict[str, Target] = {}


def target(profile: str) -> Target:
    if profile not in _TARGETS:
        world = World("ES256", "Ed25519", profile, oth_headers=[OTH])
        _TARGETS[profile] = Target(world, make_app(world.verifier), SigningKey.generate("ES256"),
                                   SigningKey.generate("Ed25519"), asyncio.new_event_loop())
    return _TARGETS[profile]


@pytest.fixture(scope="module", autouse=True)
def _close_loops() -> Iterator[None]:
    yield
    for t in _TARGETS.values():
        t.loop.close()
    _TARGETS.clear()


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured_logs() -> Iterator[list[logging.LogRecord]]:
    handler = Capture()
    loggers = [logging.getLogger(name) for name in LOGGER_NAMES]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


# --- near misses, field by field -------------------------------------------------------------

KEEP, DELETE = object(), object()

NUMBERS = st.one_of(
    st.sampled_from([NOW, NOW + 60, NOW + 299, NOW + 301, NOW - 1, 0, -1, 2**31, 2**53 + 1, 2**63, 2**64, 10**400,
                     -(10**400), 1e308, True, False, "1800000060", None]),
    st.integers(),
    st.integers(min_value=int(NOW) - 600, max_value=int(NOW) + 90000),
    st.floats(),
    st.floats(min_value=NOW - 600, max_value=NOW + 600),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def near(*values: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(list(values)), JSON)


ALGS = near("ES256", "ES384", "ES512", "EdDSA", "Ed25519", "RS256", "PS256", "none", "None", "NONE", "HS256", "HS512",
            "es256", "ed25519", "", " ES256", "ES256\u0000")
WIT_HEADER = {
    "alg": ALGS,
    "typ": near("wit+jwt", "WIT+JWT", "application/wit+jwt", "Application/Wit+Jwt", "wpt+jwt", "jwt", "JWT",
                "application/wit+jwt; charset=x", "wit+jwt ", "", "application/"),
    "kid": near("other", "", "../kid", "\u0000"),
    "crit": near(["exp"], [], ["b64"], "b64"),
    "b64": near(False, True),
    "jwk": JSON,
    "jku": near("http://127.0.0.1:9/jwks", "https://attacker.example/jwks"),
    "x5c": near(["MIIB"], []),
    "zip": near("DEF"),
    "cty": near("JWT", "jwt"),
}
WPT_HEADER = {**WIT_HEADER, "typ": near("wpt+jwt", "WPT+JWT", "application/wpt+jwt", "wit+jwt", "jwt", "dpop+jwt", "")}
IDENTIFIERS = near(
    IDENTIFIER, IDENTIFIER.upper(), "wimse://EXAMPLE.com/specific-workload", "wimse://example.com/", "wimse://example.com",
    "wimse://example.com/a/../b", "wimse://example.com/a%2Fb", "wimse://example.com//x", "spiffe://example.com/x",
    "wimse://other.example/x", "wimse://example.com:443/x", "wimse://u@example.com/x", "wimse://example.com/x?q",
    "wimse://example.com/x#f", "https://example.com/x", IDENTIFIER + "/", IDENTIFIER + "\u0000", "wimse://example.com./x",
    "wimse://example.com/" + "a" * 2100, "WIMSE://example.com/x",
)
AUDIENCES = near(
    TARGET, TARGET.upper(), "HTTPS://WORKLOAD.EXAMPLE.COM/path", ORIGIN + ":443/path", ORIGIN + "/path?x=1",
    ORIGIN + "/path#f", ORIGIN + "/Path", ORIGIN + "/path/", ORIGIN + "/%70ath", ORIGIN + "/pa%2Fth", ORIGIN + "/pa%74h",
    "http://workload.example.com/path", "wss://workload.example.com/path", [TARGET], [TARGET, TARGET], [],
    "https://user@workload.example.com/path", "https://workload.example.com:99999/path", ORIGIN, ORIGIN + "/",
    "https://attacker.example/path", ORIGIN + "/path%", ORIGIN + "/path/../path",
)


def hashes(right: str) -> st.SearchStrategy[Any]:
    return near(right, right.upper(), right + "=", right[:-1], token_hash("other"), "", 1, [right])


# The fields a mutation may touch; each is a (token, member) pair.
WIT_FIELDS = [("wit-header", k) for k in WIT_HEADER] + [
    ("wit", k) for k in ("sub", "exp", "nbf", "iat", "iss", "jti", "cnf", "cnf.jwk", "unknown")
]
WPT_FIELDS = [("wpt-header", k) for k in WPT_HEADER] + [
    ("wpt", k) for k in ("aud", "exp", "nbf", "jti", "wth", "ath", "tth", "oth", "unknown")
]
JWK_MEMBERS = {
    "kty": near("OKP", "EC", "RSA", "oct", "okp"),
    "crv": near("Ed25519", "Ed448", "X25519", "P-256", "ed25519"),
    "x": near(b64(bytes(32)), b64(bytes(31)), b64(b"\xff" * 32), "", "AAAA="),
    "y": near(b64(bytes(32))),
    "alg": ALGS,
    "d": near(b64(bytes(32))),
    "use": near("sig", "enc", "wit-svid"),
    "key_ops": near(["verify"], ["sign"], [], "verify"),
    "kid": JSON,
}


@dataclass
class Request:
    profile: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    mutations: list[str] = field(default_factory=list)
    must_refuse: list[str] = field(default_factory=list)


@st.composite
def requests(draw: st.DrawFn, profile: str) -> Request:
    t = target(profile)
    world = t.world
    request = Request(profile)
    note = request.mutations.append

    # The other tokens on the request, bound or not; the first values are plain and valid.
    plain_bearers = [None, "Bearer at-1", "bearer  at-1", "Bearer at-1 "]
    odd_bearers = ["Bearer\tat-1", "Basic dTpw", "DPoP at-1", "Digest a=1, b=2", "Bearer", "Bearer at,1", "at-1"]
    bearer = draw(st.sampled_from(plain_bearers + odd_bearers)) if profile == "wpt-01" else None
    txn = draw(st.sampled_from([None, "txn-1", " txn-1\t", "t" * 9000, "txn,1"]))
    session = draw(st.sampled_from([None, "s-1", "  s-1 ", "s,1"]))
    if bearer not in plain_bearers:
        note(f"authorization {bearer!r}")
    if txn == "txn,1" or session == "s,1":
        note("comma in a token")

    # The WIT: claims and header from the valid one, then near misses.
    wit_claims: dict[str, Any] = json.loads(unb64(world.wit.split(".")[1]))
    wit_header: dict[str, Any] = {"alg": "ES256", "typ": "wit+jwt", "kid": world.issuer.kid}
    for part, member in draw(st.sets(st.sampled_from(WIT_FIELDS), max_size=3)):
        note(f"{part}.{member}")
        if member == "cnf.jwk":
            cnf = wit_claims.get("cnf")
            jwk = dict(cnf["jwk"]) if isinstance(cnf, dict) and isinstance(cnf.get("jwk"), dict) else {}
            name = draw(st.sampled_from(sorted(JWK_MEMBERS)))
            value = draw(st.one_of(st.just(DELETE), JWK_MEMBERS[name]))
            jwk.pop(name, None) if value is DELETE else jwk.__setitem__(name, value)
            wit_claims["cnf"] = {"jwk": jwk}
            continue
        strategy = {"sub": IDENTIFIERS, "exp": NUMBERS, "nbf": NUMBERS, "iat": NUMBERS}.get(member, JSON)
        if part == "wit-header":
            strategy = WIT_HEADER[member]
        value = draw(st.one_of(st.just(DELETE), strategy))
        obj = wit_header if part == "wit-header" else wit_claims
        if value is DELETE:
            obj.pop(member, None)
        else:
            obj[member] = value
        if part == "wit" and member == "exp" and isinstance(value, int | float) and not isinstance(value, bool) \
                and value <= NOW:
            request.must_refuse.append("wit expired")
        if part == "wit-header" and member == "alg" and obj.get("alg") != "ES256":
            request.must_refuse.append("wit alg")
    issuer_key = world.issuer.key
    if draw(st.integers(0, 9)) == 0:
        issuer_key = t.wrong_issuer
        request.must_refuse.append("wit signed by a key that is not the anchor")
        note("wit-signer")
    wit = sign_bytes(issuer_key, jbytes(wit_header), jbytes(wit_claims), "ES256")

    # The WPT: what a correct client would send for this request, then near misses.
    wpt_claims: dict[str, Any] = {"aud": TARGET, "exp": int(NOW + 60), "jti": secrets.token_hex(16), "wth": token_hash(wit)}
    bearer_token = None
    if bearer is not None and bearer.lower().startswith(("bearer ", "dpop ")):
        bearer_token = bearer.partition(" ")[2].strip(" \t")
    unbound = draw(st.sampled_from([None] * 5 + ["ath", "tth", "oth"]))
    if bearer_token is not None and unbound != "ath":
        wpt_claims["ath"] = token_hash(bearer_token)
    elif bearer is not None and bearer.lower().startswith("bearer "):
        note("bearer not bound")
        request.must_refuse.append("bearer token not bound")
    if txn is not None:
        if unbound != "tth":
            wpt_claims["tth"] = token_hash(txn.strip(" \t"))
        else:
            note("txn not bound")
            request.must_refuse.append("txn token not bound")
    if session is not None:
        if unbound != "oth":
            wpt_claims["oth"] = {OTH: token_hash(session.strip(" \t"))}
        else:
            note("oth not bound")
            request.must_refuse.append("oth header not bound")
    wpt_header: dict[str, Any] = {"alg": "Ed25519", "typ": "wpt+jwt"}
    right = {"wth": hashes(token_hash(wit)), "ath": hashes(token_hash(bearer_token or "at-1")),
             "tth": hashes(token_hash((txn or "txn-1").strip(" \t")))}
    for part, member in draw(st.sets(st.sampled_from(WPT_FIELDS), max_size=3)):
        note(f"{part}.{member}")
        if part == "wpt-header":
            strategy = WPT_HEADER[member]
        else:
            strategy = {
                "aud": AUDIENCES, "exp": NUMBERS, "nbf": NUMBERS, **right,
                "oth": near({OTH: token_hash("s-1")}, {}, {OTH.upper(): token_hash("s-1")}, {"x-other": token_hash("s-1")},
                            {OTH: token_hash("s-1"), "x-other": "h"}),
                "jti": near("", "a", "j" * 5000, 1, ["a"]),
            }.get(member, JSON)
        value = draw(st.one_of(st.just(DELETE), strategy))
        obj = wpt_header if part == "wpt-header" else wpt_claims
        before = obj.get(member, DELETE)
        if value is DELETE:
            obj.pop(member, None)
        else:
            obj[member] = value
        if part == "wpt" and member == "wth" and obj.get("wth") != before:
            request.must_refuse.append("wth changed")
        if part == "wpt" and member == "exp" and isinstance(value, int | float) and not isinstance(value, bool) \
                and value <= NOW:
            request.must_refuse.append("wpt expired")
        if part == "wpt-header" and member == "alg" and obj.get("alg") != "Ed25519":
            request.must_refuse.append("wpt alg")
    wpt_key = world.key
    if draw(st.integers(0, 9)) == 0:
        wpt_key = t.wrong_key
        request.must_refuse.append("wpt not signed by the cnf key")
        note("wpt-signer")
    wpt = sign_bytes(wpt_key, jbytes(wpt_header), jbytes(wpt_claims), "Ed25519")

    # Byte edits of the compact serializations.
    def edit(token: str, which: str) -> str:
        for index, char in draw(st.lists(st.tuples(st.integers(0, len(token)), st.sampled_from(
                ["", ".", "A", "-", "_", "=", "+", "/", " ", "\t", ",", "é", "\x00", "%"])), max_size=2)):
            note(f"{which}-bytes")
            edited = token[:index] + char + token[index + 1:]
            if edited.strip(" \t") != token:
                request.must_refuse.append(f"{which} bytes changed")
            token = edited
        return token

    wit, wpt = edit(wit, "wit"), edit(wpt, "wpt")

    # The header fields.
    def named(name: str) -> bytes:
        return draw(st.sampled_from([name, name.upper(), name.title()])).encode()

    fields: list[tuple[bytes, bytes]] = [(b"host", b"workload.example.com")]
    shape = draw(st.sampled_from(["one"] * 6 + ["absent", "twice", "comma", "padded"]))
    if shape != "one":
        note(f"wit-field-{shape}")
        if shape in ("absent", "twice", "comma"):
            request.must_refuse.append(f"wit field {shape}")
    wit_b = wit.encode("utf-8")
    if shape == "one":
        fields.append((named("workload-identity-token"), wit_b))
    elif shape == "twice":
        fields += [(named("workload-identity-token"), wit_b)] * 2
    elif shape == "comma":
        fields.append((named("workload-identity-token"), wit_b + b", " + wit_b))
    elif shape == "padded":
        fields.append((named("workload-identity-token"), b" \t" + wit_b + b"  "))
    wpt_b = wpt.encode("utf-8")
    if profile == "wpt-02":
        scheme = draw(st.sampled_from(["WPT "] * 6 + ["wpt ", "WPT   ", "WPT\t", "Bearer ", "WPT", "WPT ,"]))
        if scheme != "WPT ":
            note(f"scheme {scheme!r}")
            if scheme.strip().lower() != "wpt" or scheme == "WPT ,":
                request.must_refuse.append("not a WPT credential")
        fields.append((named("authorization"), scheme.encode() + wpt_b))
    else:
        wpt_shape = draw(st.sampled_from(["one"] * 6 + ["absent", "twice", "comma"]))
        if wpt_shape != "one":
            note(f"wpt-field-{wpt_shape}")
            request.must_refuse.append(f"wpt field {wpt_shape}")
        if wpt_shape in ("one", "twice"):
            fields += [(named("workload-proof-token"), wpt_b)] * (2 if wpt_shape == "twice" else 1)
        elif wpt_shape == "comma":
            fields.append((named("workload-proof-token"), wpt_b + b"," + wpt_b))
        if bearer is not None:
            fields.append((named("authorization"), bearer.encode()))
    if txn is not None:
        fields.append((named("txn-token"), txn.encode()))
    if session is not None:
        fields.append((named(OTH), session.encode()))
    if draw(st.integers(0, 7)) == 0:
        name = draw(st.sampled_from(["workload-identity-token", "workload-proof-token", "authorization", "txn-token", OTH,
                                     "x-forwarded-host", "host"]))
        note(f"extra {name}")
        fields.append((name.encode(), draw(st.binary(max_size=64))))
        if name in ("workload-identity-token",) or (name == "workload-proof-token" and profile == "wpt-01"):
            request.must_refuse.append(f"a second {name}")
    request.headers = draw(st.permutations(fields))
    return request


# --- the properties ----------------------------------------------------------------------------------


def send(profile: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes], bytes, list[logging.LogRecord]]:
    t = target(profile)
    with captured_logs() as records:
        status, response_headers, body = t.loop.run_until_complete(asgi_call(t.app, headers))
    return status, response_headers, body, records


def check(profile: str, headers: list[tuple[bytes, bytes]], status: int, response_headers: dict[bytes, bytes], body: bytes,
          records: list[logging.LogRecord]) -> str:
    """The common properties; returns the problem code, or "accepted"."""
    assert status != 500, body
    assert not any(r.levelno >= logging.ERROR for r in records), [r.getMessage() for r in records]
    text = body.decode("latin-1")
    logged = "\n".join(logging.Formatter("%(message)s").format(r) for r in records)
    for secret in secrets_in(headers):
        assert secret not in text and secret not in logged
    if status == 200:
        return "accepted"
    assert response_headers[b"content-type"] == b"application/problem+json"
    problem = json.loads(body)
    assert problem["code"] in CATALOG, problem
    assert status == problem["status"] == status_for(CATALOG[problem["code"]][0], profile)  # type: ignore[arg-type]
    assert (status == 401) == (response_headers.get(b"www-authenticate") == b"WPT")
    return str(problem["code"])


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_requests_end_in_success_or_a_documented_problem(profile: str, data: st.DataObject) -> None:
    request = data.draw(requests(profile))
    status, response_headers, body, records = send(profile, request.headers)
    outcome = check(profile, request.headers, status, response_headers, body, records)
    if request.must_refuse:
        assert outcome != "accepted", request.must_refuse
    if not request.mutations:
        assert outcome == "accepted", (outcome, request.headers)


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
@given(which=st.sampled_from(["wit", "wpt"]), claim=st.sampled_from(["exp", "nbf"]), value=NUMBERS)
def test_any_number_in_exp_or_nbf_ends_in_success_or_a_documented_problem(
    profile: str, which: str, claim: str, value: Any
) -> None:
    t = target(profile)
    world = t.world
    if which == "wit":
        claims = {**json.loads(unb64(world.wit.split(".")[1])), claim: value}
        head = {"alg": "ES256", "typ": "wit+jwt", "kid": world.issuer.kid}
        wit = sign_bytes(world.issuer.key, jbytes(head), jbytes(claims))
        wpt = world.wpt(wit=wit)
    else:
        wit = world.wit
        claims = {**json.loads(unb64(world.wpt().split(".")[1])), claim: value}
        wpt = sign_bytes(world.key, jbytes({"alg": "Ed25519", "typ": "wpt+jwt"}), jbytes(claims))
    headers = world.headers(wpt, wit)
    status, response_headers, body, records = send(profile, headers)
    outcome = check(profile, headers, status, response_headers, body, records)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if claim == "exp" and (not numeric or value <= NOW or value != value):
        assert outcome != "accepted"


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.tuples(
            st.sampled_from([b"workload-identity-token", b"workload-proof-token", b"authorization", b"txn-token",
                             OTH.encode(), b"WORKLOAD-IDENTITY-TOKEN"]),
            st.one_of(st.binary(max_size=300), st.text(max_size=100).map(lambda s: s.encode("utf-8")),
                      st.sampled_from([b"WPT ", b"Bearer ", b"eyJ.eyJ.x", b"..", b" ", b"\xff", b"a" * 9000])),
        ),
        max_size=5,
    )
)
def test_random_header_bytes_end_in_a_documented_problem(profile: str, values: list[tuple[bytes, bytes]]) -> None:
    t = target(profile)
    headers = [(b"host", b"workload.example.com")] + values
    status, response_headers, body, records = send(profile, headers)
    assert check(profile, headers, status, response_headers, body, records) != "accepted"
    del t


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    wit_edit=st.tuples(st.integers(0, 2), st.text(max_size=8)),
    wpt_edit=st.tuples(st.integers(0, 2), st.text(max_size=8)),
)
def test_str_headers_with_any_text_only_raise_verification_errors(
    profile: str, wit_edit: tuple[int, str], wpt_edit: tuple[int, str]
) -> None:
    # The Verifier also takes str pairs: any Unicode in them ends in a problem, not an exception.
    t = target(profile)
    world = t.world

    def spliced(token: str, where: tuple[int, str]) -> str:
        parts = token.split(".")
        parts[where[0]] = parts[where[0]][:10] + where[1] + parts[where[0]][10:]
        return ".".join(parts)

    wit, wpt = spliced(world.wit, wit_edit), spliced(world.wpt(), wpt_edit)
    name, value = ("authorization", f"WPT {wpt}") if profile == "wpt-02" else ("workload-proof-token", wpt)
    headers = [("workload-identity-token", wit), (name, value)]
    try:
        t.loop.run_until_complete(world.verifier.verify(headers, path="/path"))
    except VerificationError as error:
        assert error.problem.code in CATALOG
        assert wit[-30:] not in error.problem.detail and wpt[-30:] not in error.problem.detail
    else:
        assert wit_edit[1] == wpt_edit[1] == "", "an edited token was accepted"
