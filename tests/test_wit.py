"""Every WIT rule, accepted and rejected, with tokens minted by the package's dev issuer."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from wimse_wpt import DevIssuer, KeySet, SigningKey, StaticKeys, TrustAnchors
from wimse_wpt.tokens import sign_compact

from .conftest import IDENTIFIER, NOW, World, sign_raw


def b64(data: bytes | dict[str, Any]) -> str:
    if isinstance(data, dict):
        data = json.dumps(data).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_valid_wit_and_wpt_accepted(world: World) -> None:
    workload = await world.verify()
    assert workload.identifier == IDENTIFIER
    assert workload.trust_domain == "example.com"
    assert workload.wit_claims["sub"] == IDENTIFIER
    assert workload.wpt_claims["aud"] == "https://workload.example.com/path"
    assert workload.bound_tokens == frozenset()


async def test_missing_wit(world: World) -> None:
    headers = [h for h in world.headers() if h[0] != b"workload-identity-token"]
    assert (await world.reject(headers)).code == "wit-missing"


async def test_two_wit_fields_or_comma_joined_values(world: World) -> None:
    twice = world.headers() + [(b"workload-identity-token", world.wit.encode())]
    assert (await world.reject(twice)).code == "wit-multiple"
    joined = world.headers(None, f"{world.wit}, {world.wit}")
    assert (await world.reject(joined)).code == "wit-multiple"


async def test_oversized_wit_refused_before_parsing(world: World) -> None:
    huge = "a" * 9000 + "." + "b" * 10 + "." + "c" * 10
    assert (await world.reject(world.headers(world.wpt(wit=huge), huge))).code == "wit-too-large"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + ".x",  # four parts
        lambda t: t.rsplit(".", 1)[0],  # two parts
        lambda t: t.replace(".", "=.", 1),  # padding
        lambda t: t.replace(".", " .", 1),  # whitespace
        lambda t: "!" + t,  # not base64url
        lambda t: "e30." + t.split(".", 1)[1][:-1] + "+",  # "+" is base64, not base64url
    ],
    ids=["four-parts", "two-parts", "padding", "whitespace", "bad-char", "plus"],
)
async def test_malformed_wit(world: World, mangle: Any) -> None:
    bad = mangle(world.wit)
    assert (await world.reject(world.headers(world.wpt(wit=bad), bad))).code == "wit-malformed"


async def test_non_canonical_base64_tail_bits_rejected(world: World) -> None:
    head, body, sig = world.wit.split(".")
    # Flip the unused low bits of the last character: same bytes to a lax decoder.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    pad_bits = {2: 4, 3: 2}.get(len(sig) % 4, 0)
    assert pad_bits, "the signature length leaves spare bits"
    last = alphabet.index(sig[-1])
    tweaked = sig[:-1] + alphabet[last | 1]
    assert tweaked != sig
    bad = f"{head}.{body}.{tweaked}"
    assert (await world.reject(world.headers(world.wpt(wit=bad), bad))).code == "wit-malformed"


async def test_duplicate_json_member_names_rejected(world: World) -> None:
    head, body, sig = world.wit.split(".")
    claims = base64.urlsafe_b64decode(body + "==").decode()
    duplicated = claims[:-1] + ',"sub":"wimse://example.com/other"}'
    bad = f"{head}.{b64(duplicated.encode())}.{sig}"
    assert (await world.reject(world.headers(world.wpt(wit=bad), bad))).code == "wit-malformed"


@pytest.mark.parametrize("typ", ["jwt", "wpt+jwt", None, "application/wit+jwt; x=1"])
async def test_wit_type_must_be_wit_jwt(world: World, typ: str | None) -> None:
    wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, header={"typ": typ})
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-type"


@pytest.mark.parametrize("typ", ["application/wit+jwt", "WIT+JWT", "Application/Wit+Jwt"])
async def test_wit_type_compares_as_a_media_type(world: World, typ: str) -> None:
    wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, header={"typ": typ})
    assert (await world.verify(world.headers(world.wpt(wit=wit), wit))).identifier == IDENTIFIER


@pytest.mark.parametrize("alg", ["none", "HS256", "RS1"])
async def test_wit_alg_none_or_symmetric_rejected(world: World, alg: str) -> None:
    wit = world.wit.split(".")
    head = {"alg": alg, "typ": "wit+jwt", "kid": world.issuer.kid}
    bad = f"{b64(head)}.{wit[1]}.{wit[2]}"
    assert (await world.reject(world.headers(world.wpt(wit=bad), bad))).code == "wit-alg"


async def test_wit_alg_outside_the_configured_allow_list_rejected() -> None:
    issuer = DevIssuer("example.com", alg="ES384")
    with pytest.raises(ValueError, match="not an allowed"):
        World(anchors={"example.com": issuer.jwks}, algorithms=["ES256", "Ed25519"])
    # A WIT whose header names an alg outside the allow-list is refused before any key lookup.
    world = World("ES256", "Ed25519", algorithms=["ES256", "Ed25519"])
    head = {"alg": "ES384", "typ": "wit+jwt", "kid": world.issuer.kid}
    wit = b64(head) + world.wit[world.wit.index(".") :]
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-alg"


async def test_wit_with_crit_rejected(world: World) -> None:
    claims = json.loads(base64.urlsafe_b64decode(world.wit.split(".")[1] + "=="))
    header = {"typ": "wit+jwt", "kid": world.issuer.kid, "crit": ["x-ext"], "x-ext": 1}
    wit = sign_raw(world.issuer.key, header, claims)
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-crit"


@pytest.mark.parametrize(
    "sub",
    [
        None,
        42,
        "wimse://Example.com/specific-workload",  # trust domain case
        "WIMSE://example.com/specific-workload",  # scheme case
        "wimse://example.com/specific-workload/",  # trailing slash
        "wimse://example.com/specific%2Dworkload",  # percent-encoding
        "wimse://example.com/a/../specific-workload",  # dot segment
        "wimse://example.com//specific-workload",  # empty segment
        "wimse://example.com:443/specific-workload",  # port
        "wimse://user@example.com/specific-workload",  # userinfo
        "wimse://example.com/specific-workload?x=1",  # query
        "wimse://example.com/specific-workload#f",  # fragment
        "wimse://example.com./specific-workload",  # trailing dot
        "wimse://example.com",  # no path
        "spiffe://example.com/a~b",  # "~" is not in SPIFFE IDs
        "https://example.com/specific-workload",  # not a workload identifier scheme
        "wimse://example.com/" + "a" * 2048,  # over 2048 octets
    ],
)
async def test_non_canonical_subject_rejected_not_repaired(world: World, sub: Any) -> None:
    wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims={"sub": sub})
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-subject"


async def test_spiffe_identifier_accepted(world: World) -> None:
    wit = world.issuer.issue_wit("spiffe://example.com/ns/prod/sa/api", world.key, now=NOW)
    workload = await world.verify(world.headers(world.wpt(wit=wit), wit))
    assert workload.identifier == "spiffe://example.com/ns/prod/sa/api"


async def test_subject_of_an_untrusted_domain_rejected(world: World) -> None:
    other = DevIssuer("other.example", alg="ES256")
    wit = other.issue_wit("wimse://other.example/specific-workload", world.key, now=NOW)
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-trust-domain"


async def test_wit_signed_by_another_domains_issuer_for_our_domain_rejected(world: World) -> None:
    # An issuer of another domain claims a workload of ours, reusing our kid.
    impostor = DevIssuer("example.com", alg=world.issuer.key.alg, kid=world.issuer.kid)
    wit = impostor.issue_wit(IDENTIFIER, world.key, now=NOW)
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-signature"


async def test_unknown_kid_rejected(world: World) -> None:
    wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, header={"kid": "not-a-kid"})
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-key-unknown"


async def test_wit_without_kid_verifies_when_one_anchor_key_fits(world: World) -> None:
    wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, header={"kid": None})
    assert (await world.verify(world.headers(world.wpt(wit=wit), wit))).identifier == IDENTIFIER


async def test_wit_without_kid_rejected_when_anchor_keys_are_ambiguous() -> None:
    first = DevIssuer("example.com", alg="ES256", kid="one")
    second = DevIssuer("example.com", alg="ES256", kid="two")
    jwks = {"keys": first.jwks["keys"] + second.jwks["keys"]}
    world = World("ES256", "Ed25519", anchors={"example.com": jwks})
    world.issuer = first
    wit = first.issue_wit(IDENTIFIER, world.key, now=NOW, header={"kid": None})
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-key-unknown"
    with_kid = first.issue_wit(IDENTIFIER, world.key, now=NOW)
    assert (await world.verify(world.headers(world.wpt(wit=with_kid), with_kid))).identifier == IDENTIFIER


async def test_keys_named_in_the_wit_header_are_never_used(world: World) -> None:
    # The attacker signs with its own key and names it in jwk/jku/x5u: the anchor decides.
    attacker = SigningKey.generate(world.issuer.key.alg)
    header = {
        "typ": "wit+jwt",
        "kid": world.issuer.kid,
        "jwk": attacker.public_jwk(),
        "jku": "https://attacker.example/jwks",
        "x5u": "https://attacker.example/cert",
    }
    claims = json.loads(base64.urlsafe_b64decode(world.wit.split(".")[1] + "=="))
    wit = attacker.sign(header, claims)
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-signature"


async def test_wit_exp_required_not_passed_and_not_too_far(world: World) -> None:
    no_exp = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims={"exp": None})
    assert (await world.reject(world.headers(world.wpt(wit=no_exp), no_exp))).code == "wit-claim-invalid"
    string_exp = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims={"exp": str(NOW + 60)})
    assert (await world.reject(world.headers(world.wpt(wit=string_exp), string_exp))).code == "wit-claim-invalid"
    expired = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW - 7200)
    assert (await world.reject(world.headers(world.wpt(wit=expired), expired))).code == "wit-expired"
    far = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, lifetime=30 * 86400)
    assert (await world.reject(world.headers(world.wpt(wit=far), far))).code == "wit-lifetime"


async def test_cached_wit_still_expires(world: World) -> None:
    await world.verify()
    world.now = NOW + 3600  # the WIT's exp
    assert (await world.reject(world.headers(world.wpt()))).code == "wit-expired"


@pytest.mark.parametrize(
    "cnf",
    [
        None,
        {},
        {"jwk": "not-an-object"},
        "private",
        "no-alg",
        {"jwk": {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}},
        "alg-none",
        "wrong-kty-for-alg",
        "rsa-1024",
        "use-enc",
    ],
)
async def test_bad_confirmation_key_rejected(world: World, cnf: Any) -> None:
    jwk = world.key.public_jwk()
    if cnf == "private":
        cnf = {"jwk": world.key.key.as_dict(private=True) | {"alg": world.key.alg}}
    elif cnf == "no-alg":
        cnf = {"jwk": {k: v for k, v in jwk.items() if k != "alg"}}
    elif cnf == "alg-none":
        cnf = {"jwk": jwk | {"alg": "none"}}
    elif cnf == "wrong-kty-for-alg":
        cnf = {"jwk": jwk | {"alg": "RS256" if jwk["kty"] != "RSA" else "ES256"}}
    elif cnf == "rsa-1024":
        from joserfc.jwk import RSAKey

        with pytest.warns(UserWarning):  # joserfc warns too; the verifier refuses
            small = RSAKey.generate_key(1024)
        cnf = {"jwk": small.as_dict(private=False) | {"alg": "RS256"}}
    elif cnf == "use-enc":
        cnf = {"jwk": jwk | {"use": "enc"}}
    wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims={"cnf": cnf})
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-cnf"


class CountingSource:
    """A key source that counts how often the verifier asks it for keys."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.inner = StaticKeys(jwks)
        self.calls = 0
        self.generation = 0

    async def keys(self) -> KeySet:
        self.calls += 1
        return await self.inner.keys()

    async def refresh(self) -> KeySet:
        return await self.inner.keys()


