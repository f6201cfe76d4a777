"""The WPT rules (draft-ietf-wimse-wpt section 2.1) and the target URI its ``aud`` must name.

Checked in order, cheap before costly: the header (``typ``, ``alg`` string-equal to the WIT's
``cnf.jwk.alg``), the claims (``exp``, ``jti``, ``wth``, ``aud``, then ``ath``/``tth``/``oth``
against the tokens on the request), and last the signature under ``cnf.jwk``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .claims import HeaderVerdicts, check_times, hash_matches
from .headers import TXN_TOKEN, Found, token_fields
from .problems import Profile, Reject
from .tokens import TokenError, decode_json_object, token_hash
from .wit import VerifiedWIT

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A WebSocket handshake is an HTTP request: ws and wss name the same targets (RFC 6455 3).
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_HEX = "0123456789ABCDEFabcdef"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_BINDING_CLAIMS = frozenset({"ath", "tth", "oth"})
_NOTHING_BOUND: frozenset[str] = frozenset()
_HEADER_CACHE_SIZE = 256

_SHOWN_ORIGINS = 3  # a detail names at most this many expected target URIs
_SHOWN_CHARS = 200  # and each (and a received aud, in a log line) up to this many characters


def _shown(text: str) -> str:
    """A value safe on one log line or in a detail: truncated, quoted, anything but printable
    ASCII backslash-escaped (no line breaks, no terminal controls, no look-alike characters)."""
    return ascii(text[:_SHOWN_CHARS]) + ("..." if len(text) > _SHOWN_CHARS else "")


#: What the WPT checks return: its claims, exp, jti, and the names of the headers it binds.
Proof = tuple[dict[str, Any], float, str, frozenset[str]]


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


def parse_origin(origin: str) -> str:
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


# --- the rules -----------------------------------------------------------------------------


class WPTRules:
    """The checks of one WPT against the verified WIT and the request, configured once."""

    def __init__(
        self,
        *,
        profile: Profile,
        origins: tuple[str, ...],
        audiences: frozenset[str],
        oth_headers: frozenset[str],
        leeway: float,
        max_lifetime: float,
        max_token_bytes: int,
    ) -> None:
        self.profile = profile
        self.origins = origins
        self.audiences = audiences
        self.oth_headers = oth_headers
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.max_token_bytes = max_token_bytes
        # oth header names as the header scan sees them, encoded once.
        self._oth_bytes = {name: name.encode() for name in oth_headers}
        self._headers = HeaderVerdicts("wpt", "wpt+jwt", _HEADER_CACHE_SIZE)

    def check(
        self,
        token: bytes,
        wit: VerifiedWIT,
        now: float,
        path: str,
        route_audiences: Iterable[str],
        found: Found,
        access_token: bytes | None,
    ) -> Proof:
        """Every rule of wpt section 2.1 but replay; returns what the replay check and the
        caller need. ``path`` is the request path with ``root_path``, percent-encoded."""
        # A client sends the same protected header on every request: its verdict is remembered.
        alg, _header, payload, signing_input, signature = self._headers.split(token, self.max_token_bytes)
        # alg names must be string-equal ("EdDSA" and "Ed25519" are different algs here).
        if alg != wit.alg:
            raise Reject("wpt-alg", "The proof's alg is not the alg of the WIT's confirmation key.")
        try:
            claims = decode_json_object(payload)
        except TokenError:
            raise Reject("wpt-malformed", "The workload proof token's claims are not a JSON object.") from None
        exp = check_times(claims, now, "wpt", self.leeway, self.max_lifetime)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise Reject("wpt-claim-invalid", "The jti claim must be a non-empty string.")
        if not hash_matches(claims.get("wth"), wit.wth):
            raise Reject("wpt-wth", "The wth claim does not match the workload identity token sent.")
        self._check_audience(claims.get("aud"), path, route_audiences)
        if access_token is None and len(found) == 2 and _BINDING_CLAIMS.isdisjoint(claims):
            bound = _NOTHING_BOUND  # nothing else on the request, nothing else claimed
        else:
            bound = self._bound_tokens(claims, found, access_token)
        # The signature last among the checks: everything above is cheap, this is not.
        if not wit.key.verify(alg, signing_input, signature):
            raise Reject("wpt-signature", "The proof is not signed by the WIT's confirmation key.")
        return claims, exp, jti, bound

    def _check_audience(self, aud: object, path: str, route_audiences: Iterable[str]) -> None:
        if type(aud) is list and len(aud) == 1:
            aud = aud[0]  # RFC 7519 4.1.3 allows an array; a proof is bound to one target
        if not isinstance(aud, str):
            raise Reject("wpt-claim-invalid", "The aud claim must be a string or an array of one string.")
        target = aud if "?" not in aud and "#" not in aud else aud.partition("?")[0].partition("#")[0]
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
        raise self._audience_reject(aud, path)

    def _audience_reject(self, aud: str, path: str) -> Reject:
        """What to fix: the detail names the target URI expected (configured origins and the
        request's own path); the log line adds the aud received, truncated and escaped."""
        expected = [origin + path for origin in self.origins[:_SHOWN_ORIGINS]]
        shown = ", ".join(_shown(uri) for uri in expected) + (", ..." if len(self.origins) > _SHOWN_ORIGINS else "")
        which = "the target URI" if len(expected) == 1 else "one of the target URIs"
        detail = f"The aud claim must be {which} {shown} or an accepted alias."
        return Reject("wpt-audience", detail, f"expected_aud={_shown(expected[0])} received_aud={_shown(aud)}")

    def _bound_tokens(self, claims: Mapping[str, Any], found: Found, access_token: bytes | None) -> frozenset[str]:
        """ath, tth and oth: each required when its token is on the request, refused when not."""
        bound: list[str] = []
        # ath: the access token. Under wpt-02 Authorization carries the WPT and ath is not
        # defined: an unknown claim, ignored (wpt-02 section 2.3).
        if self.profile == "wpt-01":
            self._check_binding("ath", claims.get("ath"), access_token, "access token")
        if access_token is not None:
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
        if not hash_matches(claim, token_hash(token)):
            raise Reject(f"{claim_name}-mismatch", f"The {claim_name} claim does not match the {what} sent.")

    def _check_oth(self, oth: object, found: Found) -> list[str]:
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
            if not hash_matches(expected, token_hash(values[0].strip(b" \t"))):
                raise Reject("oth-mismatch", f"The oth hash for {name} does not match the header sent.")
        return list(oth)
