"""Ed25519 verdicts do not depend on the library that checks them.

libsodium (PyNaCl) checks Ed25519 when it imports, cryptography (OpenSSL) otherwise. Both are
held to the same verdict here: every Wycheproof Ed25519 vector, a few thousand random and
mutated signatures, and hand-made edge cases (small-order and mixed-order points,
non-canonical encodings, S >= L) built with a small pure-Python model of edwards25519.

Where the raw libraries differ, the package decides (``tokens._eddsa``): small-order or
non-canonical keys are refused at import (OpenSSL accepts them, and a small-order key
verifies anyone's forgeries), and a small-order R is refused by the cryptography path as
libsodium refuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from wimse_wpt import tokens
from wimse_wpt.tokens import TokenError, import_public_key

from .conftest import VECTORS, missing_shared

needs_pynacl = pytest.mark.skipif(tokens._sodium_open is None, reason="PyNaCl is not importable here")

# --- a small model of edwards25519 (RFC 8032 section 5.1), to build edge cases -------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), as in RFC 8032's code
IDENTITY: Point = (0, 1, 1, 0)


def recover_x(y: int, sign: int) -> int | None:
    x2 = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    return P - x if (x & 1) != sign else x


def point(x: int, y: int) -> Point:
    return x, y, 1, x * y % P


def add(a: Point, b: Point) -> Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    e, f = (y1 - x1) * (y2 - x2) % P, (y1 + x1) * (y2 + x2) % P
    g, h = 2 * t1 * t2 * D % P, 2 * z1 * z2 % P
    e, f, g, h = f - e, h - g, h + g, f + e
    return e * f % P, g * h % P, f * g % P, e * h % P


def mul(k: int, p: Point) -> Point:
    result = IDENTITY
    while k:
        if k & 1:
            result = add(result, p)
        p, k = add(p, p), k >> 1
    return result


def same(a: Point, b: Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def encode(p: Point) -> bytes:
    z = pow(p[2], -1, P)
    x, y = p[0] * z % P, p[1] * z % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


_BY = 4 * pow(5, -1, P) % P
BASE: Point = point(recover_x(_BY, 0) or 0, _BY)


def challenge(r: bytes, a: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + message).digest(), "little") % L


def scalar(seed: bytes) -> int:
    """The secret scalar RFC 8032 derives from a 32-byte seed (so cryptography can sign too)."""
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] = (h[31] & 127) | 64
    return int.from_bytes(h, "little")


def torsion() -> list[Point]:
    """The eight points of order 1, 2, 4 or 8: multiples of one point of order 8."""
    rng = random.Random(8)
    while True:
        y = rng.randrange(P)
        x = recover_x(y, 0)
        if x is None:
            continue
        t = mul(L, point(x, y))  # the point's component in the small subgroup
        if not same(mul(4, t), IDENTITY):
            return [mul(i, t) for i in range(8)]


TORSION = torsion()


def small_order_encodings() -> list[bytes]:
    """Every 32-byte encoding of a small-order point: both sign bits, y and y + p where < 2^255."""
    ys = {int.from_bytes(encode(t), "little") & ((1 << 255) - 1) for t in TORSION}
    ys |= {y + P for y in ys if y + P < 2**255}
    return [(y | sign << 255).to_bytes(32, "little") for y in sorted(ys) for sign in (0, 1)]


SMALL_ORDER = small_order_encodings()


# --- the two backends, as the package builds them ---------------------------------------------


def sodium_verdict(public: bytes, message: bytes, signature: bytes) -> bool:
    """libsodium itself (crypto_sign_open), without the package's construction around it."""
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    try:
        crypto_sign_open(signature + message, public)
    except (BadSignatureError, ValueError):
        return False
    return len(signature) == 64


def verdicts(public: bytes, message: bytes, signature: bytes) -> tuple[bool, bool] | None:
    """(libsodium, cryptography) verdicts through the package's own verify closures; None when
    the key is refused at import (then libsodium must refuse the signature on its own too)."""
    key = ed25519.Ed25519PublicKey.from_public_bytes(public)
    try:
        tokens._eddsa(key)  # the import-time rules
    except TokenError:
        assert not sodium_verdict(public, message, signature), "a key libsodium accepts was refused"
        return None
    return tokens._ed25519_libsodium(public)(message, signature), tokens._ed25519_cryptography(key)(message, signature)