async def test_a_verified_wit_is_not_verified_again_until_its_keys_change() -> None:
    issuer_world = World()
    source = CountingSource(issuer_world.issuer.jwks)
    world = World(anchors=TrustAnchors({"example.com": source}))
    world.issuer, world.key, world.wit = issuer_world.issuer, issuer_world.key, issuer_world.wit
    for _ in range(3):
        await world.verify(world.headers(world.wpt()))
    assert source.calls == 1
    source.generation += 1  # the trust domain's keys changed: the cached WIT is checked again
    await world.verify(world.headers(world.wpt()))
    assert source.calls == 2


async def test_a_cached_wit_is_verified_again_when_any_of_its_domains_sources_changes() -> None:
    # Two sources for one domain: the cache follows every one, not the first alone.
    issuer_world = World()
    first, second = CountingSource(issuer_world.issuer.jwks), CountingSource({"keys": []})
    world = World(anchors=TrustAnchors({"example.com": [first, second]}))
    world.issuer, world.key, world.wit = issuer_world.issuer, issuer_world.key, issuer_world.wit
    for _ in range(2):
        await world.verify(world.headers(world.wpt()))
    assert (first.calls, second.calls) == (1, 1)
    second.generation += 1
    await world.verify(world.headers(world.wpt()))
    assert (first.calls, second.calls) == (2, 2)


