"""Every WPT rule under both profiles: structure, alg, signature, typ, aud, exp, wth,
ath/tth/oth, and the replay check."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from wimse_wpt import (
    DevIssuer,
    MemoryReplayCache,
    ReplayCacheFull,
    ReplayStoreUnavailable,
    SigningKey,
    VerificationError,
    Verifier,
    mint_wpt,
)
from wimse_wpt.replay import replay_key
from wimse_wpt.verifier import VerifiedWorkload

from .conftest import IDENTIFIER, NOW, ORIGIN, TARGET, World, sign_raw


def claims_of(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


# --- presence and structure ---------------------------------------------------------------


async def test_missing_wpt(world: World) -> None:
    headers = [h for h in world.headers() if h[0] != b"workload-proof-token"]
    problem = await world.reject(headers)
    assert (problem.code, problem.status) == ("wpt-missing", 400)


async def test_two_wpt_fields_or_comma_joined(world: World) -> None:
    twice = world.headers() + [(b"workload-proof-token", world.wpt().encode())]
    assert (await world.reject(twice)).code == "wpt-multiple"
    assert (await world.reject(world.headers(f"{world.wpt()},{world.wpt()}"))).code == "wpt-multiple"


async def test_oversized_wpt(world: World) -> None:
    assert (await world.reject(world.headers("x" * 9000))).code == "wpt-too-large"


@pytest.mark.parametrize("bad", ["abc", "a.b", "a.b.c.d", "e30.e30.", "e30=.e30.AA", "e30 .e30.AA", "!!.e30.AA"])
async def test_malformed_wpt(world: World, bad: str) -> None:
    assert (await world.reject(world.headers(bad))).code == "wpt-malformed"


async def test_wpt_claims_must_be_a_json_object(world: World) -> None:
    for payload in ([1, 2], "text", None):
        token = sign_raw(world.key, {"typ": "wpt+jwt"}, {})  # valid structure...
        head, _, sig = token.split(".")
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        assert (await world.reject(world.headers(f"{head}.{body}.{sig}"))).code == "wpt-malformed"


async def test_wpt_typ_must_be_wpt_jwt(world: World) -> None:
    for typ in ("jwt", "wit+jwt", None, "dpop+jwt"):
        assert (await world.reject(world.headers(world.wpt(header={"typ": typ})))).code == "wpt-type"
    assert (await world.verify(world.headers(world.wpt(header={"typ": "application/WPT+JWT"})))).identifier


async def test_wpt_with_crit_rejected(world: World) -> None:
    claims = claims_of(world.wpt())
    token = sign_raw(world.key, {"typ": "wpt+jwt", "crit": ["x-ext"], "x-ext": 1}, claims)
    assert (await world.reject(world.headers(token))).code == "wpt-crit"


# --- alg and signature ---------------------------------------------------------------------


async def test_alg_must_string_equal_the_confirmation_keys_alg() -> None:
    # "EdDSA" and "Ed25519" name the same signature over the same key, yet differ as strings.
    world = World("ES256", "EdDSA")
    as_ed25519 = SigningKey(world.key.key, "Ed25519")
    assert (await world.reject(world.headers(world.wpt(key=as_ed25519)))).code == "wpt-alg"
    world = World("ES256", "Ed25519")
    as_eddsa = SigningKey(world.key.key, "EdDSA")
    assert (await world.reject(world.headers(world.wpt(key=as_eddsa)))).code == "wpt-alg"


async def test_wpt_signed_by_another_key_rejected(world: World) -> None:
    other = SigningKey.generate(world.key.alg)
    assert (await world.reject(world.headers(world.wpt(key=other)))).code == "wpt-signature"


async def test_wpt_signature_tampered_rejected(world: World) -> None:
    head, body, sig = world.wpt().split(".")
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    assert (await world.reject(world.headers(f"{head}.{body}.{flipped}"))).code == "wpt-signature"


async def test_key_in_the_wpt_header_is_never_used(world: World) -> None:
    attacker = SigningKey.generate(world.key.alg)
    claims = claims_of(world.wpt())
    token = sign_raw(attacker, {"typ": "wpt+jwt", "jwk": attacker.public_jwk(), "x5c": ["AAAA"]}, claims)
    assert (await world.reject(world.headers(token))).code == "wpt-signature"


# --- aud -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        "https://workload.example.com/path",
        "https://workload.example.com/path?q=1",  # query ignored
        "https://workload.example.com/path#frag",  # fragment ignored
        "HTTPS://WORKLOAD.EXAMPLE.COM/path",  # scheme and host case
        "https://workload.example.com:443/path",  # default port
        "https://workload.example.com/%70ath",  # percent-encoded unreserved character
    ],
)
async def test_aud_matches_target_uri_after_normalization(world: World, aud: str) -> None:
    assert (await world.verify(world.headers(world.wpt(aud=aud)))).identifier == IDENTIFIER


@pytest.mark.parametrize(
    "aud",
    [
        "https://workload.example.com/Path",  # path case is significant
        "https://workload.example.com/path/",  # trailing slash is significant
        "https://workload.example.com/other",
        "http://workload.example.com/path",  # scheme
        "https://workload.example.com:8443/path",  # port
        "https://evil.example/path",
        "https://user@workload.example.com/path",
        "/path",
        "",
    ],
)
async def test_aud_not_matching_rejected(world: World, aud: str) -> None:
    assert (await world.reject(world.headers(world.wpt(aud=aud)))).code == "wpt-audience"


async def test_aud_is_never_built_from_host_or_forwarded_headers(world: World) -> None:
    token = world.wpt(aud="https://evil.example/path")
    headers = [h for h in world.headers(token) if h[0] != b"host"] + [
        (b"host", b"evil.example"),
        (b"x-forwarded-host", b"evil.example"),
        (b"x-forwarded-proto", b"https"),
        (b"forwarded", b"host=evil.example;proto=https"),
    ]
    assert (await world.reject(headers)).code == "wpt-audience"


# Reserved characters percent-encoded are different data (RFC 3986 2.2, 6.2.2.2): never decoded.
RESERVED_PAIRS = [
    ("/files/a/b", "/files/a%2Fb"),
    ("/files/a/b", "/files/a%2fb"),
    ("/files/a%3Fb", "/files/a"),  # an aud with a real "?" is /files/a plus a query
    ("/files/a%2541", "/files/aA"),  # %25 is "%": decoding twice would give %41, then "A"
    ("/files/a%2541", "/files/a%41"),
    ("/files/a%23b", "/files/a"),  # "#" starts a fragment
]


@pytest.mark.parametrize("aud_path,request_path", RESERVED_PAIRS + [(b, a) for a, b in RESERVED_PAIRS], ids=str)
async def test_reserved_percent_encodings_are_never_decoded(world: World, aud_path: str, request_path: str) -> None:
    token = world.wpt(aud=ORIGIN + aud_path)
    assert (await world.reject(world.headers(token), path=request_path)).code == "wpt-audience"


@pytest.mark.parametrize(
    "aud_path,request_path",
    [
        ("/files/a%2Fb", "/files/a%2fb"),
        ("/files/a%2fb", "/files/a%2Fb"),
        ("/files/a%2541", "/files/a%2541"),
        ("/files/%61", "/files/a"),
    ],
    ids=["hex-case-1", "hex-case-2", "same-escape", "unreserved-decoded"],
)
async def test_percent_encodings_compare_after_normalization(world: World, aud_path: str, request_path: str) -> None:
    token = world.wpt(aud=ORIGIN + aud_path)
    assert (await world.verify(world.headers(token), path=request_path)).identifier == IDENTIFIER


async def test_aud_as_a_one_element_array_is_the_same_audience(world: World) -> None:
    # RFC 7519 4.1.3: aud may be an array; a proof is bound to one target, so one element.
    assert await world.verify(world.headers(world.wpt(extra_claims={"aud": [TARGET]})))
    assert await world.verify(world.headers(world.wpt(extra_claims={"aud": ["HTTPS://Workload.example.com:443/path"]})))
    wrong = world.wpt(extra_claims={"aud": [ORIGIN + "/other"]})
    assert (await world.reject(world.headers(wrong))).code == "wpt-audience"


@pytest.mark.parametrize(
    "aud",
    [[TARGET, TARGET], [TARGET, ORIGIN + "/other"], [ORIGIN + "/other", TARGET], [], [7], [[TARGET]], 7, None, {"a": TARGET}],
    ids=["same-twice", "target-first", "target-second", "empty", "number", "nested", "int", "null", "object"],
)
async def test_aud_of_several_elements_or_not_strings_refused(world: World, aud: Any) -> None:
    claims = claims_of(world.wpt())
    claims["aud"] = aud
    token = sign_raw(world.key, {"typ": "wpt+jwt"}, claims)
    assert (await world.reject(world.headers(token))).code == "wpt-claim-invalid"


async def test_aud_includes_root_path(world: World) -> None:
    token = world.wpt(aud=ORIGIN + "/api/path")
    # uvicorn puts root_path inside path; other servers do not: both give the same target.
    assert (await world.verify(world.headers(token), path="/api/path", root_path="/api")).identifier
    token = world.wpt(aud=ORIGIN + "/api/path")
    assert (await world.verify(world.headers(token), path="/path", root_path="/api")).identifier
    assert (await world.reject(world.headers(world.wpt()), path="/path", root_path="/api")).code == "wpt-audience"


async def test_deployment_and_route_audience_aliases() -> None:
    world = World(audiences=["https://alias.example/"])
    assert (await world.verify(world.headers(world.wpt(aud="https://ALIAS.example/")))).identifier
    route = frozenset(Verifier.check_audiences(["https://route.example/x"]))
    assert (await world.verify(world.headers(world.wpt(aud="https://route.example/x")), audiences=route)).identifier
    assert (await world.reject(world.headers(world.wpt(aud="https://route.example/x")))).code == "wpt-audience"


async def test_several_origins_each_accepted() -> None:
    world = World()
    world.verifier = Verifier(
        {"example.com": world.issuer.jwks}, [ORIGIN, "http://127.0.0.1:8000"], clock=lambda: world.now
    )
    assert await world.verify(world.headers(world.wpt(aud="http://127.0.0.1:8000/path")))
    assert await world.verify(world.headers(world.wpt(aud=TARGET)))


# --- exp, jti, wth -------------------------------------------------------------------------


async def test_exp_present_numeric_not_passed_not_too_far(world: World) -> None:
    for bad in (None, "1800000060", True, [1]):
        token = world.wpt(extra_claims={"exp": bad})
        assert (await world.reject(world.headers(token))).code == "wpt-claim-invalid", bad
    assert (await world.reject(world.headers(world.wpt(now=NOW - 61)))).code == "wpt-expired"
    at_exp = world.wpt(lifetime=0)
    assert (await world.reject(world.headers(at_exp))).code == "wpt-expired"
    far = world.wpt(lifetime=301)
    assert (await world.reject(world.headers(far))).code == "wpt-lifetime"
    assert await world.verify(world.headers(world.wpt(lifetime=300)))


async def test_leeway_tolerates_small_skew_only() -> None:
    world = World(leeway=5)
    assert await world.verify(world.headers(world.wpt(now=NOW - 62, lifetime=60)))  # 2 s past exp
    assert (await world.reject(world.headers(world.wpt(now=NOW - 70, lifetime=60)))).code == "wpt-expired"


async def test_jti_required(world: World) -> None:
    for bad in (None, "", 7):
        token = world.wpt(extra_claims={"jti": bad}) if bad is not None else world.wpt(extra_claims={"jti": None})
        assert (await world.reject(world.headers(token))).code == "wpt-claim-invalid"


async def test_wth_binds_the_wit_as_sent(world: World) -> None:
    other_wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW)
    token = world.wpt(wit=other_wit)  # a proof for another WIT of the same key
    assert (await world.reject(world.headers(token))).code == "wpt-wth"
    missing = world.wpt(extra_claims={"wth": None})
    assert (await world.reject(world.headers(missing))).code == "wpt-wth"


# --- ath, tth, oth -------------------------------------------------------------------------


async def test_ath_binds_the_bearer_token(world: World) -> None:
    bearer = ("authorization", "Bearer at-123")
    ok = await world.verify(world.headers(world.wpt(bearer="at-123"), None, bearer))
    assert ok.bound_tokens == {"authorization"}
    assert (await world.reject(world.headers(world.wpt(), None, bearer))).code == "ath-missing"
    assert (await world.reject(world.headers(world.wpt(bearer="other"), None, bearer))).code == "ath-mismatch"
    assert (await world.reject(world.headers(world.wpt(bearer="at-123")))).code == "ath-unexpected"
    two = world.headers(world.wpt(bearer="at-123"), None, bearer, bearer)
    assert (await world.reject(two)).code == "authorization-multiple"


async def test_tth_binds_the_txn_token(world: World) -> None:
    txn = ("txn-token", "eyJ.txn.token")
    ok = await world.verify(world.headers(world.wpt(txn_token="eyJ.txn.token"), None, txn))
    assert ok.bound_tokens == {"txn-token"}
    assert (await world.reject(world.headers(world.wpt(), None, txn))).code == "tth-missing"
    assert (await world.reject(world.headers(world.wpt(txn_token="x"), None, txn))).code == "tth-mismatch"
    assert (await world.reject(world.headers(world.wpt(txn_token="eyJ.txn.token")))).code == "tth-unexpected"
    two = world.headers(world.wpt(txn_token="eyJ.txn.token"), None, txn, txn)
    assert (await world.reject(two)).code == "txn-token-multiple"


async def test_oth_binds_configured_headers_only() -> None:
    world = World(oth_headers=["X-Custom-Token", "x-user"])
    custom = ("x-custom-token", "custom-1")
    ok = await world.verify(world.headers(world.wpt(other_tokens={"X-Custom-Token": "custom-1"}), None, custom))
    assert ok.bound_tokens == {"x-custom-token"}
    assert (await world.reject(world.headers(world.wpt(), None, custom))).code == "oth-missing"
    wrong = world.wpt(other_tokens={"x-custom-token": "custom-2"})
    assert (await world.reject(world.headers(wrong, None, custom))).code == "oth-mismatch"
    absent = world.wpt(other_tokens={"x-user": "u"})
    assert (await world.reject(world.headers(absent, None, custom))).code == "oth-missing"
    assert (await world.reject(world.headers(absent))).code == "oth-unexpected"
    unknown = world.wpt(other_tokens={"x-custom-token": "custom-1", "x-unknown": "v"})
    assert (await world.reject(world.headers(unknown, None, custom, ("x-unknown", "v")))).code == "oth-unknown"
    twice = world.headers(world.wpt(other_tokens={"x-custom-token": "custom-1"}), None, custom, custom)
    assert (await world.reject(twice)).code == "oth-header-multiple"
    for bad in ([], {}, "x"):
        token = world.wpt(extra_claims={"oth": bad})
        assert (await world.reject(world.headers(token))).code == "wpt-claim-invalid"


async def test_bound_token_values_are_hashed_without_surrounding_spaces() -> None:
    # Servers strip optional whitespace; a caller passing raw str headers may not.
    world = World(oth_headers=["x-custom-token"])
    token = world.wpt(bearer="at-1", txn_token="txn.1", other_tokens={"x-custom-token": "custom"})
    headers = [(k.decode(), v.decode()) for k, v in world.headers(token)] + [
        ("Authorization", "Bearer at-1  "),
        ("Txn-Token", " txn.1\t"),
        ("X-Custom-Token", "  custom "),
    ]
    workload = await world.verify(headers)
    assert workload.bound_tokens == {"authorization", "txn-token", "x-custom-token"}


async def test_oth_entry_not_configured_is_rejected(world: World) -> None:
    token = world.wpt(other_tokens={"x-custom-token": "v"})
    assert (await world.reject(world.headers(token, None, ("x-custom-token", "v")))).code == "oth-unknown"


# --- wpt-02 --------------------------------------------------------------------------------


async def test_wpt_02_authorization_scheme() -> None:
    world = World(profile="wpt-02")
    assert (await world.verify()).identifier == IDENTIFIER
    base = [h for h in world.headers() if h[0] != b"authorization"]
    lower = base + [(b"authorization", b"wpt " + world.wpt().encode())]
    assert (await world.verify(lower)).identifier == IDENTIFIER
    problem = await world.reject(base)
    assert (problem.code, problem.status) == ("wpt-missing", 401)
    bearer = base + [(b"authorization", b"Bearer " + world.wpt().encode())]
    assert (await world.reject(bearer)).code == "wpt-missing"
    legacy = base + [(b"workload-proof-token", world.wpt().encode())]
    assert (await world.reject(legacy)).code == "wpt-missing"
    twice = world.headers() + [(b"authorization", b"WPT " + world.wpt().encode())]
    assert (await world.reject(twice)).code == "authorization-multiple"
    # Comma-joined credentials are not one credential (see test_authorization.py).
    joined = base + [(b"authorization", f"WPT {world.wpt()}, Bearer x".encode())]
    assert (await world.reject(joined)).code == "authorization-malformed"
    assert (await world.reject(base + [(b"authorization", b"WPT ")])).code == "authorization-malformed"


async def test_wpt_02_ignores_an_ath_claim() -> None:
    # wpt-02 section 2.3: ath is no longer defined, so it is an unknown claim, to be ignored.
    world = World(profile="wpt-02")
    for ath in ("anything", 7, None, {"x": 1}):
        claims = claims_of(world.wpt())
        claims["ath"] = ath
        workload = await world.verify(world.headers(sign_raw(world.key, {"typ": "wpt+jwt"}, claims)))
        assert workload.bound_tokens == frozenset()
        assert workload.wpt_claims["ath"] == ath


async def test_wpt_01_refuses_an_ath_without_an_access_token(world: World) -> None:
    assert (await world.reject(world.headers(world.wpt(bearer="anything")))).code == "ath-unexpected"


UNKNOWN_CLAIMS: dict[str, Any] = {
    "x-unknown": {"nested": [1, {"deep": True}]},
    "iat": "not even a number",
    "sid": 10**400,
    "cnf2": None,
    "iss": 42,
    "sub": 42,
}


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
async def test_unknown_claims_in_the_wpt_are_ignored(profile: str) -> None:
    world = World(profile=profile)
    workload = await world.verify(world.headers(world.wpt(extra_claims=UNKNOWN_CLAIMS)))
    assert workload.wpt_claims["x-unknown"] == UNKNOWN_CLAIMS["x-unknown"]
    assert workload.identifier == IDENTIFIER  # a sub in the WPT names nobody


# --- replay --------------------------------------------------------------------------------


async def test_replay_rejected(world: World) -> None:
    headers = world.headers()
    await world.verify(headers)
    assert (await world.reject(headers)).code == "wpt-replayed"


async def test_refused_request_does_not_burn_its_jti(world: World) -> None:
    token = world.wpt()
    refused = world.headers(token, None, ("txn-token", "unbound"))
    assert (await world.reject(refused)).code == "tth-missing"
    assert (await world.verify(world.headers(token))).identifier == IDENTIFIER


async def test_replay_scoped_to_the_sender(world: World) -> None:
    await world.verify(world.headers(world.wpt(jti="same")))
    other_key = SigningKey.generate(world.key.alg)
    other_wit = world.issuer.issue_wit("wimse://example.com/another", other_key, now=NOW)
    token = world.wpt(wit=other_wit, key=other_key, jti="same")
    assert (await world.verify(world.headers(token, other_wit))).identifier == "wimse://example.com/another"
    assert (await world.reject(world.headers(world.wpt(jti="same")))).code == "wpt-replayed"


async def test_the_verifier_records_the_documented_replay_key() -> None:
    # A store shared by replicas of different versions must see the same keys: the verifier's
    # per-WIT prefix gives replay_key(workload, jti), for any jti (non-ASCII and lone surrogates too).
    seen: list[tuple[bytes, str]] = []

    class Recording:
        async def check_and_record(self, key: bytes, ttl: float, workload: str) -> bool:
            seen.append((key, workload))
            return True

    world = World(replay_cache=Recording())
    for jti in ("plain", "é-ü-\u2028", "\ud800lone", "x" * 300):
        await world.verify(world.headers(world.wpt(jti=jti)))
        assert seen[-1] == (replay_key(IDENTIFIER, jti), IDENTIFIER)


async def test_a_verified_workload_is_the_dataclass_its_constructor_makes(world: World) -> None:
    workload = await world.verify()
    rebuilt = VerifiedWorkload(
        workload.identifier, workload.trust_domain, workload.wit_claims, workload.wpt_claims, workload.bound_tokens
    )
    assert type(workload) is VerifiedWorkload and workload == rebuilt
    assert hash(workload.bound_tokens) == hash(rebuilt.bound_tokens)
    with pytest.raises(AttributeError):
        workload.identifier = "wimse://example.com/other"  # type: ignore[misc]


async def test_replay_entry_kept_until_exp_plus_three_leeways() -> None:
    # ttl = exp - now + 3 * leeway (see test_replay_holds_across_replicas_with_skewed_clocks).
    world = World(leeway=5)
    world.verifier.replay_cache = cache = MemoryReplayCache(timer=lambda: world.now)
    await world.verify(world.headers(world.wpt(jti="j", lifetime=10)))
    world.now += 24  # exp + 3 * leeway is NOW + 25: still there
    assert not cache.check_and_record_sync(replay_key(IDENTIFIER, "j"), 1, IDENTIFIER)
    world.now += 1  # then it goes
    assert cache.check_and_record_sync(replay_key(IDENTIFIER, "j"), 1, IDENTIFIER)


@pytest.mark.parametrize("skew", [2.0, 5.0], ids=["skew-2s", "skew-leeway"])
@pytest.mark.parametrize("recorded_before_exp", [0.5, 30.0], ids=["late", "early"])
async def test_replay_holds_across_replicas_with_skewed_clocks(skew: float, recorded_before_exp: float) -> None:
    """Issue 13, defect 4: two replicas share one store; A's clock is ahead, B's behind.

    B accepts the proof until its own clock reads exp + leeway, i.e. until true time
    exp + leeway + skew; the entry A recorded must still be there until then."""
    leeway = 5.0
    issuer = DevIssuer("example.com")
    key = SigningKey.generate("ES256")
    wit = issuer.issue_wit(IDENTIFIER, key, now=NOW)
    true_time = {"now": NOW}
    store = MemoryReplayCache(timer=lambda: true_time["now"])  # the store runs on true time
    options: dict[str, Any] = {"leeway": leeway, "replay_cache": store}
    replica_a = Verifier({"example.com": issuer.jwks}, [ORIGIN], clock=lambda: true_time["now"] + skew, **options)
    replica_b = Verifier({"example.com": issuer.jwks}, [ORIGIN], clock=lambda: true_time["now"] - skew, **options)
    proof = mint_wpt(key, wit, TARGET, now=NOW, lifetime=60)
    exp = NOW + 60
    headers = [(b"workload-identity-token", wit.encode()), (b"workload-proof-token", proof.encode())]

    true_time["now"] = exp - recorded_before_exp
    assert (await replica_a.verify(headers, path="/path")).identifier == IDENTIFIER
    # The last moment at which B would still accept the proof, were it not recorded:
    true_time["now"] = exp + leeway + skew - 0.001
    with pytest.raises(VerificationError) as caught:
        await replica_b.verify(headers, path="/path")
    assert caught.value.problem.code == "wpt-replayed"
    # And once B's clock has passed exp + leeway, it is refused as expired.
    true_time["now"] = exp + leeway + skew
    with pytest.raises(VerificationError) as caught:
        await replica_b.verify(headers, path="/path")
    assert caught.value.problem.code == "wpt-expired"


async def test_full_replay_cache_refuses_instead_of_forgetting() -> None:
    world = World()
    world.verifier.replay_cache = MemoryReplayCache(maxsize=2, max_per_workload=1, timer=lambda: world.now)
    other_key = SigningKey.generate(world.key.alg)
    other_wit = world.issuer.issue_wit("wimse://example.com/another", other_key, now=NOW)
    await world.verify(world.headers(world.wpt()))
    await world.verify(world.headers(world.wpt(wit=other_wit, key=other_key), other_wit))
    third_key = SigningKey.generate(world.key.alg)
    third_wit = world.issuer.issue_wit("wimse://example.com/third", third_key, now=NOW)
    problem = await world.reject(world.headers(world.wpt(wit=third_wit, key=third_key), third_wit))
    assert (problem.code, problem.status) == ("replay-cache-full", 503)
    world.now += 61  # the two entries expire: room again, but their proofs stay refused
    assert (await world.verify(world.headers(world.wpt()))).identifier


class BrokenStore:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def check_and_record(self, key: bytes, ttl: float, workload: str) -> bool:
        raise self.error


@pytest.mark.parametrize(
    ("error", "code"),
    [(ReplayStoreUnavailable("down"), "replay-store-unavailable"), (ReplayCacheFull(), "replay-cache-full")],
)
async def test_store_failures_fail_closed(error: Exception, code: str) -> None:
    world = World(replay_cache=BrokenStore(error))
    problem = await world.reject()
    assert (problem.code, problem.status) == (code, 503)
    world = World(profile="wpt-02", replay_cache=BrokenStore(error))
    assert (await world.reject()).status == 503


# --- problems ------------------------------------------------------------------------------


async def test_credential_failures_are_400_under_wpt_01_and_401_under_wpt_02() -> None:
    assert (await World().reject(World().headers())).status == 400
    world = World(profile="wpt-02")
    bad = world.headers(world.wpt(aud="https://evil.example/"))
    assert (await world.reject(bad)).status == 401


async def test_error_is_raised_with_the_problem() -> None:
    world = World()
    with pytest.raises(VerificationError) as caught:
        await world.verifier.verify([], path="/path")
    assert caught.value.problem.code == "wit-missing"
    assert caught.value.problem.to_dict() == {
        "type": "urn:wimse-wpt:problem:wit-missing",
        "title": "Workload identity token missing",
        "status": 400,
        "detail": caught.value.problem.detail,
        "code": "wit-missing",
    }


async def test_str_headers_accepted_as_well_as_bytes(world: World) -> None:
    headers = [(k.decode().title(), v.decode()) for k, v in world.headers()]
    assert (await world.verify(headers)).identifier == IDENTIFIER


async def test_non_latin1_header_values_are_refused_cleanly(world: World) -> None:
    headers = [(k.decode(), v.decode()) for k, v in world.headers()]
    headers = [(k, v + "\u2603" if k == "workload-proof-token" else v) for k, v in headers]
    assert (await world.reject(headers)).code == "wpt-malformed"


# --- numbers out of range and nbf (issue 13, defect 1 and the nbf survivors) ----------------

# Integers float() overflows on, and numbers outside [0, 2**53): no NumericDate of a real token.
OUT_OF_RANGE = {"1e400": 10**400, "-1e400": -(10**400), "1e20": 10**20, "2**53": 2**53, "-1": -1, "1e308": 1e308, "-0.5": -0.5}


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
@pytest.mark.parametrize("claim", ["exp", "nbf"])
@pytest.mark.parametrize("value", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
async def test_wpt_numbers_out_of_range_are_claim_invalid_not_exceptions(profile: str, claim: str, value: Any) -> None:
    world = World(profile=profile)
    token = world.wpt(extra_claims={claim: value})
    assert (await world.reject(world.headers(token))).code == "wpt-claim-invalid"


@pytest.mark.parametrize("bad", ["1800000000", None, True, [1], {"a": 1}], ids=repr)
async def test_wpt_nbf_must_be_a_number(world: World, bad: Any) -> None:
    claims = claims_of(world.wpt())
    claims["nbf"] = bad
    token = sign_raw(world.key, {"typ": "wpt+jwt"}, claims)
    assert (await world.reject(world.headers(token))).code == "wpt-claim-invalid"


async def test_wpt_nbf_in_the_future_refused_within_leeway_accepted() -> None:
    world = World(leeway=5)
    assert (await world.reject(world.headers(world.wpt(extra_claims={"nbf": NOW + 6})))).code == "wpt-claim-invalid"
    assert await world.verify(world.headers(world.wpt(extra_claims={"nbf": NOW + 5})))
    assert await world.verify(world.headers(world.wpt(extra_claims={"nbf": NOW - 30})))


async def test_wpt_expiring_while_a_slow_replay_store_answers_is_refused() -> None:
    world = World()

    class SlowStore:
        async def check_and_record(self, key: bytes, ttl: float, workload: str) -> bool:
            world.now += 3.0  # a store that took 3 s of the test's clock
            return True

    world.verifier.replay_cache = SlowStore()  # type: ignore[assignment]
    assert (await world.reject(world.headers(world.wpt(lifetime=2)))).code == "wpt-expired"
    assert await world.verify(world.headers(world.wpt(lifetime=4)))


@pytest.mark.parametrize("b64_value", [False, True])
async def test_b64_alone_in_the_wpt_header_is_refused(world: World, b64_value: bool) -> None:
    token = sign_raw(world.key, {"typ": "wpt+jwt", "b64": b64_value}, claims_of(world.wpt()))
    assert (await world.reject(world.headers(token))).code == "wpt-crit"


async def test_es256_wpt_signature_with_a_zero_byte_inserted_is_refused() -> None:
    world = World("Ed25519", "ES256")
    head, body, signature = world.wpt().split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    for forged in (raw[:32] + b"\x00" + raw[32:], b"\x00" + raw, raw + b"\x00"):
        token = f"{head}.{body}." + base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
        assert (await world.reject(world.headers(token))).code == "wpt-signature"
    assert await world.verify(world.headers(f"{head}.{body}.{signature}"))


async def test_a_cached_wpt_header_still_gets_every_structural_check(world: World) -> None:
    """The header of a WPT that passed is remembered; the next tokens with that header must
    still be three non-empty parts and within max_token_bytes."""
    assert await world.verify()  # the header is now cached
    head, body, signature = world.wpt().split(".")
    for bad in (f"{head}.{body}.", f"{head}..{signature}", f"{head}.{body}.{signature}.{signature}", f"{head}.{body}"):
        assert (await world.reject(world.headers(bad))).code == "wpt-malformed", bad
    big = world.wpt(extra_claims={"pad": "x" * 9000})  # validly signed, with the cached header
    assert big.split(".")[0] == head
    assert (await world.reject(world.headers(big))).code == "wpt-too-large"


async def test_a_cached_wpt_header_does_not_lift_the_size_cap_under_wpt_02() -> None:
    world = World(profile="wpt-02")
    assert await world.verify()
    big = world.wpt(extra_claims={"pad": "x" * 9000})
    problem = await world.reject(world.headers(big))
    # Refused by the field's cap before any parsing, and the detail names the limit to respect.
    assert (problem.code, problem.detail) == ("wpt-too-large", "The token exceeds 8192 bytes.")


def test_a_replay_store_of_the_old_two_argument_protocol_is_refused_at_configuration() -> None:
    """It would fail every check (closed, but for every request): say so when it is configured."""

    class OldStore:
        async def check_and_record(self, key: bytes, ttl: float) -> bool:
            return True

    with pytest.raises(ValueError, match="workload"):
        World(replay_cache=OldStore())


# --- errors that say what to fix (issue 10) ------------------------------------------------


async def test_wpt_audience_names_the_expected_target_and_logs_both_auds_escaped(world: World) -> None:
    sent = "https://evil.example/path\n\x1b[31mforged log line\u2028" + "x" * 500
    with pytest.raises(VerificationError) as caught:
        await world.verify(world.headers(world.wpt(aud=sent)))
    problem = caught.value.problem
    assert problem.code == "wpt-audience"
    # The detail says what to send: the target URI built from the configured origin.
    assert f"the target URI '{TARGET}'" in problem.detail
    assert "evil.example" not in problem.detail  # what the caller sent stays out of the response
    assert "log_context" not in json.dumps(problem.to_dict()) and "evil" not in json.dumps(problem.to_dict())
    # The log context: both auds, on one line, escaped, the received one truncated.
    context = problem.log_context
    assert context is not None and context.startswith(f"expected_aud='{TARGET}' received_aud='https://evil.example/path")
    assert "\n" not in context and "\x1b" not in context and "\u2028" not in context
    assert "\\n\\x1b[31mforged log line\\u2028" in context
    assert context.endswith("x'...") and len(context) < 300
    # Never a token: neither the WIT nor the WPT appears in it.
    for name, value in world.headers():
        if name != b"host":
            assert value.decode()[-40:] not in context


async def test_wpt_audience_with_several_origins_names_each() -> None:
    world = World()
    several = Verifier(
        {"example.com": world.issuer.jwks},
        [ORIGIN, "https://b.example", "https://c.example", "https://d.example"],
        clock=lambda: world.now,
    )
    with pytest.raises(VerificationError) as caught:
        await several.verify(world.headers(world.wpt(aud="https://evil.example/path")), path="/path")
    detail = caught.value.problem.detail
    assert f"one of the target URIs '{TARGET}', 'https://b.example/path', 'https://c.example/path', ..." in detail
    assert "https://d.example" not in detail


async def test_other_refusals_carry_no_log_context(world: World) -> None:
    problem = await world.reject(world.headers(world.wpt(jti="")))
    assert problem.code == "wpt-claim-invalid" and problem.log_context is None


async def test_a_wpt_02_proof_sent_to_a_wpt_01_service_is_told_which_profile_it_speaks() -> None:
    world = World(profile="wpt-01")
    base = [h for h in world.headers() if h[0] != b"workload-proof-token"]
    problem = await world.reject(base + [(b"authorization", b"WPT " + world.wpt().encode())])
    assert problem.code == "wpt-missing" and "speaks wpt-01" in problem.detail and "Workload-Proof-Token" in problem.detail
    # With no proof at all the detail stays the plain one.
    assert "speaks" not in (await world.reject(base)).detail
    assert "speaks" not in (await world.reject(base + [(b"authorization", b"Bearer abc")])).detail


async def test_a_wpt_01_proof_sent_to_a_wpt_02_service_is_told_which_profile_it_speaks() -> None:
    world = World(profile="wpt-02")
    base = [h for h in world.headers() if h[0] != b"authorization"]
    legacy = base + [(b"workload-proof-token", world.wpt().encode())]
    problem = await world.reject(legacy)
    assert (problem.code, problem.status) == ("wpt-missing", 401)
    assert "speaks wpt-02" in problem.detail and "Authorization: WPT" in problem.detail
    with_bearer = legacy + [(b"authorization", b"Bearer abc")]
    assert "speaks wpt-02" in (await world.reject(with_bearer)).detail
    assert "speaks" not in (await world.reject(base)).detail


async def test_a_refused_wpt_header_is_refused_alike_every_time(world: World) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": world.key.alg, "typ": "JWT"}).encode()).rstrip(b"=").decode()
    for _ in range(3):
        token = header + "." + world.wpt().split(".", 1)[1]
        assert (await world.reject(world.headers(token))).code == "wpt-type"


@pytest.mark.parametrize("field", ["workload-identity-token", "workload-proof-token"])
async def test_an_oversized_field_is_refused_for_its_size_before_it_is_read(world: World, field: str) -> None:
    # A comma at the end of an attacker-sized value: refused as too large, never scanned for it.
    headers = [(n, b"a" * 9000 + b",b" if n == field.encode() else v) for n, v in world.headers()]
    assert (await world.reject(headers)).code == ("wit" if field.startswith("workload-identity") else "wpt") + "-too-large"


async def test_a_wall_clock_stepped_back_cannot_outlive_a_replay_entry() -> None:
    """The TTL is computed on the verifier's clock, so the default cache keeps time on it too:
    on another clock (it was monotonic) an entry could expire while the proof, read on a wall
    clock stepped back, was still accepted (attack review h12)."""
    import time as real_time

    world = World()
    proof = world.wpt(lifetime=1)
    await world.verify(world.headers(proof))
    world.now = NOW - 30  # NTP steps the wall clock back 30 s
    real_time.sleep(1.2)  # and more than the entry's TTL passes for real
    assert (await world.reject(world.headers(proof))).code == "wpt-replayed"
