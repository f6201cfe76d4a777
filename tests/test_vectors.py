"""The working group's own example requests: accepted under their profile, and every
negative hint in draft-examples.json rejected with the right code."""

from __future__ import annotations

from typing import Any

import pytest

from wimse_wpt import MemoryReplayCache, VerificationError, Verifier

from .conftest import draft_examples


def _profile(vector: dict[str, Any]) -> str:
    return "wpt-02" if vector["name"].startswith("wpt-02") else "wpt-01"


def _verifier(data: dict[str, Any], profile: str, now: float, **options: Any) -> Verifier:
    anchors = {data["keys"]["trust_domain"]: {"keys": [data["keys"]["issuer_public_jwk"]]}}
    origin = data["target_uri"].rsplit("/", 1)[0]
    return Verifier(anchors, [origin], profile=profile, clock=lambda: now, **options)  # type: ignore[arg-type]


async def _verify(verifier: Verifier, vector: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    fields = list((headers if headers is not None else vector["headers"]).items())
    return await verifier.verify(fields, path=vector["path"], method=vector["method"])


async def _code(verifier: Verifier, vector: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    with pytest.raises(VerificationError) as caught:
        await _verify(verifier, vector, headers)
    return caught.value.problem.code


DATA = draft_examples()
VECTORS = {v["name"]: v for v in DATA["vectors"]}
LAST_VALID = DATA["valid_at"]["until_exclusive"] - 1


@pytest.mark.parametrize("name", list(VECTORS))
async def test_example_accepted_under_its_profile(name: str) -> None:
    vector = VECTORS[name]
    oth = ["x-custom-token"] if "oth" in name else []
    verifier = _verifier(DATA, _profile(vector), LAST_VALID, oth_headers=oth)
    workload = await _verify(verifier, vector)
    assert workload.identifier == "wimse://example.com/specific-workload"
    assert workload.trust_domain == "example.com"
    assert workload.wpt_claims["aud"] == DATA["target_uri"]


async def test_examples_accepted_from_the_start_of_their_window_with_a_longer_wpt_lifetime() -> None:
    # The examples' WPT expires 1106 s after valid_at.from: past the 5-minute default maximum.
    start = DATA["valid_at"]["from"]
    for vector in VECTORS.values():
        oth = ["x-custom-token"] if "oth" in vector["name"] else []
        verifier = _verifier(DATA, _profile(vector), start, oth_headers=oth, max_wpt_lifetime=1200)
        assert (await _verify(verifier, vector)).identifier.endswith("/specific-workload")
        default = _verifier(DATA, _profile(vector), start, oth_headers=oth)
        assert await _code(default, vector) == "wpt-lifetime"


async def test_oth_example_rejected_when_its_header_is_not_configured() -> None:
    verifier = _verifier(DATA, "wpt-01", LAST_VALID)
    assert await _code(verifier, VECTORS["wpt-01-oth"]) == "oth-unknown"


async def test_wit_of_one_example_with_the_wpt_of_another_is_rejected() -> None:
    a, b = VECTORS["wpt-02-authorization"], VECTORS["wpt-02-ed25519-alg"]
    mixed = dict(a["headers"], Authorization=b["headers"]["Authorization"])
    verifier = _verifier(DATA, "wpt-02", LAST_VALID)
    # Both rules are broken; the alg check runs first (it needs nothing but the WIT).
    assert await _code(verifier, a, mixed) == "wpt-alg"


@pytest.mark.parametrize("name", list(VECTORS))
async def test_examples_rejected_once_expired(name: str) -> None:
    vector = VECTORS[name]
    oth = ["x-custom-token"] if "oth" in name else []
    for moment in (DATA["valid_at"]["until_exclusive"], DATA["valid_at"]["wit_exp"] - 1):
        verifier = _verifier(DATA, _profile(vector), moment, oth_headers=oth)
        assert await _code(verifier, vector) == "wpt-expired"
    # The credential is checked first: once the WIT has expired, that is the reason given.
    verifier = _verifier(DATA, _profile(vector), DATA["valid_at"]["wit_exp"], oth_headers=oth)
    assert await _code(verifier, vector) == "wit-expired"


@pytest.mark.parametrize("name", list(VECTORS))
async def test_the_same_example_twice_is_a_replay(name: str) -> None:
    vector = VECTORS[name]
    oth = ["x-custom-token"] if "oth" in name else []
    verifier = _verifier(DATA, _profile(vector), LAST_VALID, oth_headers=oth)
    await _verify(verifier, vector)
    assert await _code(verifier, vector) == "wpt-replayed"


async def test_bearer_example_without_or_with_another_bearer_is_rejected() -> None:
    vector = VECTORS["wpt-01-bearer"]
    without = {k: v for k, v in vector["headers"].items() if k != "Authorization"}
    assert await _code(_verifier(DATA, "wpt-01", LAST_VALID), vector, without) == "ath-unexpected"
    changed = dict(vector["headers"], Authorization="Bearer another-token")
    assert await _code(_verifier(DATA, "wpt-01", LAST_VALID), vector, changed) == "ath-mismatch"


async def test_examples_sharing_sub_and_jti_are_replays_in_one_shared_cache() -> None:
    shared = MemoryReplayCache()
    order = ["wpt-01-bearer", "wpt-02-authorization", "wpt-02-ed25519-alg"]
    first = _verifier(DATA, "wpt-01", LAST_VALID, replay_cache=shared)
    await _verify(first, VECTORS[order[0]])
    for name in order[1:]:
        verifier = _verifier(DATA, "wpt-02", LAST_VALID, replay_cache=shared)
        assert await _code(verifier, VECTORS[name]) == "wpt-replayed"


async def test_wpt_01_example_is_not_accepted_under_wpt_02_and_vice_versa() -> None:
    assert await _code(_verifier(DATA, "wpt-02", LAST_VALID), VECTORS["wpt-01-bearer"]) == "wpt-missing"
    assert await _code(_verifier(DATA, "wpt-01", LAST_VALID), VECTORS["wpt-02-authorization"]) == "wpt-missing"