async def test_a_refused_wit_header_is_refused_alike_every_time(world: World) -> None:
    # Header verdicts are remembered: the second sight of a bad header gets the same answer.
    header = base64.urlsafe_b64encode(json.dumps({"alg": "ES256", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    wit = header + "." + world.wit.split(".", 1)[1]
    for _ in range(3):
        problem = await world.reject(world.headers(world.wpt(wit=wit), wit))
        assert problem.code == "wit-type"


async def test_every_algorithm_signs_and_verifies_both_tokens() -> None:
    for alg in ["ES256", "ES384", "ES512", "EdDSA", "Ed25519", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
        world = World(alg, alg)
        assert (await world.verify()).identifier == IDENTIFIER, alg


def test_sign_compact_refuses_unsupported_algs() -> None:
    with pytest.raises(ValueError):
        sign_compact({"alg": "HS256"}, {}, None)


# --- numbers out of range (issue 13, defect 1) ----------------------------------------------

# Integers float() overflows on, and numbers outside [0, 2**53): no NumericDate of a real token.
OUT_OF_RANGE = {"1e400": 10**400, "-1e400": -(10**400), "1e20": 10**20, "2**53": 2**53, "-1": -1, "1e308": 1e308, "-0.5": -0.5}


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
@pytest.mark.parametrize("claim", ["exp", "nbf"])
@pytest.mark.parametrize("value", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
async def test_wit_numbers_out_of_range_are_claim_invalid_not_exceptions(profile: str, claim: str, value: Any) -> None:
    # float(10**400) raises OverflowError: before the fix that escaped as a 500.
    world = World(profile=profile)
    wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims={claim: value})
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-claim-invalid"


@pytest.mark.parametrize("bad", ["1800000000", None, True, [1], {"a": 1}], ids=repr)
async def test_wit_nbf_must_be_a_number(world: World, bad: Any) -> None:
    # A present nbf that is not a number is refused, not skipped (None is JSON null).
    wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims={"nbf": bad})
    if bad is None:  # issue_wit drops a None member: send an explicit null instead
        claims = json.loads(base64.urlsafe_b64decode(wit.split(".")[1] + "=="))
        claims["nbf"] = None
        wit = sign_compact({"alg": world.issuer.key.alg, "typ": "wit+jwt", "kid": world.issuer.kid}, claims, world.issuer.key.key)
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-claim-invalid"


async def test_wit_nbf_in_the_future_refused_within_leeway_accepted() -> None:
    world = World(leeway=5)
    future = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims={"nbf": NOW + 6})
    assert (await world.reject(world.headers(world.wpt(wit=future), future))).code == "wit-claim-invalid"
    near = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims={"nbf": NOW + 5})
    assert await world.verify(world.headers(world.wpt(wit=near), near))
    past = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims={"nbf": NOW - 100})
    assert await world.verify(world.headers(world.wpt(wit=past), past))


