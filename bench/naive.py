"""The same verification written the naive way with joserfc: both tokens decoded on every
call, the confirmation key imported on every call, the same claim checks. The baseline the
benchmarks compare the real verifier against; not part of the package."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, import_key

from wimse_wpt import MemoryReplayCache, VerificationError
from wimse_wpt.problems import Problem
from wimse_wpt.replay import replay_key
from wimse_wpt.tokens import token_hash
from wimse_wpt.verifier import VerifiedWorkload, Verifier

ALGS = ["ES256", "ES384", "ES512", "EdDSA", "Ed25519", "RS256", "PS256"]


def _fail(code: str) -> VerificationError:
    return VerificationError(Problem.of(code, "refused"))


class NaiveVerifier(Verifier):
    """Drop-in for the benchmarks (the middleware accepts it as a Verifier)."""

    def __init__(self, anchors: Mapping[str, Any], origins: Iterable[str], **options: Any) -> None:
        super().__init__(anchors, origins, **options)
        self._jwks = {domain: jwks for domain, jwks in anchors.items()}
        self._replays = options.get("replay_cache") or MemoryReplayCache(1_000_000)

    async def verify(self, headers: Iterable[Any], *, path: str, root_path: str = "", method: str = "GET",
                     audiences: Iterable[str] = ()) -> VerifiedWorkload:
        values: dict[bytes, bytes] = {}
        for name, value in headers:
            values[name.lower() if isinstance(name, bytes) else name.lower().encode()] = (
                value if isinstance(value, bytes) else value.encode()
            )
        wit = values.get(b"workload-identity-token")
        wpt = values.get(b"workload-proof-token")
        if wit is None or wpt is None:
            raise _fail("wit-missing")
        now = time.time()
        try:
            # Anchors for the trust domain: the naive way decodes to find sub, imports keys.
            domain = next(iter(self._jwks))
            anchor = KeySet.import_key_set(self._jwks[domain])
            wit_token = jwt.decode(wit, anchor, algorithms=ALGS)
        except Exception:
            raise _fail("wit-signature") from None
        claims = wit_token.claims
        if wit_token.header.get("typ") != "wit+jwt" or claims.get("exp", 0) <= now:
            raise _fail("wit-expired")
        cnf = claims["cnf"]["jwk"]
        key = import_key(cnf)
        try:
            wpt_token = jwt.decode(wpt, key, algorithms=[cnf["alg"]])
        except Exception:
            raise _fail("wpt-signature") from None
        wpt_claims = wpt_token.claims
        if wpt_token.header.get("typ") != "wpt+jwt" or wpt_token.header.get("alg") != cnf["alg"]:
            raise _fail("wpt-type")
        if wpt_claims.get("exp", 0) <= now or wpt_claims["exp"] - now > 300:
            raise _fail("wpt-expired")
        if wpt_claims.get("wth") != token_hash(wit):
            raise _fail("wpt-wth")
        if wpt_claims.get("aud") != self.origins[0] + path:
            raise _fail("wpt-audience")
        if not await self._replays.check_and_record(replay_key(claims["sub"], wpt_claims["jti"]), 300, claims["sub"]):
            raise _fail("wpt-replayed")
        return VerifiedWorkload(claims["sub"], domain, claims, wpt_claims, frozenset())
