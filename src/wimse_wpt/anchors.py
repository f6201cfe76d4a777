"""Trust anchors: per trust domain, the keys that may sign a WIT.

Anchors come from configuration only; nothing named by a token (``iss``, ``jku``, ``x5u``)
is ever fetched. Each trust domain has one or more key sources; a source hands out an
immutable :class:`KeySet` and a generation number that changes whenever its keys do, so
the verifier's WIT cache can drop entries whose signing key went away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Union, runtime_checkable

from .identifiers import is_trust_domain
from .problems import Reject
from .tokens import DEFAULT_ALGORITHMS, PublicKey, TokenError, import_public_key

#: ``use`` values of JWKS entries that may sign WITs ("wit-svid" is SPIFFE's bundle name).
SIGNATURE_USES = frozenset({"sig", "wit-svid"})


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[PublicKey, ...]

    def select(self, kid: str | None, alg: str) -> list[PublicKey]:
        if kid is not None:
            return [k for k in self.keys if k.kid == kid and k.fits(alg)]
        return [k for k in self.keys if k.fits(alg)]


EMPTY = KeySet(())


def parse_jwks(
    document: object, algorithms: frozenset[str] = DEFAULT_ALGORITHMS, *, strict: bool = True
) -> KeySet:
    """Validate a JWKS (or SPIFFE bundle, which is a JWKS with extra members).

    Entries whose ``use`` is not a signature use are skipped. A bad signature entry is an
    error when ``strict`` (configuration), and skipped otherwise (a remote set must not lose
    its good keys to one bad neighbour). Duplicate ``kid`` values are always an error.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is a JSON object with a 'keys' array")
    keys: list[PublicKey] = []
    kids: set[str] = set()
    for index, entry in enumerate(document["keys"]):
        if isinstance(entry, Mapping) and entry.get("use", "sig") not in SIGNATURE_USES:
            continue
        if isinstance(entry, Mapping) and entry.get("use") == "wit-svid":
            entry = {k: v for k, v in entry.items() if k != "use"}
        try:
            key = import_public_key(entry, algorithms)
        except TokenError as exc:
            if strict:
                raise ValueError(f"JWKS entry {index}: {exc}") from None
            continue
        if key.kid is not None:
            if key.kid in kids:
                raise ValueError(f"JWKS has the kid {key.kid!r} more than once")
            kids.add(key.kid)
        keys.append(key)
    return KeySet(tuple(keys))


@runtime_checkable
class KeySource(Protocol):
    """Where one trust domain's keys come from."""

    @property
    def generation(self) -> int:
        """Changes whenever the keys change."""
        ...

    async def keys(self) -> KeySet:
        """The current keys. Raises ``KeysUnavailable`` when there are none to trust yet."""
        ...

    async def refresh(self) -> KeySet:
        """Called on an unknown ``kid``: may look again, within the source's own rate limit."""
        ...


class KeysUnavailable(Exception):
    """A key source cannot say which keys to trust (never fetched, or stale past its limit)."""


class StaticKeys:
    """Keys given in code or configuration: a JWKS dict."""

    def __init__(self, jwks: Mapping[str, Any], algorithms: frozenset[str] = DEFAULT_ALGORITHMS):
        self._keys = parse_jwks(jwks, algorithms)

    generation = 0

    async def keys(self) -> KeySet:
        return self._keys

    async def refresh(self) -> KeySet:
        return self._keys


AnchorConfig = Union[KeySource, Mapping[str, Any], Sequence[Union[KeySource, Mapping[str, Any]]]]


class TrustAnchors:
    """Trust domain name -> key sources. A JWKS dict is taken as :class:`StaticKeys`."""

    def __init__(
        self,
        domains: Mapping[str, AnchorConfig],
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
    ) -> None:
        algs = frozenset(algorithms)
        if not domains:
            raise ValueError("at least one trust domain must be configured")
        self._sources: dict[str, tuple[KeySource, ...]] = {}
        for domain, config in domains.items():
            if not is_trust_domain(domain):
                raise ValueError(f"trust domain {domain!r} is not a canonical name")
            items = [config] if isinstance(config, (Mapping, KeySource)) else list(config)
            if not items:
                raise ValueError(f"trust domain {domain!r} has no key source")
            self._sources[domain] = tuple(
                item if isinstance(item, KeySource) else StaticKeys(item, algs) for item in items
            )
        self.trust_domains = frozenset(self._sources)

    def sources(self, trust_domain: str) -> tuple[KeySource, ...]:
        return self._sources.get(trust_domain, ())

    def generation(self, trust_domain: str) -> int:
        """Grows whenever any of the domain's sources changes its keys (generations only grow)."""
        sources = self._sources.get(trust_domain, ())
        if len(sources) == 1:
            return sources[0].generation
        return sum(s.generation for s in sources)

    async def find_key(self, trust_domain: str, kid: str | None, alg: str) -> PublicKey:
        """The one anchor key for this WIT header, or a rejection.

        With ``kid`` the key is chosen by it; without, the domain's keys must fit ``alg``
        unambiguously. A source that cannot say which keys to trust refuses (fail closed).
        """
        sources = self._sources.get(trust_domain)
        if not sources:
            raise Reject("wit-trust-domain", "The workload's trust domain is not trusted here.")
        found: list[PublicKey] = []
        unavailable = 0
        for source in sources:
            try:
                found += (await source.keys()).select(kid, alg)
            except KeysUnavailable:
                unavailable += 1
        if not found and kid is not None:
            # An unknown kid may mean the issuer rotated: ask the sources to look again.
            found, unavailable = [], 0
            for source in sources:
                try:
                    found += (await source.refresh()).select(kid, alg)
                except KeysUnavailable:
                    unavailable += 1
        if len(found) == 1:
            return found[0]
        if not found and unavailable:
            raise Reject(
                "trust-anchors-unavailable",
                "The trust domain's keys could not be obtained; the request cannot be verified.",
            )
        if not found:
            raise Reject("wit-key-unknown", "No trust anchor key matches the token's kid and alg.")
        raise Reject("wit-key-unknown", "More than one trust anchor key fits; the token needs a kid.")