# --- the clock after a slow key source (issue 13, defect 5) ---------------------------------


class SlowKeys:
    """A key source that answers after `delay` seconds of the test's clock (no real sleep)."""

    generation = 0

    def __init__(self, world: World, delay: float) -> None:
        self._static = StaticKeys(world.issuer.jwks)
        self._world, self._delay = world, delay

    async def keys(self) -> KeySet:
        self._world.now += self._delay
        return await self._static.keys()

    async def refresh(self) -> KeySet:
        return await self.keys()


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
async def test_wpt_expiring_while_the_keys_are_fetched_is_refused(profile: str) -> None:
    world = World(profile=profile)
    world.verifier = type(world.verifier)(
        TrustAnchors({"example.com": SlowKeys(world, 3.0)}), ["https://workload.example.com"],
        profile=profile, clock=lambda: world.now,  # type: ignore[arg-type]
    )
    proof = world.wpt(lifetime=1)  # valid when the request arrives, expired 2 s before the keys are
    assert (await world.reject(world.headers(proof))).code == "wpt-expired"
    world.now = NOW
    assert await world.verify(world.headers(world.wpt(lifetime=4)))  # still valid after the wait


async def test_wit_expiring_while_the_keys_are_fetched_is_refused() -> None:
    world = World()
    world.verifier = type(world.verifier)(
        TrustAnchors({"example.com": SlowKeys(world, 3.0)}), ["https://workload.example.com"], clock=lambda: world.now
    )
    wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, lifetime=1)
    proof = world.wpt(wit=wit, lifetime=60)
    assert (await world.reject(world.headers(proof, wit))).code == "wit-expired"


