"""The framework-free verifier: WIT, then every WPT rule, then the replay check.

``await verifier.verify(headers, path=...)`` returns a :class:`VerifiedWorkload` or raises
:class:`~wimse_wpt.problems.VerificationError` whose ``problem`` says why, with a stable code.
All configuration is checked in ``__init__``; per request there is one header scan, one
SHA-256 of the WIT, a cache hit for the WIT (its signature was verified when first seen), the
WPT's claim checks, one signature verification, and one replay-cache insert.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

from .anchors import AnchorConfig, TrustAnchors, logger
from .headers import (
    AUTHORIZATION,
    RESERVED_HEADERS,
    TOKEN_CHARS,
    TXN_TOKEN,
    WIT_HEADER,
    WPT_HEADER,
    Header,
    collect,
    parse_authorization,
    single,
    sized,
    token_fields,
)
from .identifiers import parse_identifier
from .problems import PROFILES, Problem, Profile, Reject, VerificationError
from .replay import MemoryReplayCache, ReplayCache, ReplayCacheFull, ReplayStoreUnavailable, replay_key
from .tokens import (
    DEFAULT_ALGORITHMS,
    DEFAULT_MAX_TOKEN_BYTES,
    PublicKey,
    TokenError,
    b64url_decode,
    check_algorithms,
    check_header,
    decode_json_object,
    import_public_key,
    parse_compact,
    token_hash,
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A WebSocket handshake is an HTTP request: ws and wss name the same targets (RFC 6455 3).
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_HEX = "0123456789ABCDEFabcdef"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

# What ath binds under wpt-01: an OAuth access token, Bearer (RFC 6750) or DPoP (RFC 9449).
_ACCESS_TOKEN_SCHEMES = frozenset({b"bearer", b"dpop"})
_MALFORMED_AUTHORIZATION = "The Authorization field is not an auth-scheme, 1*SP and credentials (RFC 9110 11.4)."
_BINDING_CLAIMS = frozenset({"ath", "tth", "oth"})
_NOTHING_BOUND: frozenset[str] = frozenset()
_HEADER_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class VerifiedWorkload:
    """The caller, proven: who it is, and what its tokens said."""

    identifier: str
    trust_domain: str
    wit_claims: Mapping[str, Any]
    wpt_claims: Mapping[str, Any]
    #: Lowercase names of the request headers whose tokens the WPT binds (ath/tth/oth).
    bound_tokens: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class _VerifiedWIT:
    identifier: str
    trust_domain: str
    claims: Mapping[str, Any]
    key: PublicKey  # cnf.jwk, imported once
    alg: str  # cnf.jwk.alg: the WPT's alg must equal it
    exp: float
    anchors_generation: int
    wth: str  # base64url(SHA-256(WIT)), what the WPT's wth claim must equal


# --- target URIs ---------------------------------------------------------------------------


def _normalize_path(path: str) -> str | None:
    """RFC 3986 6.2.2: uppercase percent-encodings, decode unreserved ones. None if invalid."""
    if "%" not in path:
        return path or "/"
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        ch = path[i]
        if ch == "%":
            pair = path[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                return None
            decoded = chr(int(pair, 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + pair.upper())
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out) or "/"


def _split_origin(parts: SplitResult) -> str | None:
    scheme = _SCHEMES.get(parts.scheme.lower(), "")
    if not scheme or parts.username is not None or parts.password is not None:
        return None
    host = parts.hostname
    if not host:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def normalize_uri(uri: object) -> str | None:
    """The comparable form of an http(s) URI: no query or fragment, RFC 3986 normalized."""
    if not isinstance(uri, str) or not uri.isascii() or len(uri) > 8192:
        return None
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    origin = _split_origin(parts)
    path = _normalize_path(parts.path)
    if origin is None or path is None:
        return None
    return origin + path


def _parse_origin(origin: str) -> str:
    try:
        parts = urlsplit(origin)
    except ValueError:
        parts = None
    normalized = _split_origin(parts) if parts else None
    if normalized is None or parts is None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"origin {origin!r} must be scheme://host[:port] with scheme http or https, "
            "and no path, query, fragment or userinfo"
        )
    return normalized


def request_path(path: str, root_path: str = "") -> str:
    """The path as the client addressed it. ASGI servers differ on whether ``path`` already
    includes ``root_path`` (uvicorn's does); both conventions give the same result here."""
    if root_path and not (path == root_path or path.startswith(root_path.rstrip("/") + "/")):
        return root_path.rstrip("/") + path
    return path


# --- the verifier --------------------------------------------------------------------------


# NumericDates (RFC 7519 section 2) are accepted in [0, 2**53): every real date is far inside,
# and no int of an attacker's choosing ever reaches float() (10**400 overflows it).
_MAX_NUMERIC_DATE: Final = 2**53


def _numeric_date(value: object) -> float | None:
    """A claim's NumericDate as a float, or None if it is not a number in the sane range."""
    if type(value) is int:  # not bool, which is an int subclass
        return float(value) if 0 <= value < _MAX_NUMERIC_DATE else None
    if type(value) is float:  # NaN fails both comparisons; infinities fail one
        return value if 0.0 <= value < _MAX_NUMERIC_DATE else None
    return None


def _hash_matches(claim: object, expected: str) -> bool:
    return isinstance(claim, str) and claim.isascii() and hmac.compare_digest(claim, expected)


class Verifier:
    """Verifies the WIT and WPT of one request. Construct once; ``verify`` is async and re-entrant.

    Args:
        trust_anchors: :class:`TrustAnchors`, or a mapping of trust domain to JWKS / key sources.
        origins: the trusted origins of this service (``https://api.example.com``); the
            expected ``aud`` is built from them and the request path, never from ``Host``.
        profile: ``"wpt-01"`` (``Workload-Proof-Token`` header, ``ath``, 400 problems) or
            ``"wpt-02"`` (``Authorization: WPT``, 401 problems).
        replay_cache: where ``(workload, jti)`` pairs are kept; default a
            :class:`MemoryReplayCache`.
        audiences: deployment-wide aliases accepted as ``aud`` besides the target URI.
        oth_headers: header names whose tokens an ``oth`` claim may bind (and must, when sent).
        algorithms: allowed JWS algorithms for WITs and WPTs (asymmetric only).
        leeway: seconds of clock skew tolerated on ``exp`` (default 0).
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
        self.origins = tuple(dict.fromkeys(_parse_origin(o) for o in origins))
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
        self.replay_cache = replay_cache if replay_cache is not None else MemoryReplayCache()
        self._clock = clock
        # Verified WITs by the SHA-256 of the WIT as sent (wth, undecoded): plain dicts,
        # because they are read on every request.
        self._wits: dict[bytes, _VerifiedWIT] = {}
        self._wit_cache_size = wit_cache_size
        self._wpt_headers: dict[bytes, str] = {}
        self._wpt_header = WPT_HEADER if profile == "wpt-01" else AUTHORIZATION
        # oth header names as the header scan sees them, encoded once.
        self._oth_bytes = {name: name.encode() for name in self.oth_headers}
        self._wanted = frozenset({WIT_HEADER, WPT_HEADER, AUTHORIZATION, TXN_TOKEN, *self._oth_bytes.values()})

    @property
    def replay_cache(self) -> ReplayCache:
        return self._replay_cache

    @replay_cache.setter
    def replay_cache(self, cache: ReplayCache) -> None:
        if not isinstance(cache, ReplayCache):
            raise ValueError("replay_cache must have an async check_and_record(key, ttl) method")
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
        wit: _VerifiedWIT | None = None
        try:
            found = collect(headers, self._wanted)
            now = self._clock()
            # The credential first: until it verifies we have no key to trust.
            wit_token = single(found.get(WIT_HEADER), "wit", self.max_token_bytes)
            digest = hashlib.sha256(wit_token).digest()
            wit = self._wits.get(digest)
            if (
                wit is None
                or now >= wit.exp + self.leeway
                or wit.anchors_generation != self.anchors.generation(wit.trust_domain)
            ):
                # First sight, expired, or the domain's keys changed since: verify it now.
                wit = None
                verified = await self._verify_wit(wit_token, now)
                # The key source may have waited (a JWKS fetch): every later check uses fresh time.
                now = self._clock()
                if now >= verified.exp + self.leeway:
                    raise Reject("wit-expired", "The workload identity token has expired.")
                self._remember_wit(digest, verified, now)
                wit = verified
            wpt_token, bearer = self._proof_and_bearer(found)
            alg, payload, signing_input, signature = self._split_wpt(wpt_token)
            # alg names must be string-equal ("EdDSA" and "Ed25519" are different algs here).
            if alg != wit.alg:
                raise Reject("wpt-alg", "The proof's alg is not the alg of the WIT's confirmation key.")
            try:
                claims = decode_json_object(payload)
            except TokenError:
                raise Reject("wpt-malformed", "The workload proof token's claims are not a JSON object.") from None
            exp = self._check_exp(claims, now, "wpt", self.max_wpt_lifetime)
            jti = claims.get("jti")
            if not isinstance(jti, str) or not jti:
                raise Reject("wpt-claim-invalid", "The jti claim must be a non-empty string.")
            if not _hash_matches(claims.get("wth"), wit.wth):
                raise Reject("wpt-wth", "The wth claim does not match the workload identity token sent.")
            self._check_audience(claims.get("aud"), request_path(path, root_path), audiences)
            if bearer is None and len(found) == 2 and _BINDING_CLAIMS.isdisjoint(claims):
                bound = _NOTHING_BOUND  # nothing else on the request, nothing else claimed
            else:
                bound = self._check_bound_tokens(claims, found, bearer)
            # The signature last among the checks: everything above is cheap, this is not.
            if not wit.key.verify(alg, signing_input, signature):
                raise Reject("wpt-signature", "The proof is not signed by the WIT's confirmation key.")
            # Replay last of all, so a refused request never burns a jti. A recorder up to leeway
            # ahead, a replica up to leeway behind (accepting until true exp + 2 * leeway): 3 * leeway.
            await self._check_replay(wit.identifier, jti, exp - now + 3 * self.leeway)
            # A replay store may have waited too: the proof must still be valid now.
            if self._clock() >= exp + self.leeway:
                raise Reject("wpt-expired", "The workload proof token has expired.")
        except Reject as reject:
            problem = Problem.of(reject.code, reject.detail, self.profile)
            raise VerificationError(problem, wit.identifier if wit else None) from None
        return VerifiedWorkload(wit.identifier, wit.trust_domain, wit.claims, MappingProxyType(claims), bound)

    def _split_wpt(self, token: bytes) -> tuple[str, bytes, bytes, bytes]:
        """alg, payload, signing input and signature of a WPT.

        A client sends the same protected header on every request, so a header that passed
        its checks is remembered (a bounded set) and only the payload and signature are decoded.
        """
        header_b64, dot, rest = token.partition(b".")
        alg = self._wpt_headers.get(header_b64)
        if alg is not None:
            payload_b64, dot2, signature_b64 = rest.partition(b".")
            if dot2 and payload_b64 and signature_b64 and b"." not in signature_b64:
                try:
                    payload, signature = b64url_decode(payload_b64), b64url_decode(signature_b64)
                except TokenError as exc:
                    raise self._header_reject("wpt", exc) from None
                return alg, payload, token[: len(header_b64) + 1 + len(payload_b64)], signature
        try:
            compact = parse_compact(token, self.max_token_bytes)
            alg = check_header(compact.header, "wpt+jwt")
        except TokenError as exc:
            raise self._header_reject("wpt", exc) from None
        if len(self._wpt_headers) >= _HEADER_CACHE_SIZE:
            self._wpt_headers.clear()
        self._wpt_headers[header_b64] = alg
        return alg, compact.payload, compact.signing_input, compact.signature

    def _remember_wit(self, digest: bytes, wit: _VerifiedWIT, now: float) -> None:
        wits = self._wits
        if len(wits) >= self._wit_cache_size:
            # Make room: first what has expired, then the oldest (it is only verified again).
            for key in [k for k, v in wits.items() if now >= v.exp + self.leeway]:
                del wits[key]
            while len(wits) >= self._wit_cache_size:
                del wits[next(iter(wits))]
        wits[digest] = wit

    # --- headers -----------------------------------------------------------------------------

    def _proof_and_bearer(self, found: dict[bytes, list[bytes]]) -> tuple[bytes, bytes | None]:
        """The WPT, and under wpt-01 the access token (Bearer or DPoP) that ``ath`` must bind."""
        authorizations = found.get(AUTHORIZATION)
        credentials = None
        if authorizations:
            if len(authorizations) > 1:  # field lines: auth-params hold commas (RFC 9110 11.6.2)
                raise Reject("authorization-multiple", "Exactly one Authorization field is allowed.")
            credentials = parse_authorization(authorizations[0])
            if credentials is None:
                raise Reject("authorization-malformed", _MALFORMED_AUTHORIZATION)
        if self.profile == "wpt-02":
            if credentials is None or credentials.scheme != b"wpt":
                raise Reject("wpt-missing", "The request carries no Authorization: WPT field.")
            if credentials.token68 is None:
                raise Reject("authorization-malformed", "The Authorization field must be WPT and one token.")
            return sized(credentials.token68, "wpt", self.max_token_bytes), None
        token = single(found.get(WPT_HEADER), "wpt", self.max_token_bytes)
        if credentials is None or credentials.scheme not in _ACCESS_TOKEN_SCHEMES:
            return token, None
        if credentials.token68 is None:
            # A lenient downstream parser could still read a token here: refuse, never pass it unbound.
            raise Reject("authorization-malformed", f"{credentials.scheme.decode()} credentials must be one token68.")
        return token, credentials.token68

    # --- the WIT -----------------------------------------------------------------------------

    async def _verify_wit(self, token: bytes, now: float) -> _VerifiedWIT:
        try:
            compact = parse_compact(token, self.max_token_bytes)
            alg = check_header(compact.header, "wit+jwt")
        except TokenError as exc:
            raise self._header_reject("wit", exc) from None
        if alg not in self.algorithms:
            raise Reject("wit-alg", "The workload identity token's alg is not allowed.")
        kid = compact.header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Reject("wit-malformed", "The kid header must be a string.")
        try:
            claims = decode_json_object(compact.payload)
        except TokenError:
            raise Reject("wit-malformed", "The workload identity token's claims are not a JSON object.") from None
        try:
            identifier = parse_identifier(claims.get("sub"))
        except ValueError:
            raise Reject("wit-subject", "The sub claim is not a canonical workload identifier.") from None
        if identifier.trust_domain not in self.anchors.trust_domains:
            raise Reject("wit-trust-domain", "The workload's trust domain is not trusted here.")
        exp = self._check_exp(claims, now, "wit", self.max_wit_lifetime)
        cnf_key, cnf_alg = self._confirmation_key(claims.get("cnf"))
        generation = self.anchors.generation(identifier.trust_domain)
        anchor = await self.anchors.find_key(identifier.trust_domain, kid, alg)
        if not anchor.verify(alg, compact.signing_input, compact.signature):
            raise Reject("wit-signature", "The workload identity token's signature does not verify.")
        return _VerifiedWIT(
            identifier.value,
            identifier.trust_domain,
            MappingProxyType(claims),
            cnf_key,
            cnf_alg,
            exp,
            generation,
            token_hash(token),
        )

    def _confirmation_key(self, cnf: object) -> tuple[PublicKey, str]:
        jwk = cnf.get("jwk") if isinstance(cnf, dict) else None
        if not isinstance(jwk, dict):
            raise Reject("wit-cnf", "The WIT has no cnf.jwk confirmation key.")
        alg = jwk.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise Reject("wit-cnf", "The confirmation key's alg is missing or not an allowed algorithm.")
        try:
            key = import_public_key(jwk, frozenset({alg}))
        except TokenError as exc:
            raise Reject("wit-cnf", f"The confirmation key is not acceptable: {exc}.") from None
        return key, alg

    # --- shared claim checks -----------------------------------------------------------------

    @staticmethod
    def _header_reject(which: str, exc: TokenError) -> Reject:
        reason = str(exc)
        if reason == "typ":
            media = "wit+jwt" if which == "wit" else "wpt+jwt"
            return Reject(f"{which}-type", f"The typ header must be {media}.")
        if reason == "crit":
            return Reject(f"{which}-crit", "Critical header extensions (crit, b64) are not supported.")
        if reason == "alg":
            return Reject(f"{which}-malformed", "The alg header must be a string.")
        if reason == "token too large":
            return Reject(f"{which}-too-large", "The token is too large.")
        return Reject(f"{which}-malformed", f"The token is not a well-formed compact JWS: {reason}.")

    def _check_exp(self, claims: Mapping[str, Any], now: float, which: str, max_lifetime: float) -> float:
        name = "workload identity token" if which == "wit" else "workload proof token"
        exp = _numeric_date(claims.get("exp"))
        if exp is None:
            raise Reject(f"{which}-claim-invalid", f"The {name} needs a numeric exp claim.")
        if now >= exp + self.leeway:
            raise Reject(f"{which}-expired", f"The {name} has expired.")
        if exp - now > max_lifetime + self.leeway:
            raise Reject(f"{which}-lifetime", f"The {name} expires too far in the future.")
        if "nbf" in claims:
            nbf = _numeric_date(claims["nbf"])
            if nbf is None or now + self.leeway < nbf:
                raise Reject(f"{which}-claim-invalid", f"The {name} is not valid yet (nbf).")
        return exp

    def _check_audience(self, aud: object, path: str, route_audiences: Iterable[str]) -> None:
        if type(aud) is list and len(aud) == 1:
            aud = aud[0]  # RFC 7519 4.1.3 allows an array; a proof is bound to one target
        if not isinstance(aud, str):
            raise Reject("wpt-claim-invalid", "The aud claim must be a string or an array of one string.")
        target = aud.partition("?")[0].partition("#")[0]
        for origin in self.origins:
            if target == origin + path:
                return
        normalized = normalize_uri(aud)
        if normalized is not None:
            expected_path = _normalize_path(path)
            if expected_path is not None and any(normalized == o + expected_path for o in self.origins):
                return
            if normalized in self.audiences or normalized in route_audiences:
                return
        raise Reject("wpt-audience", "The aud claim is not this request's target URI or an accepted alias.")

    def _check_bound_tokens(
        self, claims: Mapping[str, Any], found: dict[bytes, list[bytes]], bearer: bytes | None
    ) -> frozenset[str]:
        bound: list[str] = []
        # ath: the access token. Under wpt-02 Authorization carries the WPT and ath is not
        # defined: an unknown claim, ignored (wpt-02 section 2.3).
        if self.profile == "wpt-01":
            self._check_binding("ath", claims.get("ath"), bearer, "access token")
        if bearer is not None:
            bound.append("authorization")
        txn = found.get(TXN_TOKEN)
        if token_fields(txn) > 1:
            raise Reject("txn-token-multiple", "Exactly one Txn-Token field is allowed.")
        txn_token = txn[0].strip(b" \t") if txn else None
        self._check_binding("tth", claims.get("tth"), txn_token, "transaction token")
        if txn_token is not None:
            bound.append("txn-token")
        bound += self._check_oth(claims.get("oth"), found)
        return frozenset(bound)

    @staticmethod
    def _check_binding(claim_name: str, claim: object, token: bytes | None, what: str) -> None:
        if token is None:
            if claim is not None:
                raise Reject(f"{claim_name}-unexpected", f"The {claim_name} claim binds an {what} the request does not carry.")
            return
        if claim is None:
            raise Reject(f"{claim_name}-missing", f"The request carries an {what} but the proof has no {claim_name} claim.")
        if not _hash_matches(claim, token_hash(token)):
            raise Reject(f"{claim_name}-mismatch", f"The {claim_name} claim does not match the {what} sent.")

    def _check_oth(self, oth: object, found: dict[bytes, list[bytes]]) -> list[str]:
        present = [name for name, raw in self._oth_bytes.items() if raw in found]
        if oth is None:
            if present:
                raise Reject("oth-missing", "A token header on the request is not bound by an oth claim.")
            return []
        if not isinstance(oth, dict) or not oth:
            raise Reject("wpt-claim-invalid", "The oth claim must be a non-empty JSON object.")
        for name in oth:
            if name not in self.oth_headers:
                # An entry we do not understand: the WPT MUST be rejected.
                raise Reject("oth-unknown", "The oth claim binds a header this service does not accept.")
        for name in present:
            if name not in oth:
                raise Reject("oth-missing", f"The {name} header is not bound by the oth claim.")
        for name, expected in oth.items():
            values = found.get(self._oth_bytes[name])  # every name was checked against oth_headers
            if not values:
                raise Reject("oth-unexpected", f"The oth claim binds a {name} header the request does not carry.")
            if len(values) > 1:
                raise Reject("oth-header-multiple", f"The {name} header occurs more than once.")
            if not _hash_matches(expected, token_hash(values[0].strip(b" \t"))):
                raise Reject("oth-mismatch", f"The oth hash for {name} does not match the header sent.")
        return list(oth)

    async def _check_replay(self, workload: str, jti: str, ttl: float) -> None:
        key = replay_key(workload, jti)
        try:
            if self._record_sync is not None:  # the in-memory cache: no need to await
                first = self._record_sync(key, ttl)
            else:
                first = await self.replay_cache.check_and_record(key, ttl)
        except ReplayCacheFull:
            raise Reject("replay-cache-full", "The replay cache is full; the proof cannot be checked for replay.") from None
        except ReplayStoreUnavailable:
            detail = "The replay store did not answer; the proof cannot be checked for replay."
            raise Reject("replay-store-unavailable", detail) from None
        except Exception as exc:  # a store of the user's that fails some other way: fail closed
            logger.error("replay store %s raised %s; refusing", type(self.replay_cache).__name__, type(exc).__name__)
            raise Reject("replay-store-unavailable", "The replay store failed; the proof cannot be checked for replay.") from None
        if not first:
            raise Reject("wpt-replayed", "This proof (workload and jti) was already used.")
