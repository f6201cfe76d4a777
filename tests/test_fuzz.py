"""Hostile input: whatever the headers and claims hold, the verifier answers with a problem
(VerificationError) and nothing else."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from wimse_wpt import VerificationError
from wimse_wpt.anchors import KeySet, TrustAnchors

from .conftest import NOW, World, sign_raw

ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1.5, 1e308, 10**30, "", "x", "\u2603", [], {}, [1], {"a": 1}, {"jwk": None},
    "https://workload.example.com/path", NOW + 60, "NaN", [None], {"jwk": {"kty": "OKP"}},
]
CLAIMS = ["aud", "exp", "jti", "wth", "ath", "tth", "oth", "nbf", "sub", "cnf", "iat"]
HEADERS = ["alg", "typ", "kid", "crit", "b64", "jwk"]


def b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def outcome(world: World, headers: list[tuple[bytes, bytes]]) -> str:
    try:
        await world.verifier.verify(headers, path="/path")
    except VerificationError as error:
        return error.problem.code
    return "accepted"


async def test_mutated_tokens_only_ever_get_problems() -> None:
    rng = random.Random(1)
    world = World()
    alphabet = "ABCxyz019-_.=+/ ,\t\u00e9"
    for _ in range(1500):
        wit, wpt = world.wit, world.wpt()
        which = rng.choice(["wit", "wpt", "both"])
        for _ in range(rng.randrange(1, 4)):
            if which in ("wit", "both"):
                i = rng.randrange(len(wit))
                wit = wit[:i] + rng.choice(["", rng.choice(alphabet)]) + wit[i + 1 :]
            if which in ("wpt", "both"):
                i = rng.randrange(len(wpt))
                wpt = wpt[:i] + rng.choice(["", rng.choice(alphabet)]) + wpt[i + 1 :]
        headers = [(b"workload-identity-token", wit.encode("utf-8")), (b"workload-proof-token", wpt.encode("utf-8"))]
        await outcome(world, headers)  # raises anything but VerificationError -> test fails


async def test_claims_and_headers_of_every_odd_type_only_ever_get_problems() -> None:
    rng = random.Random(2)
    world = World()
    good_wit_claims = json.loads(base64.urlsafe_b64decode(world.wit.split(".")[1] + "=="))
    for _ in range(600):
        wit_claims = dict(good_wit_claims)
        wpt_claims = json.loads(base64.urlsafe_b64decode(world.wpt().split(".")[1] + "=="))
        for claims in (wit_claims, wpt_claims):
            for name in rng.sample(CLAIMS, rng.randrange(1, 4)):
                claims[name] = rng.choice(ODD_VALUES)
        wit_header: dict[str, Any] = {"typ": "wit+jwt", "kid": world.issuer.kid}
        wpt_header: dict[str, Any] = {"typ": "wpt+jwt"}
        if rng.random() < 0.3:
            rng.choice([wit_header, wpt_header])[rng.choice(HEADERS)] = rng.choice(ODD_VALUES)
        wit = sign_raw(world.issuer.key, wit_header, wit_claims)
        wpt = sign_raw(world.key, wpt_header, wpt_claims)
        headers = [(b"workload-identity-token", wit.encode()), (b"workload-proof-token", wpt.encode())]
        code = await outcome(world, headers)
        assert code != "accepted" or wpt_claims.get("aud") == "https://workload.example.com/path"


class ExplodingSource:
    generation = 0

    async def keys(self) -> KeySet:
        raise RuntimeError("boom")

    async def refresh(self) -> KeySet:
        raise RuntimeError("boom")


class ExplodingStore:
    async def check_and_record(self, key: bytes, ttl: float, workload: str) -> bool:
        raise RuntimeError("boom")


async def test_a_failing_key_source_or_store_fails_closed() -> None:
    world = World(anchors=TrustAnchors({"example.com": ExplodingSource()}))
    problem = await world.reject()
    assert (problem.code, problem.status) == ("trust-anchors-unavailable", 503)
    world = World(replay_cache=ExplodingStore())
    problem = await world.reject()
    assert (problem.code, problem.status) == ("replay-store-unavailable", 503)
