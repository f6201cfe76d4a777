"""The request's header fields as the verifier reads them: one scan, field counts, and the
``Authorization`` field parsed per RFC 9110 sections 11.4 and 11.6.2.

Everything here is a pure function of the bytes received; refusals are :class:`Reject`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, NamedTuple

from .problems import Reject

WIT_HEADER: Final = b"workload-identity-token"
WPT_HEADER: Final = b"workload-proof-token"
AUTHORIZATION: Final = b"authorization"
TXN_TOKEN: Final = b"txn-token"
#: Header names the verifier owns; none of them can be configured as an ``oth`` header.
RESERVED_HEADERS: Final = frozenset(h.decode() for h in (WIT_HEADER, WPT_HEADER, AUTHORIZATION, TXN_TOKEN))
#: The characters of an RFC 9110 token (field names, auth-schemes), lowercase.
TOKEN_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")

Header = tuple[bytes | str, bytes | str]
Found = dict[bytes, list[bytes]]


def collect(headers: Iterable[Header], wanted: frozenset[bytes]) -> Found:
    """The wanted fields by lowercase name, each with every value received, in order."""
    found: Found = {}
    for name, value in headers:
        if type(name) is not bytes and isinstance(name, str):  # str pairs, not ASGI's bytes
            name = name.encode("latin-1", "replace")
        name = name.lower()
        if name in wanted:
            if type(value) is not bytes and isinstance(value, str):
                try:
                    value = value.encode("latin-1")
                except UnicodeEncodeError:
                    value = value.encode("utf-8", "replace")  # type: ignore[union-attr]
            if name in found:
                found[name].append(value)
            else:
                found[name] = [value]
    return found


def token_fields(values: list[bytes] | None) -> int:
    """0, 1, or 2 for "more than one", for fields whose value is one token: a comma (which no
    token holds) means values were joined. (``in`` runs at memchr speed; ``count`` would walk
    an attacker-sized value byte by byte.)"""
    if not values:
        return 0
    if len(values) > 1 or b"," in values[0]:
        return 2
    return 1


def sized(token: bytes, which: str, max_bytes: int) -> bytes:
    """The token without surrounding whitespace; refused when over ``max_bytes`` or empty."""
    # The size first: nothing (not even a hash) runs over an attacker-sized value.
    if len(token) > max_bytes:
        raise Reject(f"{which}-too-large", f"The token exceeds {max_bytes} bytes.")
    token = token.strip(b" \t")
    if not token:
        raise Reject(f"{which}-malformed", "The field is empty.")
    return token


def single(values: list[bytes] | None, which: str, max_bytes: int) -> bytes:
    """The one token of a WIT or WPT field; refused when absent, repeated or comma-joined."""
    if values and len(values[0]) > max_bytes:  # before the comma scan: nothing reads an attacker-sized value
        raise Reject(f"{which}-too-large", f"The token exceeds {max_bytes} bytes.")
    if values and len(values) == 1 and b"," not in values[0]:  # one field, one token: the usual request
        token = values[0].strip(b" \t")
        if token:
            return token
    count = token_fields(values)
    if count == 0:
        name = "Workload-Identity-Token" if which == "wit" else "proof"
        raise Reject(f"{which}-missing", f"The request carries no {name} field.")
    if count > 1:
        raise Reject(f"{which}-multiple", "Exactly one field is allowed; comma-joined values count as many.")
    assert values is not None
    return sized(values[0], which, max_bytes)


# --- Authorization (RFC 9110 11.4: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]) ---

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# The fast path: a scheme alone, or a scheme, 1*SP and a token68 (Bearer, DPoP, WPT, Basic...).
_SCHEME_TOKEN68 = re.compile(rb"(" + _TCHAR + rb"++)(?: ++([A-Za-z0-9\-._~+/]++=*+))?+")
# auth-param = token BWS "=" BWS ( token / quoted-string ). Leniency, for schemes this library
# never reads: an unquoted value may hold any visible character but `"` and `,` (AWS SigV4
# sends `/` and `;` unquoted). #auth-param may hold empty elements (RFC 9110 5.6.1). No two
# alternatives overlap and every repeat is possessive: one linear pass, even on failure.
_AUTH_PARAM = _TCHAR + rb'++[ \t]*+=[ \t]*+(?:[!#-+\--~\x80-\xff]++|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*+")'
_SCHEME_AUTH_PARAMS = re.compile(
    rb"(" + _TCHAR + rb"++) ++(?:,[ \t]*+)*+(?:" + _AUTH_PARAM + rb"(?:[ \t]*+,(?:[ \t]*+" + _AUTH_PARAM + rb")?+)*+)?+"
)


class Credentials(NamedTuple):
    scheme: bytes  # lowercase: auth-schemes compare case-insensitively
    token68: bytes | None  # None for a scheme alone or auth-params


def parse_authorization(value: bytes) -> Credentials | None:
    """The scheme and token68 of one Authorization field value; None if it is malformed."""
    value = value.strip(b" \t")  # OWS around a field value is not part of it (RFC 9110 5.5)
    match = _SCHEME_TOKEN68.fullmatch(value)
    if match is not None:
        return Credentials(match.group(1).lower(), match.group(2))
    match = _SCHEME_AUTH_PARAMS.fullmatch(value)
    if match is None:
        return None
    return Credentials(match.group(1).lower(), None)


# What ath binds under wpt-01: an OAuth access token, Bearer (RFC 6750) or DPoP (RFC 9449).
_ACCESS_TOKEN_SCHEMES: Final = frozenset({b"bearer", b"dpop"})
_SPEAKS_WPT_01: Final = (
    "This service speaks wpt-01: send the proof in a Workload-Proof-Token field, not as Authorization: WPT."
)
_SPEAKS_WPT_02: Final = (
    "This service speaks wpt-02: send the proof as Authorization: WPT, not in a Workload-Proof-Token field."
)
_MALFORMED: Final = "The Authorization field is not an auth-scheme, 1*SP and credentials (RFC 9110 11.4)."


def proof_and_access_token(found: Found, profile: str, max_bytes: int) -> tuple[bytes, bytes | None]:
    """The WPT, and under wpt-01 the access token (Bearer or DPoP) that ``ath`` must bind."""
    authorizations = found.get(AUTHORIZATION)
    credentials = None
    if authorizations:
        if len(authorizations) > 1:  # field lines: auth-params hold commas (RFC 9110 11.6.2)
            raise Reject("authorization-multiple", "Exactly one Authorization field is allowed.")
        credentials = parse_authorization(authorizations[0])
        if credentials is None:
            raise Reject("authorization-malformed", _MALFORMED)
    if profile == "wpt-02":
        if credentials is None or credentials.scheme != b"wpt":
            if WPT_HEADER in found:  # a wpt-01 client: say which profile this service speaks
                raise Reject("wpt-missing", _SPEAKS_WPT_02)
            raise Reject("wpt-missing", "The request carries no Authorization: WPT field.")
        if credentials.token68 is None:
            raise Reject("authorization-malformed", "The Authorization field must be WPT and one token.")
        return sized(credentials.token68, "wpt", max_bytes), None
    proofs = found.get(WPT_HEADER)
    if not proofs and credentials is not None and credentials.scheme == b"wpt":  # a wpt-02 client
        raise Reject("wpt-missing", _SPEAKS_WPT_01)
    token = single(proofs, "wpt", max_bytes)
    if credentials is None or credentials.scheme not in _ACCESS_TOKEN_SCHEMES:
        return token, None
    if credentials.token68 is None:
        # A lenient downstream parser could still read a token here: refuse, never pass it unbound.
        raise Reject("authorization-malformed", f"{credentials.scheme.decode()} credentials must be one token68.")
    return token, credentials.token68
