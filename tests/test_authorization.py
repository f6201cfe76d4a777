"""The Authorization field (RFC 9110 sections 11.4 and 11.6.2) under both profiles.

Issue 13, defects 6 and 7: `Bearer<TAB>token` let a bearer token reach the app unbound, and
one `Digest` (or AWS SigV4) field was refused as two because its parameters hold commas.
"""

from __future__ import annotations

import pytest

from .conftest import IDENTIFIER, World

DIGEST = 'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'  # noqa: E501
SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
    "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
    "Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
)

# Not `auth-scheme 1*SP ( token68 / #auth-param )`, or a bearer-like token not in token68 form:
# each could be read by a lenient downstream parser as a token the WPT does not bind.
MALFORMED = {
    "tab-after-scheme": "Bearer\tat-123",
    "tab-before-params": 'Digest\tusername="a", realm="b"',
    "tab-before-token68": "Basic\tQWxhZGRpbjpvcGVuIHNlc2FtZQ==",
    "tab-and-space": "Bearer\t at-123",
    "vertical-tab": "Bearer\x0bat-123",
    "no-space": "Bearerat-123=x",
    "two-tokens": "Bearer at-123 at-456",
    "comma-joined": "Bearer at-123, Bearer at-456",
    "bearer-params": "Bearer token=at-123",
    "bearer-quoted": 'Bearer "at-123"',
    "bearer-alone": "Bearer",
    "dpop-alone": "DPoP",
    "nul": "Bearer at-\x00123",
    "non-ascii": "Bearer at-\xe9123",
    "scheme-not-a-token": "Bear(er at-123",
    "no-scheme": "=at-123",
    "empty": "",
    "only-spaces": "   ",
    "cr-lf": "Bearer at-123\r\nX: y",
    "unclosed-quote": 'Digest realm="abc',
    "space-in-value": "Digest realm=a b",
    "quote-in-value": "Digest realm=a\"b\"",
    "param-without-name": "Digest =abc",
}


def with_authorization(world: World, value: str, **wpt_options: str) -> list[tuple[bytes, bytes]]:
    headers = world.headers(world.wpt(**wpt_options))
    return headers + [(b"authorization", value.encode("latin-1"))]


@pytest.mark.parametrize("value", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_authorization_refused_under_wpt_01(world: World, value: str) -> None:
    problem = await world.reject(with_authorization(world, value))
    assert (problem.code, problem.status) == ("authorization-malformed", 400)


async def test_bearer_hidden_by_a_tab_is_refused_even_when_bound(world: World) -> None:
    # A downstream parser that splits on any whitespace reads "at-123" as the bearer token.
    headers = with_authorization(world, "Bearer\tat-123", bearer="at-123")
    assert (await world.reject(headers)).code == "authorization-malformed"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "DPoP", "dpop", "DPOP"])
async def test_ath_binds_bearer_and_dpop_access_tokens(world: World, scheme: str) -> None:
    token = "Kz~8qDhF-eRTa.Z_/+w==" if scheme.lower() == "dpop" else "at-123.x_y~z+/=="
    value = f"{scheme} {token}"
    ok = await world.verify(with_authorization(world, value, bearer=token))
    assert ok.bound_tokens == {"authorization"}
    assert (await world.reject(with_authorization(world, value))).code == "ath-missing"
    assert (await world.reject(with_authorization(world, value, bearer="other"))).code == "ath-mismatch"


async def test_several_spaces_after_the_scheme_are_one_separator(world: World) -> None:
    ok = await world.verify(with_authorization(world, "Bearer    at-123", bearer="at-123"))
    assert ok.bound_tokens == {"authorization"}


@pytest.mark.parametrize(
    "value",
    ["Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", DIGEST, SIGV4, "Custom", 'Custom a = "b\\"c", , d=e', "Negotiate YII="],
    ids=["basic", "digest", "aws-sigv4", "scheme-only", "params-with-bws", "negotiate"],
)
async def test_other_schemes_pass_through_unbound(world: World, value: str) -> None:
    workload = await world.verify(with_authorization(world, value))
    assert workload.identifier == IDENTIFIER
    assert workload.bound_tokens == frozenset()
    # ... and an ath claim then binds nothing the request carries.
    assert (await world.reject(with_authorization(world, value, bearer="x"))).code == "ath-unexpected"


@pytest.mark.parametrize("value", [DIGEST, SIGV4], ids=["digest", "aws-sigv4"])
async def test_one_field_with_commas_is_one_field(world: World, value: str) -> None:
    # Issue 13, defect 7: auth-params hold commas; Authorization field lines are counted.
    assert (await world.verify(with_authorization(world, value))).identifier == IDENTIFIER
    two = with_authorization(world, value) + [(b"authorization", b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")]
    assert (await world.reject(two)).code == "authorization-multiple"


# --- wpt-02: the field must be `WPT <token68>` ------------------------------------------------


async def test_wpt_02_authorization_must_be_wpt_token68() -> None:
    world = World(profile="wpt-02")
    base = [h for h in world.headers() if h[0] != b"authorization"]
    proof = world.wpt()
    for value in (f"WPT\t{proof}", f"WPT {proof} x", f"WPT a={proof}", "WPT", f"WPT {proof}, Bearer x", f"W(PT {proof}"):
        problem = await world.reject(base + [(b"authorization", value.encode())])
        assert (problem.code, problem.status) == ("authorization-malformed", 401), value
    for scheme_and_spaces in ("wPt ", "WPT   "):
        value = scheme_and_spaces + world.wpt()
        assert (await world.verify(base + [(b"authorization", value.encode())])).identifier == IDENTIFIER
    assert (await world.reject(base + [(b"authorization", f"Bearer {proof}".encode())])).code == "wpt-missing"
    assert (await world.reject(base + [(b"authorization", DIGEST.encode())])).code == "wpt-missing"
