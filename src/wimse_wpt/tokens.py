"""The JOSE layer: strict compact JWS parsing, public keys, signature checks, token hashes.

Parsing is deliberately narrower than JOSE allows: one compact serialization, strict
base64url (joserfc's decoder: no padding, no whitespace, canonical tail bits), UTF-8 JSON
objects with unique member names, no ``crit`` (this library understands no extension).
Public keys are built straight from their JWK bytes with cryptography's constructors, and
each key gets a small verify closure over cryptography's primitives: verification runs on
every request, a key import on every new WIT, and joserfc's general path costs a measurable
share of both (see ``bench/``). joserfc signs, and tests hold both paths to joserfc's verdicts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from joserfc import jws

# Ed25519 is checked with libsodium (PyNaCl) where it imports: about half the CPU of OpenSSL's
# Ed25519 verify (see bench/). cryptography (OpenSSL) checks it otherwise, under the same rules.
# libsodium's crypto_sign_open is called through PyNaCl's own cffi binding: with NULL for the
# message it only verifies (the C function allows it), where PyNaCl's wrapper allocates, zeroes
# and copies the message on every call (a measurable share under a server; see bench/).
try:
    import nacl.bindings  # noqa: F401  (its import runs sodium_init, which libsodium requires first)
    from nacl._sodium import ffi as _sodium_ffi
    from nacl._sodium import lib as _sodium_lib

    _sodium_open = _sodium_lib.crypto_sign_open
    _NULL = _sodium_ffi.NULL
except (ImportError, AttributeError):  # PyNaCl absent, changed, or its libsodium cannot load
    _sodium_open = None
#: Which library verifies Ed25519 signatures in this process: "libsodium" or "cryptography".
ED25519_BACKEND: Final = "cryptography" if _sodium_open is None else "libsodium"

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
    # The message hashed by hashlib and handed over as prehashed: the same check, and about
    # a microsecond less than cryptography hashing it (see bench/).
    digest = getattr(hashlib, hash_alg.name)
    # One for every key: built per key, it was ~2 us of each new confirmation key's import.
    algorithm = ec.ECDSA(Prehashed(hash_alg))

    def make(public_key: ec.EllipticCurvePublicKey) -> Verify:
        to_der = _der_signature if size <= _SHORT_FORM_SIZE else _der_signature_any

        def verify(message: bytes, signature: bytes) -> bool:
            # JWS carries r || s, each exactly the curve's size (RFC 7518 section 3.4).
            if len(signature) != 2 * size:
                return False
            try:
                public_key.verify(to_der(signature, size), digest(message).digest(), algorithm)
            except InvalidSignature:
                return False
            return True

        return verify

    return make


# r || s as the DER SEQUENCE of two INTEGERs that OpenSSL reads: for P-256 and P-384 every
# length fits DER's one-byte short form, so the bytes are laid out directly, at a third of
# encode_dss_signature's cost with its two int conversions (a test holds both to the same
# bytes). A wrong layout could only make OpenSSL refuse a signature, never accept one.
_SHORT_FORM_SIZE: Final = 48


def _der_signature(signature: bytes, size: int) -> bytes:
    r = signature[:size].lstrip(b"\x00") or b"\x00"
    s = signature[size:].lstrip(b"\x00") or b"\x00"
    if r[0] & 0x80:  # a set high bit would read as negative: DER puts a zero byte first
        r = b"\x00" + r
    if s[0] & 0x80:
        s = b"\x00" + s
    return b"\x30%c\x02%c%b\x02%c%b" % (len(r) + len(s) + 4, len(r), r, len(s), s)


def _der_signature_any(signature: bytes, size: int) -> bytes:
    return encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))


# Ed25519 points whose y (sign bit cleared) is one of these have order 1, 2, 4 or 8 (libsodium's
# list, with the non-canonical p and p+1): a key among them verifies forgeries made by anyone.
_P25519: Final = 2**255 - 19
_ORDER_8_Y: Final = 2707385501144840649318225287225658788936804267575313519463743609750303402022
_SMALL_ORDER_Y: Final = frozenset({0, 1, _P25519 - 1, _ORDER_8_Y, _P25519 - _ORDER_8_Y, _P25519, _P25519 + 1})
_Y_MASK: Final = (1 << 255) - 1


def _is_small_order(encoded: bytes) -> bool:
    return int.from_bytes(encoded, "little") & _Y_MASK in _SMALL_ORDER_Y


def _ed25519_libsodium(public_bytes: bytes) -> Verify:
    sodium_open, null = _sodium_open, _NULL
    assert sodium_open is not None and len(public_bytes) == 32  # the C side reads exactly 32

    def verify(message: bytes, signature: bytes) -> bool:
        # crypto_sign_open reads the first 64 bytes as the signature: any other length would
        # move the boundary between signature and message.
        if len(signature) != 64:
            return False
        signed = signature + message
        return sodium_open(null, null, signed, len(signed), public_bytes) == 0  # type: ignore[no-any-return]

    return verify


def _ed25519_cryptography(public_key: ed25519.Ed25519PublicKey) -> Verify:
    def verify(message: bytes, signature: bytes) -> bool:
        # OpenSSL accepts a small-order R when the equation holds; libsodium refuses it. Refused
        # here too, so that the verdict does not depend on which library is installed.
        if len(signature) != 64 or _is_small_order(signature[:32]):
            return False
        try:
            public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def _eddsa(public_key: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) -> Verify:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        encoded = public_key.public_bytes_raw()
        # RFC 8032 5.1.3: y >= p does not decode. OpenSSL accepts such keys and small-order
        # keys, libsodium refuses every signature under them: refused here, on both.
        if int.from_bytes(encoded, "little") & _Y_MASK >= _P25519 or _is_small_order(encoded):
            raise TokenError("Ed25519 key is not a canonical point of large order")
        if _sodium_open is not None:
            return _ed25519_libsodium(encoded)
        return _ed25519_cryptography(public_key)

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
_KEY_TYPES = frozenset({"EC", "OKP", "RSA"})
_CURVES: dict[str, Any] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
_OKP: dict[str, Any] = {"Ed25519": ed25519.Ed25519PublicKey, "Ed448": ed448.Ed448PublicKey}


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value.isascii() or not value:
        raise TokenError(f"key member {name} is not a base64url string")
    return b64url_decode(value.encode("ascii"))


def _public_key(kty: str, crv: object, jwk: Mapping[str, Any]) -> Any:
    """cryptography's public key for a JWK, built straight from its bytes.

    A thin path over cryptography's constructors (which validate points on the curve):
    joserfc's general import costs most of a cold verification (see bench/), and a new
    confirmation key is imported for every new WIT.
    """
    if kty == "RSA":
        n, e = int.from_bytes(_member(jwk, "n"), "big"), int.from_bytes(_member(jwk, "e"), "big")
        if n.bit_length() < MIN_RSA_BITS:
            raise TokenError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        # A huge e would make every verify a full-size modexp: real keys use 65537 (RFC 8017 allows
        # any odd e, but nothing past 32 bits is in use; refusing it bounds our work per request).
        if e < 3 or e % 2 == 0 or e.bit_length() > 32:
            raise TokenError("RSA public exponent is invalid")
        return rsa.RSAPublicNumbers(e, n).public_key()
    size = _COORDINATE_BYTES.get(crv) if isinstance(crv, str) else None
    if size is None or (kty == "EC") != (crv in _CURVES):
        raise TokenError("unsupported curve")
    if kty == "OKP":
        if "y" in jwk:
            raise TokenError("OKP keys have no y coordinate")
        x = _member(jwk, "x")
        if len(x) != size:
            raise TokenError("key coordinates have the wrong length")
        return _OKP[crv].from_public_bytes(x)  # type: ignore[index]
    x, y = _member(jwk, "x"), _member(jwk, "y")
    if len(x) != size or len(y) != size:
        raise TokenError("key coordinates have the wrong length")
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[crv], b"\x04" + x + y)  # type: ignore[index]


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


# A frozen dataclass's __init__ sets each field through object.__setattr__; a key imported for
# every new WIT is built by its slots' own setters instead (the same object, about a microsecond less).
_SET_KEY_FIELDS = tuple(getattr(PublicKey, f.name).__set__ for f in fields(PublicKey))


def _new_public_key(
    kty: str, crv: str | None, kid: str | None, alg: str | None, jwk: Mapping[str, Any], raw: Any, verifiers: Mapping[str, Verify]
) -> PublicKey:
    key = object.__new__(PublicKey)
    set_kty, set_crv, set_kid, set_alg, set_jwk, set_raw, set_verifiers = _SET_KEY_FIELDS
    set_kty(key, kty)
    set_crv(key, crv)
    set_kid(key, kid)
    set_alg(key, alg)
    set_jwk(key, jwk)
    set_raw(key, raw)
    set_verifiers(key, verifiers)
    return key


def import_public_key(jwk: object, algorithms: frozenset[str] = DEFAULT_ALGORITHMS) -> PublicKey:
    """Import one public signature JWK, refusing anything a verifier must not trust.

    Refused: private or symmetric keys, keys meant for encryption (``use``/``key_ops``),
    RSA under 2048 bits, curves no allowed algorithm uses, an ``alg`` member that is not
    allowed or does not fit the key, and malformed or off-curve coordinates.
    """
    if type(jwk) is not dict and not isinstance(jwk, Mapping):
        raise TokenError("a JWK is a JSON object")
    kty = jwk.get("kty")
    if kty == "oct":
        raise TokenError("symmetric keys are not accepted")
    if not isinstance(kty, str) or kty not in _KEY_TYPES:  # a list or object is unhashable
        raise TokenError("unsupported key type")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
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
    try:
        raw = _public_key(kty, crv, jwk)
    except TokenError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Off-curve points and impossible numbers, as cryptography reports them.
        raise TokenError("key could not be imported") from None
    if alg is not None:  # only that algorithm can fit (a confirmation key's case: no loop)
        spec = ALGORITHMS[alg]
        fits = spec.kty == kty and (kty == "RSA" or crv in spec.curves)
        verifiers = {alg: spec.make_verify(raw)} if fits else {}
    else:
        verifiers = {
            name: spec.make_verify(raw)
            for name in algorithms
            if (spec := ALGORITHMS[name]).kty == kty and (kty == "RSA" or crv in spec.curves)
        }
    if not verifiers:
        raise TokenError("key does not fit any allowed algorithm")
    return _new_public_key(kty, crv, kid, alg, dict(jwk), raw, verifiers)


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


# One decoder, built once: json.loads with keyword arguments builds a new one per call.
_JSON = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
# Its C scanner, called directly: JSONDecoder.decode adds two whitespace regex matches.
_SCAN = _JSON.scan_once  # type: ignore[attr-defined]


#: Deepest JSON nesting accepted in a token. Explicit, so the verdict does not depend on the
#: interpreter (3.11's C decoder stops near the recursion limit; 3.13's goes far deeper).
MAX_JSON_DEPTH: Final = 256


def _json_depth(text: str) -> int:
    """How deep ``text`` nests arrays and objects (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON object from UTF-8 bytes: unique member names, no NaN, bounded nesting."""
    # Only a value with that many brackets can nest that deep: two C-speed counts, and the
    # exact (slower) walk only then, over at most max_token_bytes.
    # (A value no longer than the bound cannot hold more brackets than it: no count at all.)
    if len(raw) > MAX_JSON_DEPTH and raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        try:
            too_deep = _json_depth(raw.decode("utf-8")) > MAX_JSON_DEPTH
        except ValueError:
            too_deep = True
        if too_deep:
            raise TokenError("not a JSON object (nested too deep)")
    try:
        text = raw.decode("utf-8")
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:  # not a value at 0 (perhaps whitespace first): the full decoder says
            end = -1
        if end != len(text):  # whitespace around the value, or something after it
            value = _JSON.decode(text)
    except TokenError:
        raise
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8, bad JSON and over-long integers.
        raise TokenError("not a JSON object") from None
    if type(value) is not dict:
        raise TokenError("not a JSON object")
    return value


# Strict base64url (RFC 7515 section 2): the same verdicts as joserfc.util.urlsafe_b64decode
# (a test compares them), in one C call. "+", "/" and "=" are mapped to "*" so that strict mode
# refuses them; padding, whitespace and any other byte are refused by strict mode too.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/***")
# For a length of 2 or 3 (mod 4), the last character's unused low bits must be zero.
_CANONICAL_LAST = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
_PADDING = (b"", b"", b"==", b"=")
_a2b_base64 = binascii.a2b_base64


def b64url_decode(part: bytes) -> bytes:
    remainder = len(part) % 4
    if remainder and (remainder == 1 or part[-1] not in _CANONICAL_LAST[remainder]):
        raise TokenError("not strict base64url")
    try:
        return _a2b_base64(part.translate(_TO_STANDARD) + _PADDING[remainder], strict_mode=True)
    except binascii.Error:
        raise TokenError("not strict base64url") from None


def _split_header_first(token: bytes, max_bytes: int) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """The decoded protected header and the three raw parts of one compact JWS."""
    if len(token) > max_bytes:
        raise TokenError("token too large")
    parts = token.split(b".")
    if len(parts) != 3:
        raise TokenError("not a compact JWS (three base64url parts)")
    header_b64, payload_b64, signature_b64 = parts
    if not header_b64 or not payload_b64 or not signature_b64:
        raise TokenError("empty JWS part")
    return decode_json_object(b64url_decode(header_b64)), header_b64, payload_b64, signature_b64


def _compact(header: dict[str, Any], header_b64: bytes, payload_b64: bytes, signature_b64: bytes) -> Compact:
    return Compact(header, b64url_decode(payload_b64), header_b64 + b"." + payload_b64, b64url_decode(signature_b64))


def parse_compact(token: bytes, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> Compact:
    """Split and decode one compact JWS; the payload stays bytes (see ``decode_json_object``)."""
    return _compact(*_split_header_first(token, max_bytes))


def parse_checked(token: bytes, max_bytes: int, media_type: str) -> tuple[str, Compact]:
    """``alg`` and the parts of one compact JWS whose protected header passes
    :func:`check_header`; the header is checked before the payload and signature are decoded,
    so that a token refused for its header costs no more decoding."""
    header, header_b64, payload_b64, signature_b64 = _split_header_first(token, max_bytes)
    alg = check_header(header, media_type)
    return alg, _compact(header, header_b64, payload_b64, signature_b64)


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
