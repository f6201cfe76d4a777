"""Workload identifiers (``wimse://`` and ``spiffe://``) and patterns over them.

Identifiers are checked for the canonical form and compared byte for byte. A
non-canonical identifier is rejected, never repaired: two spellings of one workload
would otherwise get two entries in every allow-list, replay key and audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_IDENTIFIER_OCTETS = 2048

# Trust domain: lowercase DNS-like labels. Path: one or more non-empty segments of
# unreserved characters (SPIFFE IDs do not allow "~"), so no trailing slash and no
# percent-encoding can pass.
_TRUST_DOMAIN = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_FORMS = {
    "wimse": re.compile(r"wimse://([a-z0-9._-]+)((?:/[A-Za-z0-9._~-]+)+)"),
    "spiffe": re.compile(r"spiffe://([a-z0-9._-]+)((?:/[A-Za-z0-9._-]+)+)"),
}


@dataclass(frozen=True, slots=True)
class WorkloadIdentifier:
    value: str
    scheme: str
    trust_domain: str
    path: str

    def __str__(self) -> str:
        return self.value


def is_trust_domain(name: str) -> bool:
    """True for a canonical trust domain name (lowercase, no empty labels, no trailing dot)."""
    return len(name) <= 255 and _TRUST_DOMAIN.fullmatch(name) is not None


def parse_identifier(value: object) -> WorkloadIdentifier:
    """Parse a canonical workload identifier; raise ``ValueError`` for anything else."""
    if not isinstance(value, str):
        raise ValueError("a workload identifier is a string")
    if len(value) > MAX_IDENTIFIER_OCTETS or not value.isascii():
        raise ValueError("a workload identifier is at most 2048 ASCII octets")
    scheme = value.partition(":")[0]
    form = _FORMS.get(scheme)
    match = form.fullmatch(value) if form else None
    if match is None:
        raise ValueError("not a canonical wimse:// or spiffe:// workload identifier")
    trust_domain, path = match.group(1), match.group(2)
    if not is_trust_domain(trust_domain):
        raise ValueError("the trust domain is not canonical")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise ValueError("dot segments are not canonical")
    return WorkloadIdentifier(value, scheme, trust_domain, path)


@dataclass(frozen=True, slots=True)
class IdentifierPattern:
    """An exact identifier, or a prefix ending in ``/*`` that matches whole path segments.

    ``wimse://example.com/*`` matches every workload of the trust domain;
    ``wimse://example.com/billing/*`` matches ``.../billing/api`` but not ``.../billing-x``.
    """

    pattern: str

    def __post_init__(self) -> None:
        if self.pattern.endswith("/*"):
            prefix = self.pattern[:-2]
            scheme, sep, rest = prefix.partition("://")
            if not sep or scheme not in _FORMS:
                raise ValueError(f"pattern {self.pattern!r}: not a wimse:// or spiffe:// prefix")
            domain, _, path = rest.partition("/")
            if not is_trust_domain(domain):
                raise ValueError(f"pattern {self.pattern!r}: trust domain is not canonical")
            if path:
                parse_identifier(prefix)
        else:
            parse_identifier(self.pattern)

    def matches(self, identifier: str) -> bool:
        if self.pattern.endswith("/*"):
            return identifier.startswith(self.pattern[:-1])
        return identifier == self.pattern
