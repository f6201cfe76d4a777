"""A third attack review (h12), as an outside attacker: each finding's regression test.

Tests marked xfail(strict=True) name a defect whose fix lies in a file another helper owns
(verifier.py, wit.py, wpt.py, headers.py, claims.py, tokens.py): the lead applies the fix
described in the reason and the report, and the mark comes off.
"""

from __future__ import annotations

import pytest

from wimse_wpt import VerificationError

from .conftest import NOW, World
from .rollout import running

# --- finding 1: an excluded path hands the app the WIT and WPT ------------------------------


def test_excluded_path_strips_the_credentials_too() -> None:
    # WPTAuth signs every request, excluded paths included: the app behind an exclusion
    # (a public proxy route, a handler that logs or forwards headers) must not receive a
    # WIT and an unused, still valid WPT it could forward. strip_credentials promises that
    # "the app never sees a WIT or WPT it could forward".
    with running(exclude=["/public/*", "/healthz"]) as app, app.client() as client:
        for path in ("/public/x", "/healthz"):
            response = client.get(path)
            assert response.status_code == 200
            headers = response.json()["headers"]
            assert "workload-identity-token" not in headers and "workload-proof-token" not in headers, path
    with running("wpt-02", exclude=["/public/*"]) as app, app.client() as client:
        headers = client.get("/public/x").json()["headers"]
        assert "workload-identity-token" not in headers and "authorization" not in headers


# --- finding 2: the WIT's exp is not checked again after the replay store's await ------------


class _SlowStore:
    """An async replay store that answers after the clock moved (a slow Redis round trip)."""

    def __init__(self, world: World, seconds: float) -> None:
        self.world, self.seconds = world, seconds
        self.seen: set[bytes] = set()

    async def check_and_record(self, key: bytes, ttl: float, workload: str) -> bool:
        self.world.now += self.seconds
        first = key not in self.seen
        self.seen.add(key)
        return first


@pytest.mark.xfail(
    strict=True,
    reason="finding 2: verifier.verify re-checks only the WPT's exp after an awaiting replay store; "
    "the WIT's exp (wit.exp + leeway) must be checked against the same fresh clock",
)
async def test_a_wit_that_expired_while_the_replay_store_answered_is_refused() -> None:
    world = World()
    world.wit = world.issuer.issue_wit("wimse://example.com/specific-workload", world.key, now=NOW, lifetime=1)
    world.verifier.replay_cache = _SlowStore(world, 2.0)  # type: ignore[assignment]
    headers = world.headers(world.wpt(lifetime=60))
    with pytest.raises(VerificationError) as caught:
        await world.verify(headers)
    assert caught.value.problem.code == "wit-expired"
