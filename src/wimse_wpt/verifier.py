"""The framework-free verifier: the WIT, then every WPT rule, then the replay check.

``await verifier.verify(headers, path=...)`` returns a :class:`VerifiedWorkload` or raises
:class:`~wimse_wpt.problems.VerificationError` whose ``problem`` says why, with a stable code.
All configuration is checked in ``__init__``; per request there is one header scan, a cache
hit for the WIT (its signature and hash were computed when first seen), the WPT's claim
checks, one signature verification, one SHA-256 over the jti, and one replay-cache insert.

The steps live where the specs put them: ``headers`` (the fields, RFC 9110), ``wit``
(workload-creds section 5.1.4, and the cache of verified WITs), ``wpt`` (wpt section 2.1, and
the target URI); :meth:`Verifier.verify` is the checklist that runs them in order.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from .anchors import AnchorConfig, TrustAnchors, logger
from .claims import expired
from .headers import (
    AUTHORIZATION,
    RESERVED_HEADERS,
    TOKEN_CHARS,
    TXN_TOKEN,
    WIT_HEADER,
    WPT_HEADER,
    Header,
    collect,
    proof_and_access_token,
    single,
)
from .problems import PROFILES, Problem, Profile, Reject, VerificationError
from .replay import (
    MemoryReplayCache,
    ReplayCache,
    ReplayCacheFull,
    ReplayQuotaExceeded,
    ReplayStoreUnavailable,
    ReplayStoreUnsafe,
)
from .tokens import DEFAULT_ALGORITHMS, DEFAULT_MAX_TOKEN_BYTES, check_algorithms
from .wit import VerifiedWIT, WITValidator
from .wpt import WPTRules, _normalize_path, _split_origin, normalize_uri, parse_origin, request_path

# Importable from here as before (the middleware and users do).
__all__ = [
    "AUTHORIZATION",
    "RESERVED_HEADERS",
    "TXN_TOKEN",
    "WIT_HEADER",
    "WPT_HEADER",
    "Header",
    "VerifiedWIT",
    "VerifiedWorkload",
    "Verifier",
    "_normalize_path",
    "_parse_origin",
    "_split_origin",
    "normalize_uri",
    "request_path",
]
_parse_origin = parse_origin


_PROBLEMS_KEPT = 512


def _takes_workload(method: Callable[..., Any]) -> bool:
    """A store written for the two-argument protocol would fail every check: refuse it now."""
    try:
        inspect.signature(method).bind(b"", 1.0, "")
    except TypeError:
        return False
    except ValueError:  # no signature to read (a C callable): let it answer for itself
        return True
    return True


@dataclass(frozen=True, slots=True)
class VerifiedWorkload:
    """The caller, proven: who it is, and what its tokens said."""

    identifier: str
    trust_domain: str
    wit_claims: Mapping[str, Any]
    wpt_claims: Mapping[str, Any]
    #: Lowercase names of the request headers whose tokens the WPT binds (ath/tth/oth).
    bound_tokens: frozenset[str] = field(default_factory=frozenset)


# A frozen dataclass's __init__ sets each field through object.__setattr__; the verifier
# builds one per request by its slots' own setters instead, at half the cost (same object).
_SET_FIELDS = tuple(getattr(VerifiedWorkload, f.name).__set__ for f in fields(VerifiedWorkload))


def _workload(
    identifier: str, trust_domain: str, wit_claims: Mapping[str, Any], wpt_claims: Mapping[str, Any], bound: frozenset[str]
) -> VerifiedWorkload:
    workload = object.__new__(VerifiedWorkload)
    set_identifier, set_domain, set_wit_claims, set_wpt_claims, set_bound = _SET_FIELDS
    set_identifier(workload, identifier)
    set_domain(workload, trust_domain)
    set_wit_claims(workload, wit_claims)
    set_wpt_claims(workload, wpt_claims)
    set_bound(workload, bound)
    return workload


class Verifier:
    """Verifies the WIT and WPT of one request. Construct once; ``verify`` is async and re-entrant.

    Args:
        trust_anchors: :class:`TrustAnchors`, or a mapping of trust domain to JWKS / key sources.
        origins: the trusted origins of this service (``https://api.example.com``); the
            expected ``aud`` is built from them and the request path, never from ``Host``.
        profile: ``"wpt-01"`` (``Workload-Proof-Token`` header, ``ath`` over a Bearer or DPoP
            access token, 400 problems) or
            ``"wpt-02"`` (``Authorization: WPT``, 401 problems).
        replay_cache: where ``(workload, jti)`` pairs are kept; default a
            :class:`MemoryReplayCache`.
        audiences: deployment-wide aliases accepted as ``aud`` besides the target URI.
        oth_headers: header names whose tokens an ``oth`` claim may bind (and must, when sent).
        algorithms: allowed JWS algorithms for WITs and WPTs (asymmetric only).
        leeway: seconds of clock skew tolerated on ``exp`` and ``nbf`` (default 0); replay
            entries are kept 3 × leeway past ``exp``, for replicas skewed either way.
        max_wpt_lifetime: reject a WPT whose ``exp`` is further away than this (seconds).
        max_wit_lifetime: reject a WIT whose ``exp`` is further away than this (seconds).
        max_token_bytes: cap on each WIT and WPT, checked before any parsing.
        wit_cache_size: how many verified WITs to keep (each until it expires).
        clock: returns the current time in seconds since the epoch (inject for tests).
    """

    def __init__(
        self,
        trust_anchors: TrustAnchors | Mapping[str, AnchorConfig],
        origins: Iterable[str],
        *,
        profile: Profile = "wpt-01",
        replay_cache: ReplayCache | None = None,
        audiences: Iterable[str] = (),
        oth_headers: Iterable[str] = (),
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: float = 0.0,
        max_wpt_lifetime: float = 300.0,
        max_wit_lifetime: float = 24 * 3600.0,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        wit_cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
        self.profile: Profile = profile
        self.algorithms = check_algorithms(algorithms)
        self.anchors = (
            trust_anchors
            if isinstance(trust_anchors, TrustAnchors)
            else TrustAnchors(trust_anchors, algorithms=self.algorithms)
        )
        if isinstance(origins, str):
            origins = [origins]
        self.origins = tuple(dict.fromkeys(parse_origin(o) for o in origins))
        if not self.origins:
            raise ValueError("at least one trusted origin is required to check aud")
        self.audiences = frozenset(self.check_audiences(audiences))
        self.oth_headers = frozenset(self._check_oth_names(oth_headers))
        if not 0 <= leeway <= 300:
            raise ValueError("leeway must be between 0 and 300 seconds")
        if not 0 < max_wpt_lifetime <= 3600:
            raise ValueError("max_wpt_lifetime must be more than 0 and at most 3600 seconds")
        if not 0 < max_wit_lifetime <= 30 * 24 * 3600:
            raise ValueError("max_wit_lifetime must be more than 0 and at most 30 days")
        if not isinstance(max_token_bytes, int) or not 512 <= max_token_bytes <= 65536:
            raise ValueError("max_token_bytes must be an integer between 512 and 65536")
        if not isinstance(wit_cache_size, int) or wit_cache_size < 1:
            raise ValueError("wit_cache_size must be a positive integer")
        self.leeway = float(leeway)
        self.max_wpt_lifetime = float(max_wpt_lifetime)
        self.max_wit_lifetime = float(max_wit_lifetime)
        self.max_token_bytes = max_token_bytes
        # The default cache keeps time on the verifier's own clock: the TTL is computed on it, so a
        # wall clock stepped back cannot outlive the entry while the proof is still accepted.
        self.replay_cache = replay_cache if replay_cache is not None else MemoryReplayCache(timer=clock)
        self._clock = clock
        self._wits = WITValidator(
            self.anchors,
            self.algorithms,
            leeway=self.leeway,
            max_lifetime=self.max_wit_lifetime,
            max_token_bytes=max_token_bytes,
            cache_size=wit_cache_size,
            clock=clock,
        )
        self._wpt = WPTRules(
            profile=profile,
            origins=self.origins,
            audiences=self.audiences,
            oth_headers=self.oth_headers,
            leeway=self.leeway,
            max_lifetime=self.max_wpt_lifetime,
            max_token_bytes=max_token_bytes,
        )
        self._problems: dict[tuple[str, str], Problem] = {}
        # The one header scan keeps only these names.
        self._wanted = frozenset({WIT_HEADER, WPT_HEADER, AUTHORIZATION, TXN_TOKEN, *(n.encode() for n in self.oth_headers)})

    @property
    def replay_cache(self) -> ReplayCache:
        return self._replay_cache

    @replay_cache.setter
    def replay_cache(self, cache: ReplayCache) -> None:
        if not isinstance(cache, ReplayCache) or not _takes_workload(cache.check_and_record):
            raise ValueError("replay_cache must have an async check_and_record(key, ttl, workload) method")
        self._replay_cache = cache
        # The in-memory cache answers at once: call it without a coroutine on the hot path.
        self._record_sync = cache.check_and_record_sync if type(cache) is MemoryReplayCache else None

    @staticmethod
    def check_audiences(audiences: Iterable[str]) -> list[str]:
        """Normalize audience aliases at configuration time; raise ValueError for a bad one."""
        if isinstance(audiences, str):
            audiences = [audiences]
        result = []
        for alias in audiences:
            normalized = normalize_uri(alias)
            if normalized is None:
                raise ValueError(f"audience alias {alias!r} is not an absolute http(s) URI")
            result.append(normalized)
        return result

    @staticmethod
    def _check_oth_names(names: Iterable[str]) -> list[str]:
        if isinstance(names, str):
            names = [names]
        result = []
        for name in names:
            lowered = name.strip().lower()
            if not lowered or not set(lowered) <= TOKEN_CHARS:
                raise ValueError(f"oth header {name!r} is not a valid header field name")
            if lowered in RESERVED_HEADERS:
                raise ValueError(f"{name!r} cannot be an oth header: ath, tth and wth bind it")
            result.append(lowered)
        return result

    # --- entry point -----------------------------------------------------------------------

    async def verify(
        self,
        headers: Iterable[Header],
        *,
        path: str,
        root_path: str = "",
        method: str = "GET",
        audiences: Iterable[str] = (),
    ) -> VerifiedWorkload:
        """Verify one request.

        Args:
            headers: the header fields as received, duplicates kept (ASGI's list of byte
                pairs, or str pairs).
            path: the request path as sent, percent-encoded (ASGI ``raw_path``), no query.
            root_path: the ASGI ``root_path`` the service is mounted under.
            method: the request method. Neither profile binds it; it is taken so that the
                request is described whole.
            audiences: extra ``aud`` values accepted for this route, normalized with
                :meth:`check_audiences` (the middleware does that once per route).
        """
        del method  # not bound by wpt-01 or wpt-02
        wit: VerifiedWIT | None = None
        try:
            found = collect(headers, self._wanted)
            now = self._clock()
            # Step 1, the credential: until it verifies we have no key to trust.
            wit_token = single(found.get(WIT_HEADER), "wit", self.max_token_bytes)
            wit = self._wits.lookup(wit_token, now)
            if wit is None:  # first sight, expired, or its domain's keys changed: verify it now
                wit, now = await self._wits.validate(wit_token, now)  # now: after the key source
            # Step 2, the proof: every WPT rule, its signature under the WIT's key last.
            wpt_token, access_token = proof_and_access_token(found, self.profile, self.max_token_bytes)
            target = request_path(path, root_path) if root_path else path
            claims, exp, jti, bound = self._wpt.check(wpt_token, wit, now, target, audiences, found, access_token)
            # Step 3, replay, last of all so that a refused request never burns a jti. The entry
            # outlives acceptance anywhere: a recorder up to leeway ahead of true time, a replica
            # up to leeway behind (accepting until true exp + 2 * leeway): 3 * leeway.
            key = wit.replay_prefix.copy()  # the replay key: SHA-256 over (workload, jti)
            key.update(jti.encode("utf-8", "surrogatepass"))
            ttl = exp - now + 3 * self.leeway
            try:
                if self._record_sync is not None:  # the in-memory cache: no need to await
                    first = self._record_sync(key.digest(), ttl, wit.identifier)
                else:
                    first = await self.replay_cache.check_and_record(key.digest(), ttl, wit.identifier)
            except Exception as exc:
                raise self._replay_refusal(exc) from None
            if not first:
                raise Reject("wpt-replayed", "This proof (workload and jti) was already used.")
            # A replay store that awaits may have waited too: both tokens must still be valid now.
            if self._record_sync is None:
                now = self._clock()
                if now >= wit.exp + self.leeway:
                    raise expired("wit")
                if now >= exp + self.leeway:
                    raise expired("wpt")
        except Reject as reject:
            raise VerificationError(self._problem(reject), wit.identifier if wit else None) from None
        return _workload(wit.identifier, wit.trust_domain, wit.claims, MappingProxyType(claims), bound)

    def _problem(self, reject: Reject) -> Problem:
        """The problem for a refusal. Problems are immutable and the details a fixed set (bar
        those with a log context): each is built once, so refusing costs little."""
        if reject.log_context is not None:
            return Problem.of(reject.code, reject.detail, self.profile, reject.log_context)
        key = (reject.code, reject.detail)
        problem = self._problems.get(key)
        if problem is None:
            if len(self._problems) >= _PROBLEMS_KEPT:  # a bound all the same
                self._problems.clear()
            problem = self._problems[key] = Problem.of(reject.code, reject.detail, self.profile)
        return problem

    # --- replay ------------------------------------------------------------------------------

    def _replay_refusal(self, exc: Exception) -> Reject:
        """The refusal for a replay store that could not record: it never waves a proof through."""
        if isinstance(exc, ReplayQuotaExceeded):  # only this sender, over its share; the others keep theirs
            return Reject("replay-quota-exceeded", "This workload holds its whole share of the replay cache.")
        if isinstance(exc, ReplayCacheFull):
            return Reject("replay-cache-full", "The replay cache is full; the proof cannot be checked for replay.")
        if isinstance(exc, ReplayStoreUnsafe):
            detail = "The replay store may have forgotten recorded proofs; the proof cannot be checked for replay."
            return Reject("replay-store-unsafe", detail)
        if isinstance(exc, ReplayStoreUnavailable):
            return Reject("replay-store-unavailable", "The replay store did not answer; the proof cannot be checked for replay.")
        # A store of the user's that fails some other way: fail closed.
        logger.error("replay store %s raised %s; refusing", type(self.replay_cache).__name__, type(exc).__name__)
        return Reject("replay-store-unavailable", "The replay store failed; the proof cannot be checked for replay.")