def rfc8032_cofactorless(public: bytes, message: bytes, signature: bytes) -> bool:
    """[S]B = R + [k]A with strict decoding (the RFC's check, slow: for hand-made cases only)."""
    def decode(encoded: bytes) -> Point | None:
        value = int.from_bytes(encoded, "little")
        y, sign = value & ((1 << 255) - 1), value >> 255
        if y >= P:
            return None
        x = recover_x(y, sign)
        return None if x is None else point(x, y)

    a, r = decode(public), decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L or len(signature) != 64:
        return False
    k = challenge(signature[:32], public, message)
    return same(mul(s, BASE), add(r, mul(k, a)))


# --- which backend runs -------------------------------------------------------------------------


def test_the_backend_is_libsodium_exactly_when_pynacl_imports() -> None:
    """The suite runs twice in CI: here, and with PyNaCl made unimportable (.ci/without-pynacl),
    where every Ed25519 check of the suite then goes through cryptography."""
    try:
        import nacl.bindings  # noqa: F401
    except ImportError:
        assert (tokens.ED25519_BACKEND, tokens._sodium_open) == ("cryptography", None)
    else:
        assert tokens.ED25519_BACKEND == "libsodium"
        assert tokens._sodium_open is not None


@needs_pynacl
def test_libsodium_verifies_ed25519_when_pynacl_imports() -> None:
    assert tokens.ED25519_BACKEND == "libsodium"
    private = ed25519.Ed25519PrivateKey.generate()
    x = private.public_key().public_bytes_raw()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(x)}
    key = import_public_key(jwk)
    for alg in ("EdDSA", "Ed25519"):
        assert key._verifiers[alg].__qualname__.startswith("_ed25519_libsodium.")
        assert key.verify(alg, b"message", private.sign(b"message"))
        assert not key.verify(alg, b"messagE", private.sign(b"message"))


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