# --- claims the WIT validation does not use (wpt-02 section 2.3, workload-creds 5.1.4) -------


@pytest.mark.parametrize("profile", ["wpt-01", "wpt-02"])
async def test_unknown_claims_in_the_wit_are_ignored(profile: str) -> None:
    world = World(profile=profile)
    unknown = {"x-unknown": {"nested": [1, {"deep": True}]}, "iat": "not a number", "sid": 10**400, "aud": 7}
    wit = world.issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims=unknown)
    workload = await world.verify(world.headers(world.wpt(wit=wit), wit))
    assert workload.wit_claims["x-unknown"] == unknown["x-unknown"]


async def test_wit_iss_is_never_used_to_find_keys() -> None:
    """Keys come from the trust domain of sub, never from iss: not another configured domain's,
    and nothing named by iss is fetched."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from .servers import serve

    attacker = DevIssuer("example.com")
    partner = DevIssuer("partner.example")
    hits: list[str] = []

    async def jwks(request: Request) -> JSONResponse:
        hits.append(request.url.path)
        return JSONResponse(attacker.jwks)

    world = World(anchors={"example.com": DevIssuer("example.com").jwks, "partner.example": partner.jwks})
    with serve(Starlette(routes=[Route("/{path:path}", jwks)])) as origin:
        named = [(attacker, origin), (attacker, origin + "/.well-known/jwks.json")]
        named += [(partner, "partner.example"), (partner, "wimse://partner.example")]
        for issuer, iss in named:
            wit = issuer.issue_wit(IDENTIFIER, world.key, now=NOW, claims={"iss": iss})
            assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code in ("wit-signature", "wit-key-unknown")
    assert hits == []
    # And an honest WIT's iss, whatever it says, changes nothing.
    honest = DevIssuer("example.com")
    world = World(anchors={"example.com": honest.jwks})
    wit = honest.issue_wit(IDENTIFIER, world.key, now=NOW, claims={"iss": "https://elsewhere.example"})
    assert (await world.verify(world.headers(world.wpt(wit=wit), wit))).trust_domain == "example.com"


# --- tests for the checks mutation testing found unguarded (issue 13) -----------------------


@pytest.mark.parametrize("b64_value", [False, True, "false"])
async def test_b64_alone_in_the_wit_header_is_refused(world: World, b64_value: Any) -> None:
    # RFC 7797: b64 false changes what is signed; without crit it must not be honoured either.
    claims = json.loads(base64.urlsafe_b64decode(world.wit.split(".")[1] + "=="))
    wit = sign_raw(world.issuer.key, {"typ": "wit+jwt", "kid": world.issuer.kid, "b64": b64_value}, claims)
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-crit"


async def test_es256_wit_signature_with_a_zero_byte_inserted_is_refused() -> None:
    # r || 0x00 || s decodes to the same (r, s) if the length is not checked: one observed WIT
    # would yield many distinct valid WIT strings (each a verify and a WIT-cache slot).
    world = World("ES256", "Ed25519")
    head, body, signature = world.wit.split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    for forged in (raw[:32] + b"\x00" + raw[32:], b"\x00" + raw, raw + b"\x00"):
        wit = f"{head}.{body}.{b64(forged)}"
        assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-signature"
    assert await world.verify()


async def test_confirmation_key_alg_outside_the_allow_list_is_wit_cnf() -> None:
    # Refused because RS256 is not allowed here, before any key import: a verifier limited to
    # ES256 must never accept an RS256 proof, whatever the key import would have said.
    world = World("ES256", "RS256", algorithms=["ES256"])
    problem = await world.reject(world.headers())
    assert problem.code == "wit-cnf"
    assert "not an allowed algorithm" in problem.detail


async def test_trust_domain_is_refused_before_any_other_claim_is_read(world: World) -> None:
    # Nothing of a WIT from an untrusted domain is looked at further (not exp, not cnf).
    other = DevIssuer("other.example")
    wit = other.issue_wit("wimse://other.example/w", world.key, now=NOW - 7200, claims={"cnf": None, "exp": "x"})
    assert (await world.reject(world.headers(world.wpt(wit=wit), wit))).code == "wit-trust-domain"
