"""A small issuer for development and tests: a trust domain's key pair and real WITs.

Not for production: keys live in memory and anything can be overridden, which is exactly
what tests need to produce every kind of bad token.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
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
    def load_or_create(
        cls, path: str | os.PathLike[str], trust_domain: str | None = None, alg: str = "ES256"
    ) -> DevIssuer:
        """The issuer saved at ``path``, or a new one (``trust_domain``, default example.com,
        and ``alg``) saved there with mode 0600, so that a service and a client in separate
        processes share one development trust domain. Processes racing to create it all end
        up with the one that won. A file for another trust domain than the one asked for is
        a ``ValueError``."""
        path = Path(path)
        try:
            issuer = cls.load(path)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):  # another process made it meanwhile: use theirs
                cls(trust_domain or "example.com", alg).save(path)
            issuer = cls.load(path)
        if trust_domain is not None and issuer.trust_domain != trust_domain:
            raise ValueError(f"{path} holds the dev issuer of {issuer.trust_domain!r}, not {trust_domain!r}")
        _check_private(path)
        return issuer

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DevIssuer:
        """The issuer saved at ``path`` by :meth:`save` (``FileNotFoundError`` when absent)."""
        text = Path(path).read_text()
        try:
            data = json.loads(text)
            trust_domain, kid, jwk = data["trust_domain"], data["kid"], data["key"]
            key = SigningKey.from_jwk(jwk, data.get("alg") or jwk.get("alg") or "ES256")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path} is not a dev issuer file ({type(exc).__name__}: {str(exc)[:80]})") from None
        if not isinstance(trust_domain, str) or not is_trust_domain(trust_domain) or not isinstance(kid, str):
            raise ValueError(f"{path} is not a dev issuer file (bad trust_domain or kid)")
        issuer = cls.__new__(cls)
        issuer.trust_domain, issuer.kid, issuer.key = trust_domain, kid, key
        return issuer

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this issuer, private key included, to a new file of mode 0600. Atomic, and
        never replaces an existing file (``FileExistsError``)."""
        path = Path(path)
        data = {"trust_domain": self.trust_domain, "kid": self.kid, "alg": self.key.alg,
                "key": self.key.key.as_dict(private=True)}
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
            os.link(temporary, path)  # atomic, and never replaces an issuer made meanwhile
        finally:
            os.unlink(temporary)

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


def _check_private(path: Path) -> None:
    """Refuse an issuer file that another local user could have planted or can rewrite (as SSH
    refuses such keys): whoever writes it chooses the key the service trusts. The default
    location is under a world-writable temp dir, where anyone may create the folder first."""
    if not hasattr(os, "getuid"):  # no POSIX ownership to check
        return
    uid = os.getuid()
    folder, file = os.stat(path.parent), os.lstat(path)
    # A folder anyone may write to lets them replace the file, unless sticky (like /tmp); a group-
    # writable one is allowed (user-private groups, umask 002). The file holds a private key.
    open_folder = folder.st_mode & stat.S_IWOTH and not folder.st_mode & stat.S_ISVTX
    for target, info, loose in ((path.parent, folder, open_folder), (path, file, file.st_mode & 0o077)):
        if stat.S_ISLNK(info.st_mode) or info.st_uid != uid or loose:
            raise ValueError(
                f"{target} is a link, or owned or writable by other users: refusing its issuer key "
                "(make it yours with mode 0700 for the folder and 0600 for the file, or set WIMSE_DEV_ISSUER)"
            )
