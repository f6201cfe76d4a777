"""The client side: a workload's signing key, WPT minting, and an httpx auth that signs
every outgoing request.

``WPTAuth`` follows httpx's own auth flows: one generator serves ``httpx.Client`` and
``httpx.AsyncClient``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import secrets
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc.jwk import ECKey, OKPKey, RSAKey

from .problems import PROFILES, Profile
from .tokens import ALGORITHMS, TokenError, b64url_decode, sign_compact, token_hash

_CURVE_FOR = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "EdDSA": "Ed25519", "Ed25519": "Ed25519"}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with the JWS alg it signs under (the ``alg`` of its public JWK)."""

    key: Any  # a joserfc private key
    alg: str

    @classmethod
    def generate(cls, alg: str = "ES256") -> SigningKey:
        if alg not in ALGORITHMS:
            raise ValueError(f"unsupported alg {alg!r}")
        kty = ALGORITHMS[alg].kty
        if kty == "EC":
            key: Any = ECKey.generate_key(_CURVE_FOR[alg])
        elif kty == "OKP":
            key = OKPKey.generate_key(_CURVE_FOR[alg])  # type: ignore[arg-type]  # Ed25519 here
        else:
            key = RSAKey.generate_key(2048)
        return cls(key, alg)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], alg: str | None = None) -> SigningKey:
        """Load a private JWK; ``alg`` defaults to the JWK's own ``alg`` member."""
        chosen = alg or jwk.get("alg")
        if not isinstance(chosen, str) or chosen not in ALGORITHMS:
            raise ValueError("the key needs a supported alg")
        importers: dict[str, Any] = {"EC": ECKey, "OKP": OKPKey, "RSA": RSAKey}
        importer = importers[ALGORITHMS[chosen].kty]
        key = importer.import_key(dict(jwk))
        if not key.is_private:
            raise ValueError("a signing key must be private")
        return cls(key, chosen)

    def public_jwk(self, **members: Any) -> dict[str, Any]:
        """The public JWK with ``alg`` set: what a WIT's ``cnf.jwk`` carries."""
        jwk = self.key.as_dict(private=False)
        jwk.pop("d", None)
        jwk["alg"] = self.alg
        jwk.update(members)
        return jwk

    def sign(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
        """Sign ``claims``; a header or claim member set to None is left out."""
        head = {k: v for k, v in {"alg": self.alg, **header}.items() if v is not None}
        return sign_compact(head, {k: v for k, v in claims.items() if v is not None}, self.key)


def target_uri(url: httpx.URL | str) -> str:
    """The request's target URI without query or fragment: the ``aud`` of its WPT."""
    url = httpx.URL(url)
    path = url.raw_path.split(b"?", 1)[0].decode("ascii") or "/"
    return f"{url.scheme}://{url.netloc.decode('ascii')}{path}"


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``: hosts whose traffic never leaves the machine."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address in _LOOPBACK_V4 if address.version == 4 else address == _LOOPBACK_V6


_LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.ip_address("::1")


def check_transport(aud: str, allow_insecure: bool = False) -> None:
    """Refuse to sign for a target reached without TLS, except on loopback hosts.

    The drafts require server-authenticated TLS for the WIT, the WPT and the request: over plain
    http anyone on the path reads the WIT and can replay the proof within its lifetime.
    """
    if allow_insecure:
        return
    try:
        url = httpx.URL(aud)
    except (httpx.InvalidURL, TypeError):
        raise ValueError("the target is not a valid URL") from None
    scheme = url.scheme.lower()
    if scheme in ("https", "wss"):
        return
    if scheme in ("http", "ws") and _is_loopback(url.host):
        return
    raise ValueError(
        f"refusing to sign for {scheme}:// to {url.host!r}: use https (plain http only to a loopback host, "
        "or pass allow_insecure=True)"
    )


def wit_expiry(wit: str) -> float | None:
    """The WIT's ``exp``, read without verifying anything (None when it cannot be read)."""
    parts = wit.split(".")
    if len(parts) != 3 or not wit.isascii():
        return None
    try:
        claims = json.loads(b64url_decode(parts[1].encode("ascii")))
    except (TokenError, ValueError, RecursionError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    if isinstance(exp, int):
        return math.inf if exp > 2**53 else float(exp) if exp > -(2**53) else -math.inf
    return exp if not math.isnan(exp) else None


def check_wit_usable(wit: str, now: float) -> None:
    """Refuse to sign with a WIT that has expired, or whose ``exp`` cannot be read: the workload
    key must not be used once its WIT has expired (wpt-02)."""
    exp = wit_expiry(wit)
    if exp is None:
        raise ValueError("the WIT has no readable exp claim; refusing to sign with it")
    if now >= exp:
        raise ValueError("the WIT has expired; refusing to sign with it (obtain a fresh WIT)")


def _token_value(value: str) -> str:
    """A header field's value as the verifier reads it: without the surrounding optional
    whitespace (SP, HTAB) that RFC 9110 section 5.5 excludes from the value."""
    return value.strip(" \t")


def mint_wpt(
    key: SigningKey,
    wit: str,
    aud: str,
    *,
    lifetime: float = 60,
    bearer: str | None = None,
    txn_token: str | None = None,
    other_tokens: Mapping[str, str] | None = None,
    jti: str | None = None,
    now: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    header: Mapping[str, Any] | None = None,
    allow_insecure: bool = False,
    allow_expired_wit: bool = False,
) -> str:
    """Mint one WPT: ``aud``, ``exp``, a 128-bit random ``jti``, ``wth``, and the hashes of
    any bearer (``ath``), Txn-Token (``tth``) and other tokens (``oth``, by header name),
    each hashed as the verifier reads it (surrounding spaces and tabs excluded).
    ``extra_claims`` and ``header`` override anything (tests use them to break rules).

    Raises ValueError for a plain ``http://``/``ws://`` ``aud`` other than a loopback host
    (unless ``allow_insecure``) and for a WIT that has expired at ``now`` or has no readable
    ``exp`` (unless ``allow_expired_wit``, for tests that forge such WITs)."""
    issued = time.time() if now is None else now
    check_transport(aud, allow_insecure)
    if not allow_expired_wit:
        check_wit_usable(wit, issued)
    claims: dict[str, Any] = {
        "aud": aud,
        "exp": int(issued + lifetime),
        "jti": jti if jti is not None else secrets.token_urlsafe(16),
        "wth": token_hash(_token_value(wit)),
    }
    if bearer is not None:
        claims["ath"] = token_hash(_token_value(bearer))
    if txn_token is not None:
        claims["tth"] = token_hash(_token_value(txn_token))
    if other_tokens:
        claims["oth"] = {name.lower(): token_hash(_token_value(value)) for name, value in other_tokens.items()}
    claims.update(extra_claims or {})
    return key.sign({"typ": "wpt+jwt", **(header or {})}, claims)


class WPTAuth(httpx.Auth):
    """Sign every request: the WIT header plus a fresh WPT bound to the request.

    Args:
        key: the workload's private key (the one the WIT's ``cnf.jwk`` names).
        wit: the WIT, or a callable returning it (re-read on every request, so a rotated
            WIT is picked up without rebuilding the client).
        profile: ``"wpt-01"`` (``Workload-Proof-Token`` header; a bearer token in
            ``Authorization`` is bound with ``ath``) or ``"wpt-02"`` (``Authorization: WPT``).
        lifetime: seconds until each WPT expires (more than 0, at most 300).
        oth_headers: request headers whose values the WPT binds in ``oth`` when present.
        allow_insecure: also sign for plain ``http://`` targets that are not loopback hosts
            (127.0.0.0/8, ``::1``, ``localhost`` are always allowed). Off by default: without
            TLS anyone on the path can read the WIT and replay the proof.

    A request is refused (ValueError, nothing sent) when its target is plain http to another
    host, or when the WIT has expired or has no readable ``exp``.
    """

    def __init__(
        self,
        key: SigningKey,
        wit: str | Callable[[], str],
        *,
        profile: Profile = "wpt-01",
        lifetime: float = 60,
        oth_headers: Iterable[str] = (),
        allow_insecure: bool = False,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
        if not 0 < lifetime <= 300:
            raise ValueError("lifetime must be more than 0 and at most 300 seconds")
        self._key = key
        self._wit = wit if callable(wit) else (lambda: wit)
        self._profile = profile
        self._lifetime = lifetime
        self._allow_insecure = allow_insecure
        self._oth = tuple(h.lower() for h in ([oth_headers] if isinstance(oth_headers, str) else oth_headers))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        wit = self._wit().strip()  # a WIT read from a file often ends with a newline
        authorization = request.headers.get("authorization")
        bearer = None
        if authorization is not None:
            if self._profile == "wpt-02":
                raise ValueError("under wpt-02 the WPT travels in Authorization; the request already has one")
            # As the verifier parses it (RFC 9110 11.4): the scheme, then one or more SP.
            scheme, _, token = authorization.partition(" ")
            bearer = token if scheme.lower() == "bearer" else None
        others = {name: request.headers[name] for name in self._oth if name in request.headers}
        proof = mint_wpt(
            self._key,
            wit,
            target_uri(request.url),
            lifetime=self._lifetime,
            bearer=bearer,
            txn_token=request.headers.get("txn-token"),
            other_tokens=others or None,
            allow_insecure=self._allow_insecure,
        )
        request.headers["Workload-Identity-Token"] = wit
        if self._profile == "wpt-02":
            request.headers["Authorization"] = f"WPT {proof}"
        else:
            request.headers["Workload-Proof-Token"] = proof
        yield request


_CREDENTIALS = ("workload-identity-token", "workload-proof-token")


def _signed_aud(request: httpx.Request) -> str | None:
    """The ``aud`` of the WPT the request carries (read without verifying: our own proof)."""
    proof = request.headers.get("workload-proof-token")
    if proof is None:
        scheme, _, token = request.headers.get("authorization", "").strip(" \t").partition(" ")
        proof = token.strip(" ") if scheme.lower() == "wpt" else None
    if proof is None:
        return None
    parts = proof.split(".")
    try:
        claims = json.loads(b64url_decode(parts[1].encode("ascii"))) if len(parts) == 3 and proof.isascii() else None
    except (TokenError, ValueError, RecursionError):
        return None
    aud = claims.get("aud") if isinstance(claims, dict) else None
    return aud if isinstance(aud, str) else None


def drop_credentials_on_redirect(request: httpx.Request) -> None:
    """An httpx ``request`` event hook: remove the WIT and the WPT from a request whose target
    is not the one its proof was signed for.

    httpx follows redirects inside an auth flow, by copying the signed request: the WIT and a
    live, unused WPT would go to the redirect's target, another origin or plain http included.
    Install it with ``event_hooks={"request": [drop_credentials_on_redirect]}`` on any client
    that follows redirects (``adrop_credentials_on_redirect`` for an ``AsyncClient``); the
    redirected request then goes unsigned."""
    if not any(name in request.headers for name in _CREDENTIALS) and "authorization" not in request.headers:
        return
    aud = _signed_aud(request)
    if aud is not None and aud == target_uri(request.url):
        return
    for name in _CREDENTIALS:
        request.headers.pop(name, None)
    if request.headers.get("authorization", "").strip(" \t")[:4].lower() in ("wpt", "wpt "):
        request.headers.pop("authorization", None)


async def adrop_credentials_on_redirect(request: httpx.Request) -> None:
    """:func:`drop_credentials_on_redirect` for an ``httpx.AsyncClient``."""
    drop_credentials_on_redirect(request)