FALLBACK_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    sys.modules["nacl"] = None  # PyNaCl cannot be imported in this process
    from wimse_wpt import tokens, DevIssuer, SigningKey, Verifier, MemoryReplayCache, mint_wpt
    from wimse_wpt.tokens import TokenError, import_public_key

    out = {"backend": tokens.ED25519_BACKEND, "checked": 0, "wrong": []}
    data = json.load(open(sys.argv[1]))
    for group in data["testGroups"]:
        jwk = {k: v for k, v in group["publicKeyJwk"].items() if k not in ("kid", "alg")}
        key = import_public_key(jwk, frozenset({"EdDSA"}))
        out["closure"] = key._verifiers["EdDSA"].__qualname__
        for case in group["tests"]:
            ok = key.verify("EdDSA", bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"]))
            if ok != (case["result"] == "valid"):
                out["wrong"].append(case["tcId"])
            out["checked"] += 1
    try:
        import_public_key({"kty": "OKP", "crv": "Ed25519", "x": "AQ" + "A" * 41})  # the identity point
        out["identity_key"] = "accepted"
    except TokenError:
        out["identity_key"] = "refused"

    # A request end to end: an Ed25519 WIT and WPT, verified on the cryptography path.
    issuer = DevIssuer("example.com", alg="Ed25519")
    key = SigningKey.generate("Ed25519")
    wit = issuer.issue_wit("wimse://example.com/w", key)
    verifier = Verifier({"example.com": issuer.jwks}, ["https://a.example"], replay_cache=MemoryReplayCache(10))
    headers = [(b"workload-identity-token", wit.encode()),
               (b"workload-proof-token", mint_wpt(key, wit, "https://a.example/p").encode())]
    out["identifier"] = asyncio.run(verifier.verify(headers, path="/p", method="GET")).identifier
    out["nacl_loaded"] = any(name == "nacl" or name.startswith("nacl.") for name, m in sys.modules.items() if m)
    print(json.dumps(out))
    """
)


def test_cryptography_verifies_ed25519_when_pynacl_cannot_import() -> None:
    vectors = _wycheproof_path()
    result = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT, str(vectors)],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    out = json.loads(result.stdout)
    assert out["backend"] == "cryptography"
    assert out["closure"].startswith("_ed25519_cryptography.")
    assert not out["nacl_loaded"]
    assert out["checked"] == 151 and out["wrong"] == []
    assert out["identity_key"] == "refused"
    assert out["identifier"] == "wimse://example.com/w"


# --- the differential -----------------------------------------------------------------------------


def _wycheproof_path() -> Path:
    path = VECTORS / "wycheproof" / "ed25519_test.json"
    if not path.exists():
        missing_shared(f"Wycheproof vectors are not at {path} (shared/ absent)")
    return path


@needs_pynacl
def test_every_wycheproof_vector_gets_the_same_verdict_from_both_backends() -> None:
    data = json.loads(_wycheproof_path().read_text())
    checked = 0
    for group in data["testGroups"]:
        public = bytes.fromhex(group["publicKey"]["pk"])
        for case in group["tests"]:
            message, signature = bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
            expected = case["result"] == "valid"
            assert verdicts(public, message, signature) == (expected, expected), case["tcId"]
            checked += 1
    assert checked == data["numberOfTests"] == 151


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _mutations(rng: random.Random, seed: bytes, message: bytes) -> tuple[bytes, bytes, bytes]:
    """One (public key, message, signature) case: a valid signature, or one mutation of it."""
    private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes_raw()
    signature = private.sign(message)
    r, s = signature[:32], int.from_bytes(signature[32:], "little")
    kind = rng.randrange(14)
    if kind == 1:  # any bit of the signature
        signature = _flip(signature, rng.randrange(512))
    elif kind == 2:  # a bit of the message
        message = _flip(message, rng.randrange(len(message) * 8)) if message else b"\x00"
    elif kind == 3:  # S + nL: the same scalar, not reduced
        n = rng.randrange(1, (2**256 - 1 - s) // L + 1)
        signature = r + (s + n * L).to_bytes(32, "little")
    elif kind == 4:  # S at and around the group order, and high bits set
        value = rng.choice([0, 1, L - 1, L, L + 1, 2**253, 2**255, 2**256 - 1, s | 0xE0 << 248])
        signature = r + value.to_bytes(32, "little")
    elif kind == 5:  # a bit of the public key (often off the curve, or another key)
        public = _flip(public, rng.randrange(256))
    elif kind == 6:  # R replaced by a small-order point, in any of its encodings
        signature = rng.choice(SMALL_ORDER) + signature[32:]
    elif kind == 7:  # the public key replaced by a small-order point
        public = rng.choice(SMALL_ORDER)
    elif kind == 8:  # R or the key non-canonical: y + p with a small y, either sign
        forged = ((rng.randrange(19) + P) | rng.randrange(2) << 255).to_bytes(32, "little")
        if rng.randrange(2):
            signature = forged + signature[32:]
        else:
            public = forged
    elif kind == 9:  # the wrong length
        signature = rng.choice([signature[:63], signature + b"\x00", b"", signature * 2, signature[:32]])
    elif kind == 10:  # random bytes for the signature, or for the key
        if rng.randrange(2):
            signature = rng.randbytes(64)
        else:
            public = rng.randbytes(32)
    elif kind == 11:  # another key's valid signature
        other = ed25519.Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        signature = other.sign(message)
    elif kind == 12:  # the sign bit of R or of the key flipped
        if rng.randrange(2):
            signature = _flip(signature, 255)
        else:
            public = _flip(public, 255)
    elif kind == 13:  # R and S swapped
        signature = signature[32:] + signature[:32]
    return public, message, signature


@needs_pynacl
def test_thousands_of_random_and_mutated_signatures_get_the_same_verdict() -> None:
    rng = random.Random(20261129)
    tally = {"accepted": 0, "refused": 0, "key refused": 0}
    for number in range(4000):
        message = rng.randbytes(rng.choice([0, 1, 31, 32, 33, 64, 200, 1000]))
        public, message, signature = _mutations(rng, rng.randbytes(32), message)
        found = verdicts(public, message, signature)
        if found is None:
            tally["key refused"] += 1
            continue
        assert found[0] == found[1], (number, public.hex(), message.hex(), signature.hex())
        tally["accepted" if found[0] else "refused"] += 1
    # Each kind of outcome is exercised, not just refusals.
    assert min(tally.values()) > 200, tally


def _edge_cases() -> list[tuple[str, bytes, bytes, bytes]]:
    """Hand-made cases, most of them valid under RFC 8032's cofactorless equation."""
    rng = random.Random(25519)
    cases = []
    a = scalar(b"\x01" * 32)
    public = encode(mul(a, BASE))
    message = b"edge"
    r = rng.randrange(L)
    big_r = encode(mul(r, BASE))
    s = (r + challenge(big_r, public, message) * a) % L
    cases.append(("honest", public, message, big_r + s.to_bytes(32, "little")))
    cases.append(("S + L", public, message, big_r + (s + L).to_bytes(32, "little")))
    # R = identity, S = k*a: the equation holds; libsodium refuses small-order R.
    for encoded in SMALL_ORDER:
        k = challenge(encoded, public, message)
        cases.append((f"small-order R {encoded.hex()[:6]}", public, message, encoded + (k * a % L).to_bytes(32, "little")))
    # Mixed-order keys (A + T): an honest signature passes iff k*T is the identity; both kinds.
    for i, t in enumerate(TORSION[1:], 1):
        mixed = encode(add(mul(a, BASE), t))
        outcomes: set[bool] = set()
        while len(outcomes) < 2:
            r = rng.randrange(L)
            big_r = encode(mul(r, BASE))
            k = challenge(big_r, mixed, message)
            passes = same(mul(k, t), IDENTITY)
            if passes in outcomes:
                continue
            outcomes.add(passes)
            cases.append((f"mixed-order key T{i} k*T={'O' if passes else 'T'}", mixed, message,
                          big_r + ((r + k * a) % L).to_bytes(32, "little")))
        # Mixed-order R under that key, valid cofactorless: R = rB + T' with -kT = T'.
        for _ in range(200):
            r = rng.randrange(L)
            t2 = TORSION[rng.randrange(1, 8)]
            big_r = encode(add(mul(r, BASE), t2))
            k = challenge(big_r, mixed, message)
            if same(add(mul(k, t), t2), IDENTITY):
                cases.append((f"mixed-order R, key T{i}", mixed, message, big_r + ((r + k * a) % L).to_bytes(32, "little")))
                break
        # Small-order R under that key, valid cofactorless: R = T' = -kT, S = k*a.
        for _ in range(200):
            t2 = TORSION[rng.randrange(1, 8)]
            k = challenge(encode(t2), mixed, message)
            if same(add(mul(k, t), t2), IDENTITY):
                cases.append((f"small-order R, key T{i}", mixed, message, encode(t2) + (k * a % L).to_bytes(32, "little")))
                break
    return cases


@needs_pynacl
def test_hand_made_edge_cases_get_the_same_verdict() -> None:
    seen = {"valid under RFC 8032 and accepted": 0, "valid under RFC 8032, small-order R, refused": 0}
    for name, public, message, signature in _edge_cases():
        found = verdicts(public, message, signature)
        assert found is not None, name
        assert found[0] == found[1], name
        rfc = rfc8032_cofactorless(public, message, signature)
        small_r = tokens._is_small_order(signature[:32])
        # Both backends follow RFC 8032, except that a small-order R is refused.
        assert found[0] == (rfc and not small_r), name
        if rfc:
            seen["valid under RFC 8032, small-order R, refused" if small_r else "valid under RFC 8032 and accepted"] += 1
    assert min(seen.values()) >= 3, seen


def test_small_order_and_non_canonical_keys_are_refused_at_import() -> None:
    # The identity as a key: R = sB, any S, verifies for any message under cofactorless
    # verification (OpenSSL's): a forgery anyone can make.
    identity = encode(IDENTITY)
    s = 12345
    forgery = encode(mul(s, BASE)) + s.to_bytes(32, "little")
    assert rfc8032_cofactorless(identity, b"anything", forgery)
    refused = [*SMALL_ORDER, *(((y + P) | sign << 255).to_bytes(32, "little") for y in range(19) for sign in (0, 1))]
    for encoded in refused:
        with pytest.raises(TokenError, match="canonical point of large order"):
            import_public_key({"kty": "OKP", "crv": "Ed25519", "x": _b64(encoded)})


def test_the_cryptography_path_refuses_a_small_order_r() -> None:
    # Valid under RFC 8032's equation (R = identity, S = k*a), and OpenSSL 3 accepts it;
    # refused as libsodium refuses it, so the verdict is the same on both backends.
    seed = b"\x02" * 32
    a = scalar(seed)
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    encoded = public.public_bytes_raw()
    identity = encode(IDENTITY)
    signature = identity + (challenge(identity, encoded, b"m") * a % L).to_bytes(32, "little")
    assert rfc8032_cofactorless(encoded, b"m", signature)
    assert tokens._ed25519_cryptography(public)(b"m", signature) is False
