"""The JOSE layer: strict compact JWS parsing, public keys, signature checks, token hashes.

Parsing is deliberately narrower than JOSE allows: one compact serialization, strict
base64url (joserfc's decoder: no padding, no whitespace, canonical tail bits), UTF-8 JSON
objects with unique member names, no ``crit`` (this library understands no extension).
Keys are imported and validated with joserfc once; each key then gets a small verify
closure over cryptography's primitives, because verification runs on every request and
joserfc's general path costs a measurable share of it (see ``bench/``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.util import urlsafe_b64decode

#: Default cap on one token's length, checked before any parsing.
DEFAULT_MAX_TOKEN_BYTES: Final = 8192
MIN_RSA_BITS: Final = 2048

Verify = Callable[[bytes, bytes], bool]


class TokenError(ValueError):
    """A token or key is not acceptable; the message is safe to show (it holds no token)."""


# --- algorithms ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlgSpec:
    name: str
    kty: str
    curves: frozenset[str]  # for EC and OKP keys; empty for RSA
    make_verify: Callable[[Any], Verify]


def _ecdsa(hash_alg: hashes.HashAlgorithm, size: int) -> Callable[[Any], Verify]:
    def make(public_key: ec.EllipticCurvePublicKey) -> Verify:
        algorithm = ec.ECDSA(hash_alg)

        def verify(message: bytes, signature: bytes) -> bool:
            # JWS carries r || s, each exactly the curve's size (RFC 7518 section 3.4).
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            try:
                public_key.verify(encode_dss_signature(r, s), message, algorithm)
            except InvalidSignature:
                return False
            return True

        return verify

    return make


def _eddsa(public_key: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) -> Verify:
    def verify(message: bytes, signature: bytes) -> bool:
        try:
            public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def _rsa(pad: padding.AsymmetricPadding, hash_alg: hashes.HashAlgorithm) -> Callable[[Any], Verify]:
    def make(public_key: rsa.RSAPublicKey) -> Verify:
        length = (public_key.key_size + 7) // 8

        def verify(message: bytes, signature: bytes) -> bool:
            if len(signature) != length:
                return False
            try:
                public_key.verify(signature, message, pad, hash_alg)
            except InvalidSignature:
                return False
            return True

        return verify

    return make


def _pss(hash_alg: hashes.HashAlgorithm) -> padding.PSS:
    # RFC 7518 section 3.5: MGF1 with the same hash, salt as long as the hash output.
    return padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)


_NO_CURVE: frozenset[str] = frozenset()
ALGORITHMS: Final[Mapping[str, AlgSpec]] = {
    spec.name: spec
    for spec in (
        AlgSpec("ES256", "EC", frozenset({"P-256"}), _ecdsa(hashes.SHA256(), 32)),
        AlgSpec("ES384", "EC", frozenset({"P-384"}), _ecdsa(hashes.SHA384(), 48)),
        AlgSpec("ES512", "EC", frozenset({"P-521"}), _ecdsa(hashes.SHA512(), 66)),
        AlgSpec("EdDSA", "OKP", frozenset({"Ed25519", "Ed448"}), _eddsa),
        AlgSpec("Ed25519", "OKP", frozenset({"Ed25519"}), _eddsa),
        AlgSpec("RS256", "RSA", _NO_CURVE, _rsa(padding.PKCS1v15(), hashes.SHA256())),
        AlgSpec("RS384", "RSA", _NO_CURVE, _rsa(padding.PKCS1v15(), hashes.SHA384())),
        AlgSpec("RS512", "RSA", _NO_CURVE, _rsa(padding.PKCS1v15(), hashes.SHA512())),
        AlgSpec("PS256", "RSA", _NO_CURVE, _rsa(_pss(hashes.SHA256()), hashes.SHA256())),
        AlgSpec("PS384", "RSA", _NO_CURVE, _rsa(_pss(hashes.SHA384()), hashes.SHA384())),
        AlgSpec("PS512", "RSA", _NO_CURVE, _rsa(_pss(hashes.SHA512()), hashes.SHA512())),
    )
}
DEFAULT_ALGORITHMS: Final = frozenset(ALGORITHMS)


def check_algorithms(algorithms: object) -> frozenset[str]:
    """Validate an allow-list at configuration time. ``none`` and HMAC can never be allowed."""
    if isinstance(algorithms, str) or not hasattr(algorithms, "__iter__"):
        raise ValueError("algorithms must be a collection of JWS alg names")
    chosen = frozenset(algorithms)  # type: ignore[arg-type]
    if not chosen:
        raise ValueError("algorithms must not be empty")
    for name in chosen:
        if name not in ALGORITHMS:
            raise ValueError(
                f"algorithm {name!r} cannot be configured: only asymmetric signature "
                f"algorithms are supported ({', '.join(sorted(ALGORITHMS))})"
            )
    return chosen


# --- public keys ---------------------------------------------------------------------------

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_COORDINATE_BYTES = {"P-256": 32, "P-384": 48, "P-521": 66, "Ed25519": 32, "Ed448": 57}
_IMPORTERS: dict[str, Any] = {"EC": ECKey, "OKP": OKPKey, "RSA": RSAKey}


@dataclass(frozen=True, slots=True, eq=False)
class PublicKey:
    """A validated public signature key, ready to verify under the algs it fits."""

    kty: str
    crv: str | None
    kid: str | None
    alg: str | None
    jwk: Mapping[str, Any]
    raw: Any  # the cryptography public key object
    _verifiers: Mapping[str, Verify]

    def fits(self, alg: str) -> bool:
        return alg in self._verifiers

    def verify(self, alg: str, message: bytes, signature: bytes) -> bool:
        check = self._verifiers.get(alg)
        return check is not None and check(message, signature)


def _b64_length(value: object) -> int:
    if not isinstance(value, str) or not value.isascii():
        raise TokenError("key member is not a base64url string")
    try:
        return len(urlsafe_b64decode(value.encode("ascii")))
    except (binascii.Error, ValueError):
        raise TokenError("key member is not strict base64url") from None


def import_public_key(jwk: object, algorithms: frozenset[str] = DEFAULT_ALGORITHMS) -> PublicKey:
    """Import one public signature JWK, refusing anything a verifier must not trust.

    Refused: private or symmetric keys, keys meant for encryption (``use``/``key_ops``),
    RSA under 2048 bits, curves no allowed algorithm uses, an ``alg`` member that is not
    allowed or does not fit the key, and malformed or off-curve coordinates.
    """
    if not isinstance(jwk, Mapping):
        raise TokenError("a JWK is a JSON object")
    kty = jwk.get("kty")
    if kty == "oct":
        raise TokenError("symmetric keys are not accepted")
    if kty not in _IMPORTERS:
        raise TokenError("unsupported key type")
    if _PRIVATE_MEMBERS.intersection(jwk):
        raise TokenError("private key material is not accepted where a public key is expected")
    if jwk.get("use", "sig") != "sig":
        raise TokenError("key is not for signatures (use)")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise TokenError("key is not for verification (key_ops)")
    kid, alg = jwk.get("kid"), jwk.get("alg")
    if kid is not None and not isinstance(kid, str):
        raise TokenError("kid must be a string")
    if alg is not None and (not isinstance(alg, str) or alg not in algorithms):
        raise TokenError("key alg is not an allowed signature algorithm")
    crv = jwk.get("crv") if kty != "RSA" else None
    if kty != "RSA":
        size = _COORDINATE_BYTES.get(crv) if isinstance(crv, str) else None
        if size is None:
            raise TokenError("unsupported curve")
        members = ("x", "y") if kty == "EC" else ("x",)
        if "y" in jwk and kty == "OKP":
            raise TokenError("OKP keys have no y coordinate")
        if any(_b64_length(jwk.get(m)) != size for m in members):
            raise TokenError("key coordinates have the wrong length")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc warns on small RSA keys; refused below
            raw = _IMPORTERS[kty].import_key(dict(jwk)).public_key
    except Exception:
        # joserfc and cryptography raise many types for bad keys (off-curve points, bad
        # base64, missing members); all mean the same to us.
        raise TokenError("key could not be imported") from None
    if kty == "RSA":
        if raw.key_size < MIN_RSA_BITS:
            raise TokenError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        if raw.public_numbers().e < 3 or raw.public_numbers().e % 2 == 0:
            raise TokenError("RSA public exponent is invalid")
    verifiers = {
        name: ALGORITHMS[name].make_verify(raw)
        for name in sorted(algorithms)
        if ALGORITHMS[name].kty == kty
        and (kty == "RSA" or crv in ALGORITHMS[name].curves)
        and (alg is None or alg == name)
    }
    if not verifiers:
        raise TokenError("key does not fit any allowed algorithm")
    return PublicKey(kty, crv, kid, alg, dict(jwk), raw, verifiers)


# --- compact JWS ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compact:
    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise TokenError("duplicate JSON member name")
    return obj


def _reject_constant(name: str) -> Any:
    raise TokenError("NaN and Infinity are not JSON")


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON object from UTF-8 bytes: unique member names, no NaN, bounded nesting."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except TokenError:
        raise
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8, bad JSON and over-long integers.
        raise TokenError("not a JSON object") from None
    if not isinstance(value, dict):
        raise TokenError("not a JSON object")
    return value


def _b64(part: bytes) -> bytes:
    try:
        return urlsafe_b64decode(part)
    except (binascii.Error, ValueError):
        raise TokenError("not strict base64url") from None


def parse_compact(token: bytes, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> Compact:
    """Split and decode one compact JWS; the payload stays bytes (see ``decode_json_object``)."""
    if len(token) > max_bytes:
        raise TokenError("token too large")
    parts = token.split(b".")
    if len(parts) != 3:
        raise TokenError("not a compact JWS (three base64url parts)")
    header_b64, payload_b64, signature_b64 = parts
    if not header_b64 or not payload_b64 or not signature_b64:
        raise TokenError("empty JWS part")
    header = decode_json_object(_b64(header_b64))
    return Compact(header, _b64(payload_b64), header_b64 + b"." + payload_b64, _b64(signature_b64))


def check_header(header: Mapping[str, Any], media_type: str) -> str:
    """Checks shared by WIT and WPT headers; returns ``alg``. Raises TokenError(reason)."""
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise TokenError("alg")
    if "crit" in header or "b64" in header:
        # No extension is understood here, and an unencoded payload would change what is signed.
        raise TokenError("crit")
    if not is_media_type(header.get("typ"), media_type):
        raise TokenError("typ")
    return alg


def is_media_type(value: object, expected: str) -> bool:
    """``typ`` compares as a media type: case-insensitive, ``application/`` optional (RFC 7515 4.1.9)."""
    if not isinstance(value, str):
        return False
    value = value.lower()
    if value.startswith("application/"):
        value = value[len("application/") :]
    return value == expected


# --- hashes and signing --------------------------------------------------------------------


def token_hash(token: bytes | str) -> str:
    """base64url(SHA-256(token)) without padding: the value of ``wth``, ``ath``, ``tth``, ``oth``."""
    if isinstance(token, str):
        token = token.encode("ascii")
    return base64.urlsafe_b64encode(hashlib.sha256(token).digest()).rstrip(b"=").decode("ascii")


def sign_compact(header: Mapping[str, Any], claims: Mapping[str, Any], key: Any) -> str:
    """Sign claims as a compact JWS with a joserfc private key (client side and dev issuer)."""
    payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    alg = header["alg"]
    if alg not in ALGORITHMS:
        raise ValueError(f"algorithm {alg!r} is not supported")
    with warnings.catch_warnings():
        # joserfc deprecates the name "EdDSA" (RFC 9864); the drafts still use it.
        warnings.simplefilter("ignore")
        return jws.serialize_compact(dict(header), payload, key, algorithms=[alg])
