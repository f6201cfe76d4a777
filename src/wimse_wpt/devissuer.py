"""A small issuer for development and tests: a trust domain's key pair and real WITs.

Not for production: keys live in memory and anything can be overridden, which is exactly
what tests need to produce every kind of bad token.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .client import SigningKey
from .identifiers import is_trust_domain


class DevIssuer:
    """Issues WITs for one trust domain.

    >>> issuer = DevIssuer("example.com")
    >>> workload_key = SigningKey.generate("Ed25519")
    >>> wit = issuer.issue_wit("wimse://example.com/billing", workload_key)
    >>> anchors = {"example.com": issuer.jwks}   # what a Verifier trusts
    """

    def __init__(self, trust_domain: str = "example.com", alg: str = "ES256", kid: str | None = None):
        if not is_trust_domain(trust_domain):
            raise ValueError(f"trust domain {trust_domain!r} is not canonical")
        self.trust_domain = trust_domain
        self.key = SigningKey.generate(alg)
        self.kid = kid if kid is not None else secrets.token_urlsafe(8)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str], trust_domain: str = "example.com") -> DevIssuer:
        """The issuer saved at ``path``, or a new one saved there (mode 0600), so that a
        service and a client in separate processes share one development trust domain."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            issuer = cls(trust_domain)
            data = {"trust_domain": issuer.trust_domain, "kid": issuer.kid, "key": issuer.key.key.as_dict(private=True)}
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
            try:
                os.link(temporary, path)  # atomic, and never replaces an issuer made meanwhile
            except FileExistsError:
                data = json.loads(path.read_text())
            finally:
                os.unlink(temporary)
        issuer = cls.__new__(cls)
        issuer.trust_domain = data["trust_domain"]
        issuer.kid = data["kid"]
        issuer.key = SigningKey.from_jwk(data["key"], "ES256")
        return issuer

    @property
    def jwks(self) -> dict[str, Any]:
        """The public JWKS of this issuer, to configure as a trust anchor."""
        return {"keys": [self.key.public_jwk(kid=self.kid, use="sig")]}

    def issue_wit(
        self,
        identifier: str,
        workload_key: SigningKey,
        *,
        lifetime: float = 3600,
        now: float | None = None,
        claims: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """A WIT for ``identifier`` binding ``workload_key``; ``claims``/``header`` override
        (a value of None removes the member)."""
        issued = time.time() if now is None else now
        body: dict[str, Any] = {
            "sub": identifier,
            "exp": int(issued + lifetime),
            "iat": int(issued),
            "jti": secrets.token_urlsafe(16),
            "cnf": {"jwk": workload_key.public_jwk()},
        }
        body.update(claims or {})
        head: dict[str, Any] = {"typ": "wit+jwt", "kid": self.kid}
        head.update(header or {})
        return self.key.sign(head, body)
