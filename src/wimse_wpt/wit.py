"""WIT validation (draft-ietf-wimse-workload-creds section 5.1.4) and the cache of verified WITs.

A WIT that verified is kept, by the token as sent, until it expires or its trust domain's keys
change: a steady caller costs a dict lookup here, not a signature check (nor a hash: its SHA-256,
which ``wth`` binds, is computed once, when it is first verified). When the cache is full, one
pass drops what has expired and then the oldest, down to 7/8 full: bounded work per insert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from .anchors import KeySource, TrustAnchors
from .claims import HeaderVerdicts, check_times, expired
from .identifiers import WorkloadIdentifier, parse_identifier
from .problems import Reject
from .replay import replay_prefix
from .tokens import PublicKey, TokenError, decode_json_object, import_public_key, token_hash


@dataclass(frozen=True, slots=True)
class VerifiedWIT:
    identifier: str
    trust_domain: str
    claims: Mapping[str, Any]
    key: PublicKey  # cnf.jwk, imported once
    alg: str  # cnf.jwk.alg: the WPT's alg must equal it
    exp: float
    anchors_generation: int
    wth: str  # base64url(SHA-256(WIT)), what the WPT's wth claim must equal
    #: The trust domain's key source when it has exactly one: its generation is read directly.
    source: KeySource | None
    #: SHA-256 state over the replay key's workload part: a request adds only its jti.
    replay_prefix: Any


#: Verified workloads remembered by sub (an identifier and a SHA-256 state each, ~0.5 kB).
_WORKLOADS_KEPT = 4096

# A frozen dataclass's __init__ sets each field through object.__setattr__; one is built for
# every new WIT, by its slots' own setters instead (the same object, about half the cost).
_SET_FIELDS = tuple(getattr(VerifiedWIT, f.name).__set__ for f in fields(VerifiedWIT))


def _verified_wit(
    identifier: str,
    trust_domain: str,
    claims: Mapping[str, Any],
    key: PublicKey,
    alg: str,
    exp: float,
    anchors_generation: int,
    wth: str,
    source: KeySource | None,
    prefix: Any,
) -> VerifiedWIT:
    wit = object.__new__(VerifiedWIT)
    (set_identifier, set_domain, set_claims, set_key, set_alg, set_exp, set_generation, set_wth, set_source, set_prefix) = (
        _SET_FIELDS
    )
    set_identifier(wit, identifier)
    set_domain(wit, trust_domain)
    set_claims(wit, claims)
    set_key(wit, key)
    set_alg(wit, alg)
    set_exp(wit, exp)
    set_generation(wit, anchors_generation)
    set_wth(wit, wth)
    set_source(wit, source)
    set_prefix(wit, prefix)
    return wit


class WITValidator:
    """Validates WITs against the trust anchors, and remembers those that verified."""

    def __init__(
        self,
        anchors: TrustAnchors,
        algorithms: frozenset[str],
        *,
        leeway: float,
        max_lifetime: float,
        max_token_bytes: int,
        cache_size: int,
        clock: Callable[[], float],
    ) -> None:
        self.anchors = anchors
        self.algorithms = algorithms
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.max_token_bytes = max_token_bytes
        self._clock = clock
        # Verified WITs by the WIT as sent (bytes compare whole on a hash match: a different
        # token is never taken for a cached one): a plain dict, read on every request. Keyed by
        # the token rather than its digest, a hit costs no SHA-256; an entry keeps the token
        # (at most max_token_bytes), about as much as its decoded claims.
        self._cache: dict[bytes, VerifiedWIT] = {}
        self._cache_size = cache_size
        # Issuers send few distinct headers: each one's verdict is judged once.
        self._headers = HeaderVerdicts("wit", "wit+jwt")
        # Workloads whose WIT verified, by sub: a workload's next WIT (a new key, a new exp)
        # costs no identifier parse and no replay-prefix hash. Filled only after a signature
        # verified, so unsigned tokens cannot crowd it; bounded (cleared when full).
        self._workloads: dict[str, tuple[WorkloadIdentifier, Any]] = {}
        # A TrustAnchors of our own: a domain with one source has that source's generation.
        self._direct_generation = type(anchors).generation is TrustAnchors.generation

    def lookup(self, token: bytes, now: float) -> VerifiedWIT | None:
        """The verified WIT if it is cached, unexpired, and its trust domain's keys have not
        changed since it was verified."""
        wit = self._cache.get(token)
        if wit is None or now >= wit.exp + self.leeway:
            return None
        source = wit.source
        if wit.anchors_generation != (source.generation if source is not None else self.anchors.generation(wit.trust_domain)):
            return None
        return wit

    async def validate(self, token: bytes, now: float) -> tuple[VerifiedWIT, float]:
        """Verify a WIT not (or no longer) cached; returns it and the time after the key lookup.
        (One coroutine: a WIT refused before the key lookup costs no second one.)"""
        alg, header, payload, signing_input, signature = self._headers.split(token, self.max_token_bytes)
        if alg not in self.algorithms:
            raise Reject("wit-alg", "The workload identity token's alg is not allowed.")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Reject("wit-malformed", "The kid header must be a string.")
        try:
            claims = decode_json_object(payload)
        except TokenError:
            raise Reject("wit-malformed", "The workload identity token's claims are not a JSON object.") from None
        sub = claims.get("sub")
        known = self._workloads.get(sub) if type(sub) is str else None
        if known is not None:
            identifier, prefix = known
        else:
            try:
                identifier = parse_identifier(sub)
            except ValueError:
                raise Reject("wit-subject", "The sub claim is not a canonical workload identifier.") from None
            prefix = None
        # The keys are the trust domain's of sub: never chosen by iss, jku, x5u or any other claim.
        if identifier.trust_domain not in self.anchors.trust_domains:
            raise Reject("wit-trust-domain", "The workload's trust domain is not trusted here.")
        exp = check_times(claims, now, "wit", self.leeway, self.max_lifetime)
        cnf_key, cnf_alg = self._confirmation_key(claims.get("cnf"))
        generation = self.anchors.generation(identifier.trust_domain)
        sources = self.anchors.sources(identifier.trust_domain)
        source = sources[0] if self._direct_generation and len(sources) == 1 else None
        anchor = await self.anchors.find_key(identifier.trust_domain, kid, alg)
        if not anchor.verify(alg, signing_input, signature):
            raise Reject("wit-signature", "The workload identity token's signature does not verify.")
        wit = _verified_wit(
            identifier.value,
            identifier.trust_domain,
            MappingProxyType(claims),
            cnf_key,
            cnf_alg,
            exp,
            generation,
            token_hash(token),
            source,
            prefix if prefix is not None else self._known_workload(identifier),
        )
        # The key source may have waited (a JWKS fetch): what follows must use fresh time.
        now = self._clock()
        if now >= wit.exp + self.leeway:
            raise expired("wit")
        self._remember(token, wit, now)
        return wit, now

    def _known_workload(self, identifier: WorkloadIdentifier) -> Any:
        """Remember a workload whose WIT verified; returns its replay prefix (shared: only copied)."""
        prefix = replay_prefix(identifier.value)
        if len(self._workloads) >= _WORKLOADS_KEPT:
            self._workloads.clear()
        self._workloads[identifier.value] = (identifier, prefix)
        return prefix

    def _confirmation_key(self, cnf: object) -> tuple[PublicKey, str]:
        jwk = cnf.get("jwk") if isinstance(cnf, dict) else None
        if not isinstance(jwk, dict):
            raise Reject("wit-cnf", "The WIT has no cnf.jwk confirmation key.")
        alg = jwk.get("alg")
        # Checked here, not left to the key import: an alg outside the configured list is never trusted.
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise Reject("wit-cnf", "The confirmation key's alg is missing or not an allowed algorithm.")
        try:
            # The allow-list, not {alg}: the key's alg member (checked just above) limits it to alg.
            key = import_public_key(jwk, self.algorithms)
        except TokenError as exc:
            raise Reject("wit-cnf", f"The confirmation key is not acceptable: {exc}.") from None
        return key, alg

    def _remember(self, token: bytes, wit: VerifiedWIT, now: float) -> None:
        cache = self._cache
        if len(cache) >= self._cache_size and token not in cache:
            # Make room in one pass, for a batch of inserts: what has expired goes, then the
            # oldest (only verified again) down to 7/8 full, so the pass (O(size)) comes at
            # most once per size/8 inserts. Rebuilt rather than deleted from: a dict whose
            # oldest entries were deleted one by one pays for them on every next(iter()).
            leeway = self.leeway
            live = [(k, v) for k, v in cache.items() if now < v.exp + leeway]
            keep = self._cache_size - max(1, self._cache_size // 8)
            self._cache = dict(live[len(live) - keep :] if len(live) > keep else live)
            cache = self._cache
        cache[token] = wit
