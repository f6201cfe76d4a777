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


# The whole canonical form in one match (canonical trust domain, no "." or ".." segment): what
# every new WIT's sub goes through. A refusal is then explained by the steps below.
_CANONICAL = {
    scheme: re.compile(
        rf"{scheme}://([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)((?:/(?!\.\.?(?:/|\Z)){segment}+)+)"
    )
    for scheme, segment in (("wimse", "[A-Za-z0-9._~-]"), ("spiffe", "[A-Za-z0-9._-]"))
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
    canonical = _CANONICAL.get(scheme)
    match = canonical.fullmatch(value) if canonical else None
    if match is not None:
        trust_domain, path = match.groups()
        if len(trust_domain) <= 255:
            return _new_identifier(value, scheme, trust_domain, path)
    # Not canonical: which rule it breaks.
    form = _FORMS.get(scheme)
    match = form.fullmatch(value) if form else None
    if match is None:
        raise ValueError("not a canonical wimse:// or spiffe:// workload identifier")
    trust_domain, path = match.group(1), match.group(2)
    if not is_trust_domain(trust_domain):
        raise ValueError("the trust domain is not canonical")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise ValueError("dot segments are not canonical")
    raise AssertionError("an identifier the canonical form refused passed every rule")  # pragma: no cover


# Built by its slots' setters, as a frozen dataclass's __init__ would (about half the cost).
_SET_FIELDS = tuple(getattr(WorkloadIdentifier, name).__set__ for name in ("value", "scheme", "trust_domain", "path"))


def _new_identifier(value: str, scheme: str, trust_domain: str, path: str) -> WorkloadIdentifier:
    identifier = object.__new__(WorkloadIdentifier)
    set_value, set_scheme, set_domain, set_path = _SET_FIELDS
    set_value(identifier, value)
    set_scheme(identifier, scheme)
    set_domain(identifier, trust_domain)
    set_path(identifier, path)
    return identifier


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
