"""Checks the WIT and the WPT share: NumericDates (``exp``, ``nbf``), hashes, header refusals."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, Final

from .problems import Reject
from .tokens import TokenError, b64url_decode, check_header, decode_json_object, parse_checked

# NumericDates (RFC 7519 section 2) are accepted in [0, 2**53): every real date is far inside,
# and no int of an attacker's choosing ever reaches float() (10**400 overflows it).
MAX_NUMERIC_DATE: Final = 2**53
_NAMES: Final = {"wit": "workload identity token", "wpt": "workload proof token"}


def numeric_date(value: object) -> float | None:
    """A claim's NumericDate as a float, or None if it is not a number in the sane range."""
    if type(value) is int:  # not bool, which is an int subclass
        return float(value) if 0 <= value < MAX_NUMERIC_DATE else None
    if type(value) is float:  # NaN fails both comparisons; infinities fail one
        return value if 0.0 <= value < MAX_NUMERIC_DATE else None
    return None


def check_times(claims: Mapping[str, Any], now: float, which: str, leeway: float, max_lifetime: float) -> float:
    """``exp`` present, not passed and not too far; ``nbf``, when present, passed. Returns exp."""
    exp = numeric_date(claims.get("exp"))
    if exp is None:
        raise Reject(f"{which}-claim-invalid", f"The {_NAMES[which]} needs a numeric exp claim.")
    if now >= exp + leeway:
        raise Reject(f"{which}-expired", f"The {_NAMES[which]} has expired.")
    if exp - now > max_lifetime + leeway:
        raise Reject(f"{which}-lifetime", f"The {_NAMES[which]} expires too far in the future.")
    if "nbf" in claims:
        nbf = numeric_date(claims["nbf"])
        if nbf is None or now + leeway < nbf:
            raise Reject(f"{which}-claim-invalid", f"The {_NAMES[which]} is not valid yet (nbf).")
    return exp


def expired(which: str) -> Reject:
    return Reject(f"{which}-expired", f"The {_NAMES[which]} has expired.")


def hash_matches(claim: object, expected: str) -> bool:
    """A hash claim (wth, ath, tth, oth) equals the expected base64url hash."""
    return isinstance(claim, str) and claim.isascii() and hmac.compare_digest(claim, expected)


def header_reject(which: str, exc: TokenError) -> Reject:
    """The problem for a token the JOSE layer refused (``tokens.check_header``, ``parse_compact``)."""
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


class HeaderVerdicts:
    """Verdicts on JWS protected headers, remembered by the header's base64url bytes (a pure
    function of them): ``(alg, header)`` for one that passes :func:`~wimse_wpt.tokens.check_header`,
    else the :class:`Reject` to raise, rebuilt each time. A client sends the same header on every
    request, and a sender of a bad one is refused at the cost of a lookup. Bounded: cleared when full.
    """

    def __init__(self, which: str, media_type: str, size: int = 256) -> None:
        self.which = which
        self.media_type = media_type
        self.size = size
        self._verdicts: dict[bytes, tuple[str, Mapping[str, Any]] | tuple[str, str]] = {}

    def judge(self, header_b64: bytes) -> tuple[str, Mapping[str, Any]]:
        verdict = self._verdicts.get(header_b64)
        if verdict is None:
            try:
                header = decode_json_object(b64url_decode(header_b64))
                verdict = (check_header(header, self.media_type), header)
            except TokenError as exc:
                reject = header_reject(self.which, exc)
                verdict = (reject.code, reject.detail)
            if len(self._verdicts) >= self.size:
                self._verdicts.clear()
            self._verdicts[header_b64] = verdict
        alg, rest = verdict
        if type(rest) is str:
            raise Reject(alg, rest)
        return verdict  # type: ignore[return-value]

    def split(self, token: bytes, max_bytes: int) -> tuple[str, Mapping[str, Any], bytes, bytes, bytes]:
        """alg, protected header, payload, signing input and signature of one compact JWS
        whose header passes its checks; the header is judged before anything else is decoded."""
        # The size first, then at most four parts: no work grows with an attacker's dots.
        parts = token.split(b".", 3) if len(token) <= max_bytes else ()
        if len(parts) != 3 or not (parts[0] and parts[1] and parts[2]):
            try:  # not three non-empty parts, or too large: the full parse names the fault
                parse_checked(token, max_bytes, self.media_type)
            except TokenError as exc:
                raise header_reject(self.which, exc) from None
            raise AssertionError("parse_checked accepted a token split refused")  # pragma: no cover
        header_b64, payload_b64, signature_b64 = parts
        verdict = self._verdicts.get(header_b64)  # judge()'s hit, without its call
        if verdict is None or type(verdict[1]) is str:
            verdict = self.judge(header_b64)
        try:
            payload, signature = b64url_decode(payload_b64), b64url_decode(signature_b64)
        except TokenError as exc:
            raise header_reject(self.which, exc) from None
        return verdict[0], verdict[1], payload, token[: len(header_b64) + 1 + len(payload_b64)], signature  # type: ignore[return-value]
