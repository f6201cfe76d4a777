"""Shared test helpers: a small world of real keys and tokens minted by the package."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from wimse_wpt import DevIssuer, Problem, SigningKey, VerificationError, VerifiedWorkload, Verifier, mint_wpt

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VECTORS = SHARED / "vectors"
NOW = 1_800_000_000.0
ORIGIN = "https://workload.example.com"
TARGET = ORIGIN + "/path"
IDENTIFIER = "wimse://example.com/specific-workload"

# (issuer alg, workload alg): ES256 and Ed25519 each sign both kinds of token.
ALG_PAIRS = [("ES256", "Ed25519"), ("Ed25519", "ES256")]


def sign_raw(key: SigningKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Sign without joserfc's header checks, to forge what a careful signer would refuse."""
    import base64

    from joserfc.jws import JWSRegistry

    def b64(obj: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=")

    signing_input = b64({"alg": key.alg, **header}) + b"." + b64(claims)
    signature = JWSRegistry.algorithms[key.alg].sign(signing_input, key.key)
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


class World:
    """One trust domain, one workload, one verifier with a clock the test moves."""

    def __init__(
        self,
        issuer_alg: str = "ES256",
        workload_alg: str = "Ed25519",
        profile: str = "wpt-01",
        **verifier_options: Any,
    ) -> None:
        self.now = NOW
        self.profile = profile
        self.issuer = DevIssuer("example.com", alg=issuer_alg)
        self.key = SigningKey.generate(workload_alg)
        self.wit = self.issuer.issue_wit(IDENTIFIER, self.key, now=NOW)
        anchors = verifier_options.pop("anchors", {"example.com": self.issuer.jwks})
        self.verifier = Verifier(
            anchors, [ORIGIN], profile=profile, clock=lambda: self.now, **verifier_options  # type: ignore[arg-type]
        )

    def wpt(self, aud: str = TARGET, wit: str | None = None, key: SigningKey | None = None, **options: Any) -> str:
        options.setdefault("now", self.now)
        # A forging tool: expired or malformed WITs and plain-http audiences on purpose.
        options.setdefault("allow_expired_wit", True)
        options.setdefault("allow_insecure", True)
        return mint_wpt(key or self.key, wit or self.wit, aud, **options)

    def headers(self, wpt: str | None = None, wit: str | None = None, *extra: tuple[str, str]) -> list[tuple[bytes, bytes]]:
        wit = wit or self.wit
        wpt = wpt or self.wpt(wit=wit)
        fields = [("host", "workload.example.com"), ("workload-identity-token", wit)]
        if self.profile == "wpt-02":
            fields.append(("authorization", f"WPT {wpt}"))
        else:
            fields.append(("workload-proof-token", wpt))
        fields += [(k.lower(), v) for k, v in extra]
        return [(k.encode(), v.encode()) for k, v in fields]

    async def verify(self, headers: Any = None, path: str = "/path", **options: Any) -> VerifiedWorkload:
        return await self.verifier.verify(self.headers() if headers is None else headers, path=path, **options)

    async def reject(self, headers: Any = None, path: str = "/path", **options: Any) -> Problem:
        with pytest.raises(VerificationError) as caught:
            await self.verify(headers, path, **options)
        problem = caught.value.problem
        # Whatever the failure, no token the caller sent is ever echoed back.
        for name, value in headers or []:
            if name in (b"workload-identity-token", b"workload-proof-token", b"authorization") and len(value) > 40:
                assert value.decode(errors="replace")[-40:] not in problem.detail
        return problem


@pytest.fixture(params=ALG_PAIRS, ids=lambda p: f"wit-{p[0]}-wpt-{p[1]}")
def world(request: pytest.FixtureRequest) -> World:
    return World(*request.param)


def missing_shared(reason: str) -> None:
    """Skip where ../shared/ is absent; CI (WIMSE_REQUIRE_VECTORS=1) fails instead."""
    if os.environ.get("WIMSE_REQUIRE_VECTORS") == "1":
        pytest.fail(f"WIMSE_REQUIRE_VECTORS=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def draft_examples() -> dict[str, Any]:
    path = VECTORS / "draft-examples.json"
    if not path.exists():
        missing_shared(f"the working group's examples are not at {path} (shared/ absent)")
    return json.loads(path.read_text())


def redis_url() -> str:
    """REDIS_URL, or a skip with the reason; CI sets WIMSE_REQUIRE_REDIS=1 to make it a failure."""
    url = os.environ.get("REDIS_URL")
    if not url:
        if os.environ.get("WIMSE_REQUIRE_REDIS") == "1":
            pytest.fail("WIMSE_REQUIRE_REDIS=1 but REDIS_URL is not set")
        pytest.skip("REDIS_URL is not set: the Redis tests need a Redis server (CI runs them)")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("WIMSE_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis at REDIS_URL is required but unreachable: {exc}")
        pytest.skip(f"Redis at REDIS_URL is unreachable: {exc}")
    return url


# Hypothesis profiles (tests/test_properties.py, tests/test_paths.py): `make test` runs a
# bounded, derandomized profile (the same examples every run: no flaky CI); `make fuzz` sets
# HYPOTHESIS_PROFILE=fuzz for a long random search.
from hypothesis import HealthCheck, settings  # noqa: E402

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "bounded", max_examples=60, deadline=None, derandomize=True, suppress_health_check=_HEALTH, print_blob=True
)
settings.register_profile("fuzz", max_examples=5000, deadline=None, suppress_health_check=_HEALTH, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bounded"))
